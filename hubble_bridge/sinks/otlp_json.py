"""OTLP/JSON lines: the Collector file exporter's format, one export request per line.

OTLP/JSON is protojson (lowerCamelCase keys, 64-bit integers as strings) with
integer enums and trace/span ids as lowercase hex instead of base64; the
project's fast encoder writes that directly (json_format took 3x as long).

Spans and log records (`convert` writes a span for every sixth flow) are turned
into those dicts straight from the records, with key/value pairs cached: the
same output as encoding the request message and converting it, field for field
and in protobuf's field order, at a fifth of the cost. Anything unusual (a
value type or an integer protobuf would refuse or convert) takes the message
path, which raises what protobuf raises.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import orjson
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from hubble_bridge import __version__
from hubble_bridge.errors import BridgeError
from hubble_bridge.flows.fastjson import message_to_dict
from hubble_bridge.sinks.otlp_encode import SCOPE_NAME, ExportRequest, encode_metrics
from hubble_bridge.sinks.otlp_wire import logs_bytes, traces_bytes
from hubble_bridge.telemetry import (
    Attributes,
    AttrValue,
    LogRecord,
    MetricsSnapshot,
    Resource,
    Severity,
    SpanKind,
    SpanRecord,
    StatusCode,
)

log = logging.getLogger(__name__)
# Bytes fields that OTLP/JSON encodes as hex (spans, links, log records, exemplars); other bytes stay base64.
_HEX_FIELDS = frozenset({"trace_id", "span_id", "parent_span_id"})


def to_otlp_json(request: ExportRequest) -> dict[str, Any]:
    """An export request as an OTLP/JSON object ({"resourceSpans": [...]} and so on)."""
    return message_to_dict(request, enums_as_ints=True, hex_bytes=_HEX_FIELDS)  # type: ignore[no-any-return]


_INT64_MIN, _INT64_MAX, _UINT64_MAX = -(2**63), 2**63 - 1, 2**64 - 1
_SPECIAL_FLOATS = {float("inf"): "Infinity", float("-inf"): "-Infinity"}
_CACHE_LIMIT = 8192  # key/value dicts kept; the cache starts over when full


class _Unusual(Exception):
    """A record the direct encoder does not cover: the message path encodes it."""


_PAIRS: dict[tuple[str, type, AttrValue], dict[str, Any]] = {}


def _pair(key: str, value: AttrValue) -> dict[str, Any]:
    """A KeyValue as OTLP/JSON; shared between records (never modified), cached by key, type and value."""
    typ = type(value)
    if typ is str or typ is int or typ is bool:
        cache_key = (key, typ, value)
        found = _PAIRS.get(cache_key)
        if found is None:
            if len(_PAIRS) >= _CACHE_LIMIT:
                _PAIRS.clear()
            found = _PAIRS[cache_key] = _keyed(key, _any_value(value))
        return found
    return _keyed(key, _any_value(value))


def _keyed(key: str, value: dict[str, Any]) -> dict[str, Any]:
    return {"key": key, "value": value} if key else {"value": value}  # proto3: "" is not written


def _any_value(value: AttrValue) -> dict[str, Any]:
    # Exact types, bool before int, as otlp_encode.any_value decides; others take the message path.
    typ = type(value)
    if typ is str:
        return {"stringValue": value}
    if typ is bool:
        return {"boolValue": value}
    if typ is int:
        if not _INT64_MIN <= value <= _INT64_MAX:  # type: ignore[operator]
            raise _Unusual
        return {"intValue": str(value)}
    if typ is float:
        if value != value:
            return {"doubleValue": "NaN"}
        return {"doubleValue": _SPECIAL_FLOATS.get(value, value)}  # type: ignore[call-overload]
    if typ is list or typ is tuple:
        values = [_any_value(v) for v in value]  # type: ignore[union-attr]
        return {"arrayValue": {"values": values} if values else {}}
    raise _Unusual


def _attributes(attributes: Attributes) -> list[dict[str, Any]]:
    return [_pair(k, v) for k, v in attributes.items()]


def _nanos(value: int) -> str:
    if type(value) is not int or not 0 <= value <= _UINT64_MAX:
        raise _Unusual
    return str(value)


def _span(span: SpanRecord) -> dict[str, Any]:
    out: dict[str, Any] = {}  # in the Span message's field order, only what is set
    if span.trace_id:
        out["traceId"] = span.trace_id.hex()
    if span.span_id:
        out["spanId"] = span.span_id.hex()
    if span.trace_state:
        out["traceState"] = span.trace_state
    if span.parent_span_id:
        out["parentSpanId"] = span.parent_span_id.hex()
    if span.name:
        out["name"] = span.name
    if type(span.kind) is not SpanKind or type(span.status) is not StatusCode:
        raise _Unusual
    if span.kind:
        out["kind"] = int(span.kind)
    if span.start_time_ns:
        out["startTimeUnixNano"] = _nanos(span.start_time_ns)
    if span.end_time_ns:
        out["endTimeUnixNano"] = _nanos(span.end_time_ns)
    if span.attributes:
        out["attributes"] = _attributes(span.attributes)
    if span.status or span.status_message:
        status: dict[str, Any] = {}
        if span.status_message:
            status["message"] = span.status_message
        if span.status:
            status["code"] = int(span.status)
        out["status"] = status
    return out


def _log(log: LogRecord) -> dict[str, Any]:
    if type(log.severity) is not Severity:
        raise _Unusual
    out: dict[str, Any] = {}  # in the LogRecord message's field order, only what is set
    if log.time_ns:
        out["timeUnixNano"] = _nanos(log.time_ns)
    out["severityNumber"] = int(log.severity)
    out["severityText"] = log.severity.name
    out["body"] = {"stringValue": log.body}  # always set, also when ""
    if log.attributes:
        out["attributes"] = _attributes(log.attributes)
    if log.trace_id:
        out["traceId"] = log.trace_id.hex()
    if log.span_id:
        out["spanId"] = log.span_id.hex()
    if log.time_ns:
        out["observedTimeUnixNano"] = out["timeUnixNano"]
    if log.event_name:
        out["eventName"] = log.event_name
    return out


_RESOURCES: dict[Resource, dict[str, Any]] = {}


def _resource(resource: Resource) -> dict[str, Any]:
    found = _RESOURCES.get(resource)
    if found is None:
        if len(_RESOURCES) >= _CACHE_LIMIT:
            _RESOURCES.clear()
        found = _RESOURCES[resource] = {"attributes": [_pair(k, v) for k, v in resource]} if resource else {}
    return found


def _request(
    records: Sequence[Any], encode: Any, names: tuple[str, str, str], scope: dict[str, str]
) -> dict[str, Any]:
    """{"resourceSpans": [...]} (or logs): one entry per resource in first-seen order, one scope each."""
    groups: dict[Resource, list[dict[str, Any]]] = {}
    for record in records:
        group = groups.get(record.resource)
        if group is None:
            group = groups[record.resource] = []
        group.append(encode(record))
    entries, scoped, items = names
    if not groups:
        return {}  # protojson leaves out an empty repeated field
    return {
        entries: [
            {"resource": _resource(resource), scoped: [{"scope": scope, items: encoded}]}
            for resource, encoded in groups.items()
        ]
    }


def _scope(version: str) -> dict[str, str]:
    scope = {"name": SCOPE_NAME} if SCOPE_NAME else {}
    if version:
        scope["version"] = version
    return scope


def traces_json(spans: Sequence[SpanRecord], scope_version: str = __version__) -> dict[str, Any]:
    """to_otlp_json(encode_traces(spans, scope_version=...)), built from the records directly."""
    try:
        return _request(spans, _span, ("resourceSpans", "scopeSpans", "spans"), _scope(scope_version))
    except _Unusual:
        return to_otlp_json(
            ExportTraceServiceRequest.FromString(traces_bytes(spans, scope_version=scope_version))
        )


def logs_json(logs: Sequence[LogRecord], scope_version: str = __version__) -> dict[str, Any]:
    """to_otlp_json(encode_logs(logs, scope_version=...)), built from the records directly."""
    try:
        return _request(logs, _log, ("resourceLogs", "scopeLogs", "logRecords"), _scope(scope_version))
    except _Unusual:
        return to_otlp_json(
            ExportLogsServiceRequest.FromString(logs_bytes(logs, scope_version=scope_version))
        )


class OtlpJsonFileSink:
    """Appends one OTLP/JSON line per export to `path` ("-" for standard output); thread-safe."""

    def __init__(self, path: str | Path, scope_version: str = __version__) -> None:
        self.path = str(path)
        self.sink_name = "console" if self.path == "-" else "file"  # in the self-metrics and the summary
        self._scope_version = scope_version
        self._lock = threading.Lock()
        self._closed = False
        self.last_error = ""
        if self.path == "-":
            self._file: IO[bytes] = sys.stdout.buffer
        else:
            try:
                self._file = open(self.path, "ab")  # noqa: SIM115 - owned until close()
            except OSError as exc:
                raise BridgeError(f"cannot open output file {self.path}: {exc.strerror}") from None

    def export_traces(self, spans: Sequence[SpanRecord]) -> bool:
        return not spans or self._write(traces_json(spans, self._scope_version))

    def export_metrics(self, snapshots: Sequence[MetricsSnapshot]) -> bool:
        request = encode_metrics(snapshots, scope_version=self._scope_version)
        return not request.resource_metrics or self.export_request(request)

    def export_logs(self, logs: Sequence[LogRecord]) -> bool:
        return not logs or self._write(logs_json(logs, self._scope_version))

    def export_request(self, request: ExportRequest) -> bool:
        return self._write(to_otlp_json(request))

    def _write(self, data: dict[str, Any]) -> bool:
        line = orjson.dumps(data) + b"\n"
        with self._lock:
            if self._closed:
                return False
            try:
                self._file.write(line)
            except OSError as exc:
                self.last_error = f"writing {self.path}: {exc.strerror}"
                log.warning("OTLP JSON file: %s", self.last_error)
                return False
        return True

    def flush(self) -> None:
        with self._lock:
            if not self._closed:
                self._file.flush()

    def close(self) -> None:
        """Flush and close; safe twice. Standard output is flushed but left open."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._file.flush()
            if self.path != "-":
                self._file.close()

    shutdown = close
