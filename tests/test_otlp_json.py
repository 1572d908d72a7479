"""OTLP-JSON file sink: Collector file-exporter lines with hex ids, camelCase keys, integer enums."""

from __future__ import annotations

import base64
import json
import threading
from pathlib import Path
from typing import Any

import orjson
import pytest
from google.protobuf import json_format
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

from hubble_bridge.errors import BridgeError
from hubble_bridge.sinks.otlp_encode import encode_logs, encode_metrics, encode_traces
from hubble_bridge.sinks.otlp_json import OtlpJsonFileSink, logs_json, to_otlp_json, traces_json
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
from tests import test_otlp_wire as wire  # its records, edge cases and strategies; the wire encoder's tests

RESOURCE = make_resource({"service.name": "frontend", "k8s.cluster.name": "kind"})
TRACE = bytes.fromhex("5b8efff798038103d269b633813fc60c")
SPAN = bytes.fromhex("eee19b7ec3c1b174")
PARENT = bytes.fromhex("eee19b7ec3c1b173")


def span() -> SpanRecord:
    return SpanRecord(
        RESOURCE, TRACE, SPAN, PARENT, "GET /cart", SpanKind.CLIENT, 1_700_000_000_000_000_001,
        1_700_000_000_250_000_000,
        {"http.response.status_code": 503, "dns.answers": ["1.1.1.1"], "ok": False},
        status=StatusCode.ERROR,
    )  # fmt: skip


def snapshot() -> MetricsSnapshot:
    return MetricsSnapshot(
        RESOURCE,
        2_000,
        [
            MetricFamily("hubble.flows_processed", "", "{flow}", MetricKind.COUNTER,
                         [NumberPoint((("verdict", "DROPPED"),), 2**40)], 1_000),
            MetricFamily("hubble.http_request_duration", "", "s", MetricKind.HISTOGRAM,
                         [HistogramPoint((), 2, 0.3, [1, 1], [Exemplar(0.2, 1_500, TRACE, SPAN)])],
                         1_000, (0.1,)),
        ],
    )  # fmt: skip


def read_lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_one_line_per_export_in_otlp_json(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    sink = OtlpJsonFileSink(path, scope_version="1.2.3")
    log = LogRecord(RESOURCE, 7, Severity.ERROR, "denied", {}, trace_id=TRACE, span_id=SPAN)
    assert sink.export_traces([span()]) and sink.export_metrics([snapshot()]) and sink.export_logs([log])
    sink.close()
    traces, metrics, logs = read_lines(path)

    [rs] = traces["resourceSpans"]  # type: ignore[index]
    assert rs["resource"]["attributes"] == [
        {"key": "k8s.cluster.name", "value": {"stringValue": "kind"}},
        {"key": "service.name", "value": {"stringValue": "frontend"}},
    ]
    assert rs["scopeSpans"][0]["scope"] == {"name": "hubble-otlp", "version": "1.2.3"}
    s = rs["scopeSpans"][0]["spans"][0]
    assert (s["traceId"], s["spanId"], s["parentSpanId"]) == (TRACE.hex(), SPAN.hex(), PARENT.hex())
    assert s["kind"] == 3 and s["status"] == {"code": 2}  # enums as integers
    assert s["startTimeUnixNano"] == "1700000000000000001"  # 64-bit integers as strings
    assert s["attributes"] == [
        {"key": "http.response.status_code", "value": {"intValue": "503"}},
        {"key": "dns.answers", "value": {"arrayValue": {"values": [{"stringValue": "1.1.1.1"}]}}},
        {"key": "ok", "value": {"boolValue": False}},
    ]

    sm = metrics["resourceMetrics"][0]["scopeMetrics"][0]  # type: ignore[index]
    counter, histogram = sm["metrics"]
    assert counter["sum"]["aggregationTemporality"] == 2 and counter["sum"]["isMonotonic"] is True
    assert counter["sum"]["dataPoints"][0]["asInt"] == str(2**40)
    point = histogram["histogram"]["dataPoints"][0]
    assert point["bucketCounts"] == ["1", "1"] and point["explicitBounds"] == [0.1]
    assert point["exemplars"] == [
        {"timeUnixNano": "1500", "asDouble": 0.2, "traceId": TRACE.hex(), "spanId": SPAN.hex()}
    ]

    record = logs["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0]  # type: ignore[index]
    assert (record["severityNumber"], record["severityText"]) == (17, "ERROR")
    assert record["body"] == {"stringValue": "denied"}
    assert (record["traceId"], record["spanId"]) == (TRACE.hex(), SPAN.hex())


def test_appends_and_nothing_for_empty_batches(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    path.write_text('{"resourceSpans":[]}\n')
    sink = OtlpJsonFileSink(path)
    assert sink.export_traces([]) and sink.export_logs([]) and sink.export_metrics([])
    assert sink.export_traces([span()])
    sink.flush()
    assert len(read_lines(path)) == 2  # flushed: readable before close
    sink.close()


def test_concurrent_writers_never_interleave(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    sink = OtlpJsonFileSink(path)
    spans = [span()] * 50  # long lines make torn writes likely if appends were not serialised

    def write() -> None:
        for _ in range(20):
            sink.export_traces(spans)

    threads = [threading.Thread(target=write) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    sink.close()
    lines = read_lines(path)
    assert len(lines) == 80
    assert all(len(line["resourceSpans"][0]["scopeSpans"][0]["spans"]) == 50 for line in lines)  # type: ignore[index]


def test_close_is_final_and_safe_twice(tmp_path: Path) -> None:
    sink = OtlpJsonFileSink(tmp_path / "out.jsonl")
    sink.close()
    sink.close()
    sink.flush()
    assert not sink.export_traces([span()])


def test_unopenable_path_is_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(BridgeError, match=r"cannot open output file .*/missing/out.jsonl: No such file"):
        OtlpJsonFileSink(tmp_path / "missing" / "out.jsonl")


def test_lines_decode_back_to_the_same_protobuf(tmp_path: Path) -> None:
    """Turning the hex ids back into protojson's base64 must give exactly the encoded request."""
    path = tmp_path / "out.jsonl"
    sink = OtlpJsonFileSink(path)
    sink.export_metrics([snapshot()])
    sink.close()
    [data] = read_lines(path)
    histogram = data["resourceMetrics"][0]["scopeMetrics"][0]["metrics"][1]["histogram"]  # type: ignore[index]
    exemplar = histogram["dataPoints"][0]["exemplars"][0]
    for key in ("traceId", "spanId"):
        exemplar[key] = base64.b64encode(bytes.fromhex(exemplar[key])).decode()
    decoded = json_format.ParseDict(data, ExportMetricsServiceRequest())
    assert decoded == encode_metrics([snapshot()])


# ---- spans and log records written straight to OTLP/JSON: the message path's output, exactly ----------


def assert_same_json(spans: list[SpanRecord], logs: list[LogRecord], version: str = "1.2.3") -> None:
    """The direct encoders against the message path (encode_* then message_to_dict), down to the bytes."""
    assert orjson.dumps(traces_json(spans, version)) == orjson.dumps(
        to_otlp_json(encode_traces(spans, scope_version=version))
    )
    assert orjson.dumps(logs_json(logs, version)) == orjson.dumps(
        to_otlp_json(encode_logs(logs, scope_version=version))
    )


def test_mapped_spans_and_logs_are_written_as_the_message_path_writes_them() -> None:
    spans, logs = wire.mapped_records(3000, seed=4)
    assert len(spans) > 1000 and len(logs) > 1000
    for _ in range(2):  # cold, then from the caches
        for start in range(0, max(len(spans), len(logs)), 300):
            assert_same_json(spans[start : start + 300], logs[start : start + 300])
    assert_same_json(spans[:10], logs[:10], version="")


@pytest.mark.parametrize("attributes", wire.EDGE_ATTRIBUTES, ids=range(len(wire.EDGE_ATTRIBUTES)))
def test_edge_attribute_values_in_json(attributes: dict[str, Any]) -> None:
    # Also what the direct encoder leaves to the message path: IntEnum and StrEnum values, None, bytes,
    # integers past int64 are here or below.
    for _ in range(2):
        assert_same_json([wire.span(attributes=dict(attributes))], [wire.log(attributes=dict(attributes))])


@pytest.mark.parametrize(
    "fields",
    [
        {"name": "", "kind": SpanKind.UNSPECIFIED, "parent_span_id": b""},
        {"trace_id": b"", "span_id": b"", "start_time_ns": 0, "end_time_ns": 0},
        {"status": StatusCode.ERROR, "status_message": "HTTP 503"},
        {"status": StatusCode.OK},
        {"status_message": "message without a code"},
        {"trace_state": "vendor=1"},
        {"end_time_ns": 2**64 - 1},
        {"kind": 1000, "status": -1},
    ],
)
def test_edge_span_fields_in_json(fields: dict[str, Any]) -> None:
    assert_same_json([wire.span(**fields)], [])


def test_values_protobuf_refuses_fail_as_the_message_path_does() -> None:
    for bad in ({"end_time_ns": 2**64}, {"start_time_ns": -1}, {"attributes": {"big": 2**63}}):
        with pytest.raises(ValueError):
            encode_traces([wire.span(**bad)])
        with pytest.raises(ValueError):
            traces_json([wire.span(**bad)])


@pytest.mark.parametrize(
    "fields",
    [
        {"body": "", "event_name": "", "trace_id": b"", "span_id": b"", "time_ns": 0},
        {"severity": Severity.ERROR, "trace_id": b"\x01" * 5, "span_id": b"\x02" * 3, "event_name": "e"},
    ],
)
def test_edge_log_fields_in_json(fields: dict[str, Any]) -> None:
    assert_same_json([], [wire.log(**fields)])


def test_several_resources_keep_first_seen_order_in_json() -> None:
    spans = [wire.span(wire.POD_B, 1), wire.span(wire.POD_A, 2), wire.span(wire.POD_B, 3), wire.span((), 4)]
    assert_same_json(spans, [wire.log(resource=s.resource) for s in spans])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(wire.span_records, max_size=6), st.lists(wire.log_records, max_size=6))
def test_arbitrary_records_in_json(spans: list[SpanRecord], logs: list[LogRecord]) -> None:
    assert_same_json(spans, logs)
