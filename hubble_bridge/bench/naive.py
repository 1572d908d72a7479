"""The naive design the bench compares against: an OpenTelemetry SDK span and counter call per flow.

This is how a first bridge is usually written (hubble-otel's shape): decode each
event with protobuf's own codecs, start and end an SDK span with the flow's
attributes, add 1 to an SDK counter, and let a BatchSpanProcessor and a periodic
metric reader encode OTLP. Only the network is left out: the exporters encode
the requests and drop them (or write them to a file), which flatters it.

`python -m hubble_bridge.bench.naive FILE [OUT]` is the naive `convert` for the
whole-process comparison, written as a developer would write it: each line read
with `json.loads` and the same attributes taken from the dicts (no protobuf at
all), encoded OTLP requests out (length-prefixed, as the bench's frame files).
"""

from __future__ import annotations

import json
import struct
import sys
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, BinaryIO

from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricExportResult,
    MetricsData,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind

from hubble_bridge.api import flow_pb2, observer_pb2
from hubble_bridge.flows.codec import timestamp_ns

GetFlowsResponse = observer_pb2.GetFlowsResponse
_VERDICT = flow_pb2.Verdict.Name
_TYPE = flow_pb2.FlowType.Name


class _Encoded:
    """Where encoded requests go: counted, and written (each behind a 4-byte length) when there is a file."""

    def __init__(self, out: BinaryIO | None) -> None:
        self.out = out
        self.bytes = 0

    def take(self, data: bytes) -> None:
        self.bytes += len(data)
        if self.out is not None:
            self.out.write(struct.pack(">I", len(data)))
            self.out.write(data)


class _SpanEncoder(SpanExporter):
    def __init__(self, sink: _Encoded) -> None:
        self.sink = sink

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.sink.take(encode_spans(spans).SerializeToString())
        return SpanExportResult.SUCCESS


class _MetricEncoder(MetricExporter):
    def __init__(self, sink: _Encoded) -> None:
        super().__init__()
        self.sink = sink

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **_: Any
    ) -> MetricExportResult:
        self.sink.take(encode_metrics(metrics_data).SerializeToString())
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **_: Any) -> None:
        pass


class NaiveBridge:
    """SDK span + SDK counter per flow; `close()` flushes everything (include it in any timing)."""

    def __init__(self, expected_flows: int, out: BinaryIO | None = None) -> None:
        self.sink = _Encoded(out)
        resource = Resource.create({"service.name": "hubble-naive"})
        self._traces = TracerProvider(resource=resource)
        # A queue that holds every span: the default 2048 would drop spans, flattering the rate.
        self._traces.add_span_processor(
            BatchSpanProcessor(_SpanEncoder(self.sink), max_queue_size=max(expected_flows, 2048))
        )
        reader = PeriodicExportingMetricReader(_MetricEncoder(self.sink), export_interval_millis=15_000)
        self._meters = MeterProvider(resource=resource, metric_readers=[reader])
        self._tracer = self._traces.get_tracer("hubble-naive")
        self._flows = self._meters.get_meter("hubble-naive").create_counter("hubble_flows_processed_total")

    def process(self, response: GetFlowsResponse) -> None:
        if not response.HasField("flow"):
            return
        f = response.flow
        src, dst = f.source, f.destination
        attributes: dict[str, Any] = {
            "hubble.verdict": _VERDICT(f.verdict),
            "hubble.flow.type": _TYPE(f.Type),
            "source.address": f.IP.source,
            "destination.address": f.IP.destination,
            "k8s.source.namespace": src.namespace,
            "k8s.source.pod.name": src.pod_name,
            "k8s.destination.namespace": dst.namespace,
            "k8s.destination.pod.name": dst.pod_name,
            "k8s.node.name": f.node_name,
        }
        protocol = f.l4.WhichOneof("protocol") or ""
        if protocol in ("TCP", "UDP"):
            l4 = getattr(f.l4, protocol)
            attributes["source.port"] = l4.source_port
            attributes["destination.port"] = l4.destination_port
        if f.l7.HasField("http"):
            attributes["http.request.method"] = f.l7.http.method
            attributes["url.full"] = f.l7.http.url
            attributes["http.response.status_code"] = f.l7.http.code
        elif f.l7.HasField("dns"):
            attributes["dns.question.name"] = f.l7.dns.query
        start = timestamp_ns(f.time)
        span = self._tracer.start_span(
            f.Summary or "flow", kind=SpanKind.INTERNAL, start_time=start, attributes=attributes
        )
        span.end(end_time=start + f.l7.latency_ns)
        self._flows.add(
            1,
            {
                "verdict": attributes["hubble.verdict"],
                "type": attributes["hubble.flow.type"],
                "protocol": protocol,
                "source_namespace": src.namespace,
                "destination_namespace": dst.namespace,
            },
        )

    def process_dict(self, event: dict[str, Any]) -> None:
        """The same span and counter from an event read with json.loads (protojson field names)."""
        f = event.get("flow")
        if f is None:
            return
        src, dst, ip = f.get("source", {}), f.get("destination", {}), f.get("IP", {})
        attributes: dict[str, Any] = {
            "hubble.verdict": f.get("verdict", "VERDICT_UNKNOWN"),
            "hubble.flow.type": f.get("Type", "UNKNOWN_TYPE"),
            "source.address": ip.get("source", ""),
            "destination.address": ip.get("destination", ""),
            "k8s.source.namespace": src.get("namespace", ""),
            "k8s.source.pod.name": src.get("pod_name", ""),
            "k8s.destination.namespace": dst.get("namespace", ""),
            "k8s.destination.pod.name": dst.get("pod_name", ""),
            "k8s.node.name": f.get("node_name", ""),
        }
        l4 = f.get("l4", {})
        protocol = next(iter(l4), "")
        if protocol in ("TCP", "UDP"):
            attributes["source.port"] = l4[protocol].get("source_port", 0)
            attributes["destination.port"] = l4[protocol].get("destination_port", 0)
        l7 = f.get("l7", {})
        if "http" in l7:
            http = l7["http"]
            attributes["http.request.method"] = http.get("method", "")
            attributes["url.full"] = http.get("url", "")
            attributes["http.response.status_code"] = http.get("code", 0)
        elif "dns" in l7:
            attributes["dns.question.name"] = l7["dns"].get("query", "")
        start = _rfc3339_ns(f["time"]) if "time" in f else 0
        span = self._tracer.start_span(
            f.get("Summary") or "flow", kind=SpanKind.INTERNAL, start_time=start, attributes=attributes
        )
        span.end(end_time=start + int(l7.get("latency_ns", 0)))
        self._flows.add(
            1,
            {
                "verdict": attributes["hubble.verdict"],
                "type": attributes["hubble.flow.type"],
                "protocol": protocol,
                "source_namespace": attributes["k8s.source.namespace"],
                "destination_namespace": attributes["k8s.destination.namespace"],
            },
        )

    def close(self) -> None:
        self._traces.force_flush()
        self._traces.shutdown()
        self._meters.force_flush()
        self._meters.shutdown()


def run_frames(frames: Sequence[bytes]) -> int:
    """Decode and process serialized events the naive way; returns the encoded OTLP bytes."""
    naive = NaiveBridge(len(frames))
    decode = GetFlowsResponse.FromString
    for frame in frames:
        naive.process(decode(frame))
    naive.close()
    return naive.sink.bytes


def _rfc3339_ns(text: str) -> int:
    """Nanoseconds since the epoch of `2026-01-01T00:00:00.123456789Z` (datetime keeps microseconds only)."""
    whole, _, fraction = text.rstrip("Z").partition(".")
    seconds = int(datetime.fromisoformat(whole + "+00:00").timestamp())
    return seconds * 1_000_000_000 + int((fraction + "000000000")[:9])


def run_lines(lines: Iterable[bytes], expected: int, out: BinaryIO | None) -> int:
    """The naive convert: json.loads per line, the SDK span and counter from the dicts."""
    naive = NaiveBridge(expected, out)
    count = 0
    for line in lines:
        if line.strip():
            naive.process_dict(json.loads(line))
            count += 1
    naive.close()
    return count


def main(argv: Sequence[str]) -> int:
    if not argv or len(argv) > 2:
        print("usage: python -m hubble_bridge.bench.naive FILE.jsonl [OUT]", file=sys.stderr)
        return 2
    with open(argv[0], "rb") as fh:
        lines = fh.read().splitlines()
    if len(argv) == 2:
        with open(argv[1], "wb") as out:
            count = run_lines(lines, len(lines), out)
    else:
        count = run_lines(lines, len(lines), None)
    print(f"naive: processed {count} events", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
