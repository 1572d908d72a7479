"""The aggregator's per-kind dispatch counts exactly what every family would count on every flow.

MetricsAggregator works out once per kind of flow which families can count it
and their kind-level labels; the straightforward path below loads FlowFacts
for each flow and hands it to every family. Same snapshots on generated, real
and deliberately odd flows, with default and with context options, mean the
dispatch table neither skips a family nor reuses a label that is per flow.
The straightforward path runs with the families' per-flow caches (labels by
port, world-ness by destination) switched off, so the same snapshots also mean
the caches change nothing, before and after their bounds are reached.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

import hubble_bridge.mapping.metrics.aggregator as aggregator_module
import hubble_bridge.mapping.metrics.families.flows_to_world as flows_to_world_module
import hubble_bridge.mapping.metrics.families.port_distribution as port_distribution_module
import hubble_bridge.mapping.metrics.families.tcp as tcp_module
from hubble_bridge.api import flow_pb2, observer_pb2, sidecar_pb2
from hubble_bridge.flows.codec import parse_json_line
from hubble_bridge.generator import generate_responses
from hubble_bridge.mapping.metrics import MetricsAggregator, MetricsConfig
from hubble_bridge.mapping.metrics.facts import FlowFacts
from hubble_bridge.mapping.metrics.families.flows_to_world import FlowsToWorldFamily
from hubble_bridge.mapping.metrics.families.lost import LostEvents
from hubble_bridge.mapping.metrics.http_semconv import HttpDurations
from hubble_bridge.mapping.metrics.registry import build_families
from hubble_bridge.telemetry import MetricFamily, MetricKind
from tests.conftest import flow_files

NAMESPACE_WORKLOAD = "sourceContext=namespace;destinationContext=workload-name"
CONFIGS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "context": {
        "families": [
            f"flow:{NAMESPACE_WORKLOAD}",
            f"drop:{NAMESPACE_WORKLOAD}",
            "tcp",
            "port-distribution",
            "icmp",
            "dns",
            f"httpV2:{NAMESPACE_WORKLOAD}",
            "kafka",
            "policy",
            "flows-to-world",
            "sidecar-bytes",
        ]
    },
    "every-option": {
        "families": [
            "flow:sourceContext=pod|ip;destinationContext=dns|ip;"
            "labelsContext=source_namespace,destination_app,traffic_direction",
            "drop:sourceEgressContext=namespace;destinationIngressContext=pod-short",
            "tcp:sourceContext=identity",
            "port-distribution:destinationContext=reserved-identity",
            "icmp:sourceContext=app",
            "dns:query;ignoreAAAA;sourceContext=namespace",
            "http:exemplars;sourceContext=workload-name;destinationContext=pod-name",
            "kafka:destinationContext=app",
            "policy:sourceContext=namespace",
            "flows-to-world:any-drop;port;syn-only;sourceContext=namespace",
            "sidecar-bytes:sourceContext=namespace",
        ]
    },
    "overflowing": {
        "families": [
            "httpV2:exemplars=true;labelsContext=source_pod,destination_pod",
            "flows-to-world:port",
            "tcp",
            "flow",  # per-kind Counts, some of whose keys the limit turns away
            "policy",
            "port-distribution",
        ],
        "cardinality_limit": 5,
    },
}


# The families' bounded caches of per-flow values: (module, bound).
CACHE_BOUNDS = (
    (flows_to_world_module, "MAX_PORT_KEYS"),
    (flows_to_world_module, "MAX_DESTINATIONS"),
    (port_distribution_module, "MAX_PORT_KEYS"),
    (tcp_module, "MAX_IP_VERSIONS"),
)


@contextmanager
def cache_bounds(bound: int) -> Iterator[None]:
    """Every per-flow cache bounded to `bound` entries (0: nothing is cached)."""
    with pytest.MonkeyPatch.context() as patch:
        for module, name in CACHE_BOUNDS:
            patch.setattr(module, name, bound)
        yield


def straightforward(
    config: MetricsConfig, messages: list[observer_pb2.GetFlowsResponse]
) -> tuple[list[MetricFamily], int]:
    """Every flow through every family, as the aggregator builds and orders them: snapshot, overflowed."""
    with cache_bounds(0):
        return _straightforward(config, messages)


def _straightforward(
    config: MetricsConfig, messages: list[observer_pb2.GetFlowsResponse]
) -> tuple[list[MetricFamily], int]:
    errors: list[str] = []
    processors: list[Any] = build_families(config.families, config.cardinality_limit, errors)
    assert errors == []
    if config.http_duration_histograms:
        processors.append(HttpDurations(config.cardinality_limit))
    lost = LostEvents(config.cardinality_limit)
    facts = FlowFacts()
    for message in messages:
        if message.HasField("flow"):
            facts.load(message.flow)
            for processor in processors:
                processor.process(facts)
        elif message.HasField("lost_events"):
            lost.add(message.lost_events)
    series = [s for p in processors for s in p.series()] + lost.series()
    return [s.family(1) for s in series if s.points or s.overflowed], sum(s.overflowed for s in series)


def sidecar_flows() -> list[observer_pb2.GetFlowsResponse]:
    out = []
    for i, event in enumerate(
        (sidecar_pb2.SidecarFlow.EVENT_XDP, sidecar_pb2.SidecarFlow.EVENT_TCP_RETRANSMIT) * 3
    ):
        flow = flow_pb2.Flow(
            verdict=flow_pb2.FORWARDED, interface=flow_pb2.NetworkInterface(name=f"eth{i % 2}")
        )
        flow.l4.TCP.destination_port = 443
        flow.extensions.Pack(
            sidecar_pb2.SidecarFlow(
                event=event,
                packets_sent=i,
                bytes_sent=100 * i,
                packets_received=2,
                bytes_received=80,
                retransmits=i,
            )
        )
        out.append(observer_pb2.GetFlowsResponse(flow=flow))
    return out


def odd(messages: list[observer_pb2.GetFlowsResponse], count: int) -> list[observer_pb2.GetFlowsResponse]:
    """Copies with the fields the kind depends on (and a few read per flow) changed at random."""
    rnd = random.Random(7)
    flows = [m for m in messages if m.HasField("flow")]
    out = []
    for original in rnd.sample(flows, count):
        message = observer_pb2.GetFlowsResponse()
        message.CopyFrom(original)
        flow = message.flow
        for _ in range(rnd.randint(1, 3)):
            change = rnd.randrange(10)
            if change == 0:
                flow.ClearField("event_type")
            elif change == 1:
                flow.ClearField("l7") if rnd.random() < 0.5 else flow.l7.ClearField("record")
            elif change == 2:
                flow.verdict = rnd.choice([0, 1, 2, 3, 5, 99])
            elif change == 3:
                flow.traffic_direction = rnd.choice([0, 1, 2, 7])
            elif change == 4:
                flow.event_type.type = rnd.choice([0, 1, 3, 4, 5, 129, 200])
                flow.event_type.sub_type = rnd.randrange(16)
            elif change == 5:
                flow.ClearField("is_reply") if rnd.random() < 0.5 else flow.is_reply.Clear()
            elif change == 6:
                flow.destination.labels.append(
                    rnd.choice(["reserved:world", "reserved:world-ipv6", "k8s:x=y"])
                )
            elif change == 7:
                flow.ClearField("IP") if rnd.random() < 0.5 else flow.IP.ClearField("ipVersion")
            elif change == 8:
                flow.l4.TCP.flags.SYN, flow.l4.TCP.flags.FIN = rnd.random() < 0.5, rnd.random() < 0.3
            else:
                flow.ClearField("l4") if rnd.random() < 0.5 else flow.l4.ICMPv4.SetInParent()
        out.append(message)
    return out


@pytest.fixture(scope="module")
def messages() -> list[observer_pb2.GetFlowsResponse]:
    generated = list(generate_responses(2500, seed=3))
    real = [
        m for path in flow_files() for line in path.read_bytes().splitlines() if (m := parse_json_line(line))
    ]
    return generated + real + sidecar_flows() + odd(generated + real, 1500)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_dispatch_counts_what_every_family_counts(
    name: str, messages: list[observer_pb2.GetFlowsResponse]
) -> None:
    config = MetricsConfig(**CONFIGS[name])
    agg = MetricsAggregator(config, start_time_ns=1)
    for message in messages:
        agg.process(message)
    expected, overflowed = straightforward(config, messages)
    assert {f.name for f in expected} >= {"hubble.tcp_flags", "hubble.http_request_duration"}
    assert agg.snapshot() == expected
    assert agg.overflowed == overflowed
    assert (overflowed > 0) == (name == "overflowing")


@pytest.mark.parametrize("name", ["every-option", "overflowing"])
def test_full_caches_count_all_the_same(name: str, messages: list[observer_pb2.GetFlowsResponse]) -> None:
    config = MetricsConfig(**CONFIGS[name])
    agg = MetricsAggregator(config, start_time_ns=1)
    with cache_bounds(2):
        for message in messages:
            agg.process(message)
    (family,) = [f for f in agg._processors if isinstance(f, FlowsToWorldFamily)]
    assert len(family._world) == 2
    expected, overflowed = straightforward(config, messages)
    assert agg.snapshot() == expected
    assert agg.overflowed == overflowed


def test_kinds_beyond_the_cache_are_counted_all_the_same(
    monkeypatch: pytest.MonkeyPatch, messages: list[observer_pb2.GetFlowsResponse]
) -> None:
    monkeypatch.setattr(aggregator_module, "MAX_KINDS", 3)
    config = MetricsConfig(**CONFIGS["every-option"])
    agg = MetricsAggregator(config, start_time_ns=1)
    for message in messages:
        agg.process(message)
    assert len(agg._kinds) == 3
    assert agg.snapshot() == straightforward(config, messages)[0]


def test_process_flow_takes_the_flow_itself(messages: list[observer_pb2.GetFlowsResponse]) -> None:
    by_response = MetricsAggregator(MetricsConfig(), start_time_ns=1)
    by_flow = MetricsAggregator(MetricsConfig(), start_time_ns=1)
    for message in messages[:500]:
        if message.HasField("flow"):
            by_response.process(message)
            by_flow.process_flow(message.flow)
    assert by_flow.snapshot() == by_response.snapshot() != []


def test_world_is_decided_by_the_labels_not_the_identity() -> None:
    """Cilium's CIDR identities carry reserved:world too, and field masks may drop the labels."""
    destinations = [
        flow_pb2.Endpoint(identity=2, labels=["reserved:world"]),
        flow_pb2.Endpoint(identity=2),
        flow_pb2.Endpoint(identity=16777217, labels=["cidr:1.2.3.4/32", "reserved:world"]),
        flow_pb2.Endpoint(identity=10, labels=["reserved:world-ipv6"]),
        flow_pb2.Endpoint(identity=10, labels=["reserved:world-ipv6x"]),
    ]
    agg = MetricsAggregator(MetricsConfig(families=["flows-to-world"]), start_time_ns=1)
    for _ in range(2):  # the second round from the cache
        for i, destination in enumerate(destinations):
            flow = flow_pb2.Flow(verdict=flow_pb2.FORWARDED, destination=destination)
            flow.event_type.type = 4  # trace: Hubble skips a flow without an event type
            flow.is_reply.value = False
            flow.l4.UDP.destination_port = 53 + i
            agg.process_flow(flow)
    (family,) = agg.snapshot()
    assert [p.value for p in family.points] == [6]


def test_exemplars_are_each_flows_own() -> None:
    """The trace id and time read once per flow for both HTTP histograms never carry over to the next."""
    flows = []
    for i, trace in enumerate(["4bf92f3577b34da6a3ce929d0e0e4736", "", "00f067aa0ba902b700f067aa0ba902b7"]):
        flow = flow_pb2.Flow(verdict=flow_pb2.FORWARDED, traffic_direction=flow_pb2.EGRESS)
        flow.l7.type = flow_pb2.RESPONSE
        flow.l7.latency_ns = 1_000_000 + i  # one bucket, told apart by value
        flow.l7.http.method = "GET"
        flow.l7.http.code = 200
        flow.trace_context.parent.trace_id = trace
        flow.time.seconds = 100 + i
        flows.append(flow)
    agg = MetricsAggregator(MetricsConfig(families=["httpV2:exemplars=true"]), start_time_ns=1)
    for count, flow in enumerate(flows, 1):
        agg.process_flow(flow)
        latest = next(f for f in reversed(flows[:count]) if f.trace_context.parent.trace_id)
        expected = (
            bytes.fromhex(latest.trace_context.parent.trace_id),
            latest.l7.latency_ns / 1e9,
            latest.time.seconds * 10**9,
        )
        histograms = {f.name: f for f in agg.snapshot() if f.kind == MetricKind.HISTOGRAM}
        assert set(histograms) == {"hubble.http_request_duration", "http.client.request.duration"}
        for family in histograms.values():
            (point,) = family.points
            (exemplar,) = point.exemplars  # type: ignore[union-attr]
            assert (exemplar.trace_id, exemplar.value, exemplar.time_ns) == expected
