"""The event stream: scenarios started on a clock, merged in time order, stamped and counted.

Each scenario (an HTTP exchange, a TCP connection, ...) yields several events at
offsets from its start; a heap interleaves them with later scenarios, so the
output reads like a relay's stream. The clock advances by exponential gaps at
`flows_per_second`, and emitted times strictly increase. The same arguments give
the same events; with the same seed, a run of RARE_MIN_COUNT or more events is a
prefix of any longer run.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Callable, Iterator
from itertools import accumulate

from google.protobuf.wrappers_pb2 import Int32Value

from hubble_bridge.api import flow_pb2, observer_pb2, relay_pb2
from hubble_bridge.errors import ConfigError
from hubble_bridge.flows.codec import timestamp_from_ns
from hubble_bridge.generator.dns import dns_lookup
from hubble_bridge.generator.drops import datapath_drop, denied_connection
from hubble_bridge.generator.http import http_exchange
from hubble_bridge.generator.kafka import KafkaTraffic
from hubble_bridge.generator.kit import Event, Kit
from hubble_bridge.generator.l34 import (
    dns_packets,
    icmp_probe,
    neighbor_solicitation,
    socket_translation,
    tcp_connection,
)
from hubble_bridge.generator.topology import Node, build_topology

GetFlowsResponse = observer_pb2.GetFlowsResponse

DEFAULT_START_NS = 1_767_225_600 * 1_000_000_000  # 2026-01-01T00:00:00Z
# Lost events and node status changes: about one each per this many events, none in tiny runs.
RARE_EVERY = 5000
RARE_MIN_COUNT = 100
_SECOND = 1_000_000_000


def generate_responses(
    count: int, seed: int = 0, start_ns: int | None = None, flows_per_second: float = 2000.0
) -> Iterator[GetFlowsResponse]:
    """Exactly `count` Hubble events of a simulated Cilium 1.19 cluster, deterministic per arguments."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ConfigError(f"generate: count must be a whole number >= 0, got {count!r}")
    if not isinstance(flows_per_second, int | float) or not math.isfinite(flows_per_second):
        raise ConfigError(f"generate: flows per second must be a finite number, got {flows_per_second!r}")
    if flows_per_second <= 0:
        raise ConfigError(f"generate: flows per second must be > 0, got {flows_per_second!r}")
    if start_ns is not None and (not isinstance(start_ns, int) or start_ns < 0):
        raise ConfigError(f"generate: start time must be nanoseconds since the epoch, got {start_ns!r}")
    start = DEFAULT_START_NS if start_ns is None else start_ns
    return _Stream(seed, float(flows_per_second)).run(count, start)


class _Stream:
    def __init__(self, seed: int, flows_per_second: float) -> None:
        rng = random.Random(seed)
        self.rng = rng
        self.kit = Kit(rng, build_topology(rng))
        self.rate = flows_per_second
        # Weights tuned so that about a third of the events are L7.
        table: tuple[tuple[Callable[[Kit], list[Event]], float], ...] = (
            (http_exchange, 26),
            (dns_lookup, 16),
            (KafkaTraffic(), 4),
            (tcp_connection, 14),
            (dns_packets, 9),
            (icmp_probe, 4),
            (neighbor_solicitation, 2),
            (socket_translation, 6),
            (denied_connection, 2.5),
            (datapath_drop, 3),
        )
        self.scenarios = [s for s, _ in table]
        self.cum_weights = list(accumulate(w for _, w in table))
        self.outage_until = 0

    def run(self, count: int, clock: int) -> Iterator[GetFlowsResponse]:
        rng, kit = self.rng, self.kit
        heap: list[tuple[int, int, GetFlowsResponse]] = []
        seq = 0
        last = clock - 1
        emitted = 0
        down: set[str] = set()
        rare = count >= RARE_MIN_COUNT
        while emitted < count:
            if heap and heap[0][0] <= clock:
                t, _, response = heapq.heappop(heap)
                if down and response.node_name in down:
                    continue  # the relay gets nothing from a node it cannot reach
                if response.HasField("node_status"):
                    status = response.node_status
                    if status.state_change == relay_pb2.NODE_UNAVAILABLE:
                        down.update(status.node_names)
                    else:
                        down.difference_update(status.node_names)
                last = t = max(t, last + 1)
                _stamp(response, t)
                emitted += 1
                yield response
                continue
            scenario = rng.choices(self.scenarios, cum_weights=self.cum_weights)[0]
            events = scenario(kit)
            for offset, response in events:
                heapq.heappush(heap, (clock + offset, seq, response))
                seq += 1
            # Drawn whether or not rare events are on, so tiny runs stay prefixes of longer ones.
            for at, response in self._rare(clock, len(events)):
                if rare:
                    heapq.heappush(heap, (at, seq, response))
                    seq += 1
            clock += int(rng.expovariate(self.rate / max(len(events), 1)) * _SECOND) + 1

    def _rare(self, clock: int, n: int) -> list[tuple[int, GetFlowsResponse]]:
        rng = self.rng
        chance = n / RARE_EVERY
        lost_roll, outage_roll = rng.random(), rng.random()
        out: list[tuple[int, GetFlowsResponse]] = []
        if lost_roll < chance:
            out.append((clock, self._lost(clock, rng.choice(self.kit.nodes))))
        if outage_roll < chance / 2 and clock > self.outage_until:
            node = rng.choice(self.kit.nodes)
            # Short: outages are frequent at this rate, and the node's flows are missing meanwhile.
            back = clock + rng.randint(100, 1000) * 1_000_000
            self.outage_until = back
            refused = f"dial tcp {node.ipv4}:4244: connect: connection refused"
            message = f'rpc error: code = Unavailable desc = connection error: desc = "transport: {refused}"'
            out.append((clock, _status(relay_pb2.NODE_UNAVAILABLE, node, message)))
            out.append((back, _status(relay_pb2.NODE_CONNECTED, node, "")))
        return out

    def _lost(self, clock: int, node: Node) -> GetFlowsResponse:
        rng = self.rng
        perf = rng.random() < 0.5
        first = clock - rng.randint(1_000_000, 800_000_000)
        lost = flow_pb2.LostEvent(
            source=flow_pb2.PERF_EVENT_RING_BUFFER if perf else flow_pb2.HUBBLE_RING_BUFFER,
            num_events_lost=rng.randint(1, 4000) if perf else rng.randint(100, 60000),
            cpu=Int32Value(value=rng.randrange(8)) if perf else None,
            first=timestamp_from_ns(first),
            last=timestamp_from_ns(clock),
        )
        return GetFlowsResponse(lost_events=lost, node_name=node.name)


def _status(state: int, node: Node, message: str) -> GetFlowsResponse:
    event = relay_pb2.NodeStatusEvent(state_change=state, node_names=[node.name], message=message)
    return GetFlowsResponse(node_status=event)


def _stamp(response: GetFlowsResponse, t: int) -> None:
    seconds, nanos = divmod(t, _SECOND)
    response.time.seconds = seconds
    response.time.nanos = nanos
    if response.HasField("flow"):
        response.flow.time.CopyFrom(response.time)
