"""OTLP-JSON file sink: Collector file-exporter lines with hex ids, camelCase keys, integer enums."""

from __future__ import annotations

import base64
import json
import threading
from pathlib import Path

import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

from hubble_bridge.errors import BridgeError
from hubble_bridge.sinks.otlp_encode import encode_metrics
from hubble_bridge.sinks.otlp_json import OtlpJsonFileSink
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
