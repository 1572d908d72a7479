"""Hostile input, case by case: each extreme from the property tests pinned with exact outputs.

Hand-built flows, one per hostile shape (huge lists, long strings, max and negative
integers, unknown enum numbers, missing sub-messages, absurd times), checked against
what the bridge must emit; the properties in test_hostile_input say "never out of
bounds", these say "and this is what comes out instead".
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from hubble_bridge.api import flow_pb2, observer_pb2
from hubble_bridge.flows.codec import timestamp_from_ns
from hubble_bridge.mapping.limits import INT64_MAX, UINT64_MAX, AttributeLimits
from hubble_bridge.mapping.logs import LogConfig, flow_log, lost_events_log
from hubble_bridge.mapping.metrics import MetricsAggregator, MetricsConfig
from hubble_bridge.mapping.spans import SpanConfig, SpanMapper
from hubble_bridge.mapping.summary import compact_summary
from hubble_bridge.telemetry import SpanRecord
from tests.test_hostile_input import check_log, check_span

GetFlowsResponse = observer_pb2.GetFlowsResponse
T0 = 1_700_000_000_000_000_000
LIMITS = AttributeLimits(max_value_length=32, max_attributes=40, max_list_items=3)
FAR_FUTURE_S = 253402300799  # 9999-12-31T23:59:59Z, the last second protojson accepts


def event(time_ns: int | None = T0, **fields: Any) -> GetFlowsResponse:
    flow = flow_pb2.Flow(**fields)
    if time_ns is not None:
        flow.time.CopyFrom(timestamp_from_ns(time_ns))
    return GetFlowsResponse(flow=flow, node_name="node-a")


def http(l7_type: int, time_ns: int | None = T0, *, reply: bool = False, latency_ns: int = 0, **fields: Any):
    """An HTTP L7 flow of one exchange; a reply runs server -> client."""
    client, server = ("10.0.0.1", 40000), ("10.0.0.2", 8080)
    src, dst = (server, client) if reply else (client, server)
    defaults: dict[str, Any] = {
        "Type": flow_pb2.L7,
        "verdict": flow_pb2.FORWARDED,
        "traffic_direction": flow_pb2.EGRESS,
        "IP": flow_pb2.IP(source=src[0], destination=dst[0], ipVersion=flow_pb2.IPv4),
        "l4": flow_pb2.Layer4(TCP=flow_pb2.TCP(source_port=src[1], destination_port=dst[1])),
        "l7": flow_pb2.Layer7(
            type=l7_type,
            latency_ns=latency_ns,
            http=flow_pb2.HTTP(method="GET", url="/api", code=200 if reply else 0),
        ),
    }
    return event(time_ns, **{**defaults, **fields})


def spans_of(events: list[GetFlowsResponse], **config: Any) -> list[SpanRecord]:
    mapper = SpanMapper(SpanConfig(limits=LIMITS, **config), rng=random.Random(3))
    out = [span for e in events for span in mapper.process(e)] + mapper.drain()
    for span in out:
        check_span(span, LIMITS)
    return out


def log_of(response: GetFlowsResponse, **config: Any) -> Any:
    record = flow_log(response, LogConfig(limits=LIMITS, all_flows=True, **config))
    assert record is not None
    check_log(record, LIMITS)
    return record


def metric_points(aggregator: MetricsAggregator, name: str) -> dict[tuple[tuple[str, str], ...], Any]:
    found = [f for f in aggregator.snapshot() if f.name == name]
    return {p.attributes: p for f in found for p in f.points}


# ---- sizes -----------------------------------------------------------------------------------


def test_huge_label_lists_and_long_names_are_cut_in_attributes_and_resource() -> None:
    pod = "p" * 100_000
    labels = [f"k8s:l{i}=" + "é" * 500 for i in range(10_000)]
    endpoint = flow_pb2.Endpoint(namespace="ns", pod_name=pod, labels=labels, identity=UINT64_MAX >> 32)
    record = log_of(event(source=endpoint, traffic_direction=flow_pb2.EGRESS, verdict=flow_pb2.DROPPED))
    assert record.attributes["hubble.source.pod"] == "p" * 32
    # 32 bytes: "k8s:lN=" (7) and 12 two-byte characters; the half of a 13th is dropped.
    assert record.attributes["hubble.source.labels"] == [label[:19] for label in labels[:3]]
    assert record.attributes["hubble.source.identity"] == 2**32 - 1
    assert dict(record.resource)["k8s.pod.name"] == "p" * 32
    assert len(record.body.encode()) <= 32


def test_long_kafka_topic_and_dns_qtype_cannot_blow_up_span_names() -> None:
    kafka = flow_pb2.Layer7(type=flow_pb2.REQUEST, kafka=flow_pb2.Kafka(api_key="produce", topic="t" * 5000))
    dns = flow_pb2.Layer7(type=flow_pb2.REQUEST, dns=flow_pb2.DNS(query="x.", qtypes=["€" * 5000]))
    spans = spans_of([event(Type=flow_pb2.L7, l7=kafka), event(Type=flow_pb2.L7, l7=dns)])
    assert sorted(s.name for s in spans) == ["DNS " + "€" * 9, "produce " + "t" * 24]


# ---- integers --------------------------------------------------------------------------------


def test_max_latency_starts_the_span_at_zero_never_before() -> None:
    [span] = spans_of([http(flow_pb2.RESPONSE, reply=True, latency_ns=UINT64_MAX)])
    assert (span.start_time_ns, span.end_time_ns) == (0, T0)
    metrics = MetricsAggregator(MetricsConfig(families=["httpV2"]), 1)
    metrics.process(http(flow_pb2.RESPONSE, reply=True, latency_ns=UINT64_MAX))
    [point] = metric_points(metrics, "hubble.http_request_duration").values()
    assert point.count == 1 and point.bucket_counts[-1] == 1 and point.sum == UINT64_MAX / 1e9


def test_lost_event_counts_near_two_to_the_64_saturate_at_int64() -> None:
    lost = GetFlowsResponse(node_name="n")
    lost.lost_events.source = flow_pb2.HUBBLE_RING_BUFFER
    lost.lost_events.num_events_lost = UINT64_MAX
    record = lost_events_log(lost, LogConfig(limits=LIMITS))
    check_log(record, LIMITS)
    assert record.attributes["hubble.lost_events.count"] == INT64_MAX
    metrics = MetricsAggregator(MetricsConfig(families=[]), 1)
    for _ in range(3):
        metrics.process(lost)
    [point] = metric_points(metrics, "hubble.lost_events").values()
    assert point.value == INT64_MAX


def test_negative_int32_values_keep_their_sign() -> None:
    kafka = flow_pb2.Kafka(api_key="fetch", topic="t", error_code=-(2**31), correlation_id=-1)
    [span] = spans_of([event(Type=flow_pb2.L7, l7=flow_pb2.Layer7(type=flow_pb2.REQUEST, kafka=kafka))])
    assert span.attributes["hubble.kafka.error_code"] == -(2**31)
    assert span.attributes["error.type"] == str(-(2**31))


# ---- enums -----------------------------------------------------------------------------------


def test_unknown_enum_numbers_come_out_as_their_numbers() -> None:
    dropped = event(
        verdict=9999,
        drop_reason_desc=60000,
        traffic_direction=77,
        trace_observation_point=4242,
        l4=flow_pb2.Layer4(UDP=flow_pb2.UDP(source_port=1, destination_port=2)),
        event_type=flow_pb2.CiliumEventType(type=1, sub_type=60000),
    )
    record = log_of(dropped)
    attrs = record.attributes
    assert (attrs["hubble.verdict"], attrs["hubble.drop.reason"], attrs["hubble.traffic_direction"]) == (
        "9999",
        "60000",
        "77",
    )
    assert attrs["hubble.trace_observation_point"] == "4242"
    assert "60000 9999" in compact_summary(dropped)
    metrics = MetricsAggregator(MetricsConfig(families=["flow", "drop"]), 1)
    metrics.process(dropped)
    flows = metric_points(metrics, "hubble.flows_processed")
    assert list(flows) == [(("protocol", "UDP"), ("type", "Drop"), ("subtype", ""), ("verdict", "9999"))]
    assert metric_points(metrics, "hubble.drop") == {}  # 9999 is not DROPPED


def test_unknown_flow_type_and_l7_type_give_no_span() -> None:
    assert spans_of([http(flow_pb2.REQUEST, Type=77), http(42)], l3l4_spans=True) == []


# ---- missing parts ---------------------------------------------------------------------------


def test_l7_without_record_still_gives_a_plain_span() -> None:
    flow = event(Type=flow_pb2.L7, l7=flow_pb2.Layer7(type=flow_pb2.RESPONSE, latency_ns=5))
    [span] = spans_of([flow])
    assert span.name == "L7" and (span.start_time_ns, span.end_time_ns) == (T0 - 5, T0)
    assert span.attributes["hubble.verdict"] == "VERDICT_UNKNOWN"


def test_response_without_request_and_empty_flow() -> None:
    [span] = spans_of([http(flow_pb2.RESPONSE, reply=True, latency_ns=2_000_000)])
    assert "hubble.l7.unanswered" not in span.attributes
    assert span.end_time_ns - span.start_time_ns == 2_000_000
    empty = GetFlowsResponse(flow=flow_pb2.Flow())
    assert spans_of([empty], l3l4_spans=True) == []
    assert compact_summary(empty).endswith(" <>  (unknown) UNKNOWN VERDICT_UNKNOWN ()")
    log_of(empty)


def test_unset_is_reply_is_unknown_direction_not_a_request() -> None:
    flow = event(
        verdict=flow_pb2.FORWARDED,
        l4=flow_pb2.Layer4(TCP=flow_pb2.TCP(source_port=40000, destination_port=80)),
        IP=flow_pb2.IP(source="10.0.0.1", destination="10.0.0.2"),
    )
    assert " <> " in compact_summary(flow)
    assert "hubble.is_reply" not in log_of(flow).attributes
    metrics = MetricsAggregator(MetricsConfig(families=["port-distribution"]), 1)
    metrics.process(flow)
    assert metric_points(metrics, "hubble.port_distribution") == {}


# ---- times -----------------------------------------------------------------------------------


# Nanoseconds since 1970 fit in OTLP's fixed64 until 2554-07-21T23:34:33.709551615Z.
LAST_S, LAST_NANOS = divmod(UINT64_MAX, 10**9)


@pytest.mark.parametrize(
    ("seconds", "nanos"),
    [
        (0, 0),
        (-1, 0),
        (0, -(2**31)),
        (-(2**63), -1),
        (LAST_S, LAST_NANOS),
        (LAST_S, LAST_NANOS + 1),
        (FAR_FUTURE_S, 999_999_999),
        (2**63 - 1, 2**31 - 1),
    ],
)
def test_times_from_zero_to_far_future_are_clamped_to_uint64(seconds: int, nanos: int) -> None:
    flow = http(flow_pb2.RESPONSE, None, reply=True, latency_ns=1)
    flow.flow.time.seconds, flow.flow.time.nanos = seconds, nanos
    raw = seconds * 10**9 + nanos
    assert log_of(flow).time_ns == min(max(raw, 0), UINT64_MAX)
    [span] = spans_of([flow])
    assert span.end_time_ns == min(max(raw, 0), UINT64_MAX)
    assert span.start_time_ns == min(max(raw - 1, 0), UINT64_MAX)


def test_one_far_future_flow_does_not_end_every_later_request_as_unanswered() -> None:
    far = http(flow_pb2.RESPONSE, FAR_FUTURE_S * 10**9, reply=True)
    exchanges: list[GetFlowsResponse] = [far]
    for i in range(3):
        t = T0 + i * 1_000_000_000
        exchanges += [http(flow_pb2.REQUEST, t), http(flow_pb2.RESPONSE, t + 1000, reply=True)]
    spans = spans_of(exchanges, join_window_s=1.0)
    assert len(spans) == 4
    assert [s.attributes.get("hubble.l7.unanswered") for s in spans] == [None] * 4
    assert [s.end_time_ns - s.start_time_ns for s in spans[1:]] == [1000] * 3


def test_a_confirmed_leap_of_stream_time_still_expires_old_requests() -> None:
    later = T0 + 7200 * 10**9  # two hours of silence, then the stream goes on
    events = [
        http(flow_pb2.REQUEST, T0),
        http(
            flow_pb2.REQUEST, later, l4=flow_pb2.Layer4(TCP=flow_pb2.TCP(source_port=1, destination_port=2))
        ),
        http(
            flow_pb2.REQUEST,
            later + 1,
            l4=flow_pb2.Layer4(TCP=flow_pb2.TCP(source_port=3, destination_port=4)),
        ),
    ]
    mapper = SpanMapper(SpanConfig(join_window_s=1.0), rng=random.Random(3))
    assert [mapper.process(e) for e in events[:2]] == [[], []]  # one flow alone does not move the clock
    [expired] = mapper.process(events[2])
    assert expired.start_time_ns == T0 and expired.attributes["hubble.l7.unanswered"] is True
    assert mapper.watermark_ns == later + 1 and mapper.pending == 2


# ---- cardinality -----------------------------------------------------------------------------


def test_new_label_values_on_every_flow_stay_within_the_cardinality_limit() -> None:
    limit = 10
    # httpV2 swaps the two context values (as Hubble), so it needs both to label by pod.
    families = [
        "flow:sourceContext=pod",
        "drop:sourceContext=ip",
        "dns:query",
        "httpV2:sourceContext=pod;destinationContext=pod",
    ]
    metrics = MetricsAggregator(MetricsConfig(families=families, cardinality_limit=limit), 1)
    flows = 200
    for i in range(flows):
        pod = flow_pb2.Endpoint(namespace="ns", pod_name=f"pod-{i}-" + "x" * i)
        metrics.process(
            event(verdict=flow_pb2.DROPPED, source=pod, IP=flow_pb2.IP(source=f"10.0.{i // 256}.{i % 256}"))
        )
        dns = flow_pb2.Layer7(type=flow_pb2.REQUEST, dns=flow_pb2.DNS(query=f"q{i}.example.", qtypes=["A"]))
        metrics.process(
            event(Type=flow_pb2.L7, l7=dns, source=pod, event_type=flow_pb2.CiliumEventType(type=129))
        )
        # httpV2 reads a response as its request (source and destination swapped); semconv the server.
        metrics.process(http(flow_pb2.RESPONSE, reply=True, latency_ns=i + 1, source=pod, destination=pod))
    overflow = (("otel.metric.overflow", "true"),)
    for family in metrics.snapshot():
        assert len(family.points) == limit + 1, family.name
        assert family.points[-1].attributes == overflow
        values = [p.count if hasattr(p, "count") else p.value for p in family.points]
        assert sum(values) == (3 * flows if family.name == "hubble.flows_processed" else flows), family.name
    assert metrics.overflowed > 0
