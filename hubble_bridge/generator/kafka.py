"""Kafka produce and fetch requests through Cilium's Kafka proxy.

Seen at the client's node (EGRESS) and, for some requests, at the broker's node
(INGRESS). Correlation ids count up per client pod, as a Kafka client's do.
"""

from __future__ import annotations

from hubble_bridge.api import flow_pb2
from hubble_bridge.generator.kit import (
    ACCESS_LOG,
    IS_REPLY,
    NOT_REPLY,
    D,
    Event,
    Kit,
    V,
    address,
    event_type,
    ip,
)
from hubble_bridge.generator.topology import Peer

# client workload, api_key, api_version, topic, weight
_CALLS = (
    ("checkout", "produce", 7, "orders", 4),
    ("payments", "produce", 7, "payment-events", 3),
    ("order-worker", "fetch", 11, "orders", 5),
    ("order-worker", "fetch", 11, "payment-events", 2),
)
_WEIGHTS = [c[-1] for c in _CALLS]
# Kafka error codes with cumulative share:
# NOT_LEADER_OR_FOLLOWER, REQUEST_TIMED_OUT, TOPIC_AUTHORIZATION_FAILED
_ERRORS = ((0.02, 6), (0.03, 7), (0.035, 29))


class KafkaTraffic:
    """Remembers each client pod's next correlation id."""

    def __init__(self) -> None:
        self._correlation: dict[str, int] = {}

    def __call__(self, kit: Kit) -> list[Event]:
        rng = kit.rng
        workload, api_key, version, topic, _ = rng.choices(_CALLS, weights=_WEIGHTS)[0]
        client, broker = kit.pod(workload), kit.pod("kafka")
        key = client.local.pod_name
        correlation = self._correlation.get(key, rng.randint(1, 50_000)) + 1
        self._correlation[key] = correlation
        r = rng.random()
        error = next((code for share, code in _ERRORS if r < share), 0)
        v6 = kit.use_v6(client, broker, 0.1)
        sport = kit.port()
        out = kit.hop(client.node, broker.node)
        work = kit.latency(4.0, 0.6) if api_key == "produce" else kit.latency(250.0, 0.5, 500.0)
        back = kit.hop(broker.node, client.node)
        events = self._pair(
            kit, client, broker, client, v6, sport, api_key, version, topic, correlation, error
        )
        timed = [(0, events[0]), (out + work + back, events[1])]
        if rng.random() < 0.4:
            req, resp = self._pair(
                kit, client, broker, broker, v6, sport, api_key, version, topic, correlation, error
            )
            timed += ((out, req), (out + work, resp))
        return timed

    @staticmethod
    def _pair(
        kit: Kit,
        client: Peer,
        broker: Peer,
        at: Peer,
        v6: bool,
        sport: int,
        api_key: str,
        version: int,
        topic: str,
        correlation: int,
        error: int,
    ) -> tuple:
        node = at.node
        assert node is not None
        src_ep, dst_ep = client.endpoint_on(node), broker.endpoint_on(node)
        service = broker.workload.service if broker.workload else None
        src_ip, dst_ip = address(client, v6), address(broker, v6)
        common = {
            "verdict": V.FORWARDED,
            "Type": flow_pb2.L7,
            "event_type": event_type(ACCESS_LOG),
            "traffic_direction": D.EGRESS if at is client else D.INGRESS,
        }
        request = kit.event(
            node,
            IP=ip(src_ip, dst_ip, v6),
            l4=flow_pb2.Layer4(TCP=flow_pb2.TCP(source_port=sport, destination_port=9092)),
            source=src_ep,
            destination=dst_ep,
            l7=flow_pb2.Layer7(
                type=flow_pb2.REQUEST,
                kafka=flow_pb2.Kafka(
                    api_version=version, api_key=api_key, correlation_id=correlation, topic=topic
                ),
            ),
            is_reply=NOT_REPLY,
            destination_service=service,
            Summary=f"Kafka request {api_key} correlation id {correlation} topic '{topic}'",
            **common,
        )
        response = kit.event(
            node,
            IP=ip(dst_ip, src_ip, v6),
            l4=flow_pb2.Layer4(TCP=flow_pb2.TCP(source_port=9092, destination_port=sport)),
            source=dst_ep,
            destination=src_ep,
            l7=flow_pb2.Layer7(
                type=flow_pb2.RESPONSE,
                kafka=flow_pb2.Kafka(
                    error_code=error,
                    api_version=version,
                    api_key=api_key,
                    correlation_id=correlation,
                    topic=topic,
                ),
            ),
            is_reply=IS_REPLY,
            source_service=service,
            Summary=(
                f"Kafka response {api_key} correlation id {correlation} topic '{topic}' return code {error}"
            ),
            **common,
        )
        return request, response
