"""Encoding telemetry records into OTLP requests: values, ids, grouping by resource, metric kinds."""

from __future__ import annotations

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.metrics.v1 import metrics_pb2

from hubble_bridge import __version__
from hubble_bridge.sinks.otlp_encode import (
    any_value,
    count_items,
    encode_logs,
    encode_metrics,
    encode_traces,
)
from hubble_bridge.telemetry import (
    Exemplar,
    HistogramPoint,
    LogRecord,
    MetricFamily,
    MetricKind,
    MetricsSnapshot,
    NumberPoint,
    Severity,
    SpanKind,
    SpanRecord,
    StatusCode,
    make_resource,
)
from tests.otlp_receiver import attrs

POD_A = make_resource({"service.name": "frontend", "k8s.namespace.name": "shop", "k8s.pod.name": ""})
POD_B = make_resource({"service.name": "cart", "k8s.namespace.name": "shop"})
TRACE = bytes.fromhex("0af7651916cd43dd8448eb211c80319c")


def span(resource: tuple[tuple[str, str], ...], n: int, **extra: object) -> SpanRecord:
    return SpanRecord(
        resource=resource,
        trace_id=TRACE,
        span_id=bytes([n]) * 8,
        parent_span_id=b"" if n == 1 else b"\x01" * 8,
        name=f"GET /{n}",
        kind=SpanKind.SERVER,
        start_time_ns=1_700_000_000_000_000_000 + n,
        end_time_ns=1_700_000_000_500_000_000 + n,
        attributes={"http.request.method": "GET", "http.response.status_code": 503},
        **extra,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("value", "field", "expected"),
    [
        ("x", "string_value", "x"),
        (True, "bool_value", True),  # bool before int: True must not become int 1
        (False, "bool_value", False),
        (7, "int_value", 7),
        (-(2**63), "int_value", -(2**63)),
        (0.25, "double_value", 0.25),
    ],
)
def test_attribute_values_keep_their_type(value: object, field: str, expected: object) -> None:
    encoded = any_value(value)  # type: ignore[arg-type]
    assert encoded.WhichOneof("value") == field
    assert getattr(encoded, field) == expected


def test_list_of_strings_becomes_an_array() -> None:
    encoded = any_value(["10.0.0.1", "10.0.0.2"])
    assert [v.string_value for v in encoded.array_value.values] == ["10.0.0.1", "10.0.0.2"]


def test_span_fields_survive_a_wire_round_trip() -> None:
    record = span(POD_A, 2, status=StatusCode.ERROR, status_message="HTTP 503", trace_state="vendor=1")
    record.attributes["dns.answers"] = ["1.2.3.4"]
    record.attributes["hubble.is_reply"] = False
    wire = encode_traces([record]).SerializeToString()
    decoded = ExportTraceServiceRequest.FromString(wire)
    [rs] = decoded.resource_spans
    [ss] = rs.scope_spans
    [s] = ss.spans
    assert (ss.scope.name, ss.scope.version) == ("hubble-otlp", __version__)
    assert s.trace_id == TRACE and s.span_id == b"\x02" * 8 and s.parent_span_id == b"\x01" * 8
    assert (s.name, s.kind, s.trace_state) == ("GET /2", 2, "vendor=1")
    assert (s.start_time_unix_nano, s.end_time_unix_nano) == (record.start_time_ns, record.end_time_ns)
    assert (s.status.code, s.status.message) == (2, "HTTP 503")
    assert attrs(s.attributes) == {
        "http.request.method": "GET",
        "http.response.status_code": 503,
        "dns.answers": ["1.2.3.4"],
        "hubble.is_reply": False,
    }
    # make_resource dropped the empty pod name; keys arrive sorted.
    assert attrs(rs.resource.attributes) == {"k8s.namespace.name": "shop", "service.name": "frontend"}


def test_spans_are_grouped_by_resource_in_first_seen_order() -> None:
    spans = [span(POD_A, 1), span(POD_B, 2), span(POD_A, 3), span(POD_B, 4), span(POD_A, 5)]
    request = encode_traces(spans, scope_name="test", scope_version="9")
    services = [attrs(rs.resource.attributes)["service.name"] for rs in request.resource_spans]
    assert services == ["frontend", "cart"]
    names = [[s.name for s in rs.scope_spans[0].spans] for rs in request.resource_spans]
    assert names == [["GET /1", "GET /3", "GET /5"], ["GET /2", "GET /4"]]
    assert request.resource_spans[1].scope_spans[0].scope.version == "9"
    assert count_items(request) == 5


def test_cached_resources_are_not_shared_with_outputs() -> None:
    first = encode_traces([span(POD_A, 1)])
    first.resource_spans[0].resource.attributes[0].value.string_value = "tampered"
    second = encode_traces([span(POD_A, 1)])
    assert attrs(second.resource_spans[0].resource.attributes)["k8s.namespace.name"] == "shop"


def test_log_records() -> None:
    log = LogRecord(
        resource=POD_B,
        time_ns=1_700_000_000_123_456_789,
        severity=Severity.WARN,
        body="shop/cart:8080 -> 10.0.0.9:53 DROPPED (POLICY_DENIED)",
        attributes={"hubble.drop_reason": "POLICY_DENIED"},
        event_name="hubble.flow.drop",
        trace_id=TRACE,
        span_id=b"\x05" * 8,
    )
    request = encode_logs([log, log])
    [rl] = request.resource_logs
    records = rl.scope_logs[0].log_records
    assert len(records) == 2 and count_items(request) == 2
    r = records[0]
    assert (r.severity_number, r.severity_text) == (13, "WARN")
    assert r.time_unix_nano == r.observed_time_unix_nano == log.time_ns
    assert r.body.string_value == log.body
    assert (r.event_name, r.trace_id, r.span_id) == ("hubble.flow.drop", TRACE, b"\x05" * 8)
    assert attrs(r.attributes) == {"hubble.drop_reason": "POLICY_DENIED"}


def families() -> list[MetricFamily]:
    return [
        MetricFamily(
            name="hubble.flows_processed",
            description="Total number of flows processed",
            unit="{flow}",
            kind=MetricKind.COUNTER,
            points=[
                NumberPoint((("protocol", "TCP"), ("verdict", "FORWARDED")), 10),
                NumberPoint((("protocol", "UDP"), ("verdict", "DROPPED")), 2.5),
            ],
            start_time_ns=100,
        ),
        MetricFamily("hubble_otlp.queue.depth", "", "1", MetricKind.GAUGE, [NumberPoint((), 3)], 100),
        MetricFamily(
            name="hubble.http_request_duration",
            description="Quantiles of HTTP request duration in seconds",
            unit="s",
            kind=MetricKind.HISTOGRAM,
            points=[
                HistogramPoint(
                    attributes=(("method", "GET"),),
                    count=3,
                    sum=0.61,
                    bucket_counts=[1, 1, 1],
                    exemplars=[Exemplar(0.5, 150, TRACE, b"\x07" * 8)],
                )
            ],
            start_time_ns=100,
            bounds=(0.1, 0.5),
        ),
        MetricFamily("hubble.empty", "", "1", MetricKind.COUNTER, [], 100),
    ]


def test_metric_kinds() -> None:
    request = encode_metrics([MetricsSnapshot(POD_A, 200, families())])
    [rm] = request.resource_metrics
    metrics = {m.name: m for m in rm.scope_metrics[0].metrics}
    assert "hubble.empty" not in metrics  # families without points are left out

    counter = metrics["hubble.flows_processed"]
    assert (counter.description, counter.unit) == ("Total number of flows processed", "{flow}")
    assert counter.sum.is_monotonic
    assert counter.sum.aggregation_temporality == metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
    p1, p2 = counter.sum.data_points
    assert (p1.WhichOneof("value"), p1.as_int, p2.WhichOneof("value"), p2.as_double) == (
        "as_int", 10, "as_double", 2.5
    )  # fmt: skip
    assert (p1.start_time_unix_nano, p1.time_unix_nano) == (100, 200)
    assert attrs(p1.attributes) == {"protocol": "TCP", "verdict": "FORWARDED"}

    gauge = metrics["hubble_otlp.queue.depth"].gauge.data_points[0]
    assert (gauge.as_int, gauge.start_time_unix_nano, gauge.time_unix_nano) == (3, 0, 200)

    histogram = metrics["hubble.http_request_duration"].histogram
    assert histogram.aggregation_temporality == metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
    [h] = histogram.data_points
    assert (h.count, h.sum) == (3, 0.61)
    assert (list(h.bucket_counts), list(h.explicit_bounds)) == ([1, 1, 1], [0.1, 0.5])
    [e] = h.exemplars
    assert (e.as_double, e.time_unix_nano, e.trace_id, e.span_id) == (0.5, 150, TRACE, b"\x07" * 8)
    assert count_items(request) == 4


def test_snapshots_sharing_a_resource_are_merged() -> None:
    fams = families()
    snapshots = [
        MetricsSnapshot(POD_A, 200, fams[:1]),
        MetricsSnapshot(POD_B, 200, fams[1:2]),
        MetricsSnapshot(POD_A, 300, fams[2:3]),
    ]
    request = encode_metrics(snapshots)
    names = [[m.name for m in rm.scope_metrics[0].metrics] for rm in request.resource_metrics]
    assert names == [["hubble.flows_processed", "hubble.http_request_duration"], ["hubble_otlp.queue.depth"]]
    histogram = request.resource_metrics[0].scope_metrics[0].metrics[1].histogram.data_points[0]
    assert histogram.time_unix_nano == 300  # each family keeps its own snapshot's time


def test_nothing_to_encode_gives_an_empty_request() -> None:
    assert count_items(encode_traces([])) == 0
    assert not encode_metrics([MetricsSnapshot(POD_A, 1, [families()[3]])]).resource_metrics
