"""OTLP/JSON lines: the Collector file exporter's format, one export request per line.

OTLP/JSON is protojson (lowerCamelCase keys, 64-bit integers as strings) with
integer enums and trace/span ids as lowercase hex instead of base64; the
project's fast encoder writes that directly (json_format took 3x as long).
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import orjson

from hubble_bridge import __version__
from hubble_bridge.errors import BridgeError
from hubble_bridge.flows.fastjson import message_to_dict
from hubble_bridge.sinks.otlp_encode import ExportRequest, encode_logs, encode_metrics, encode_traces
from hubble_bridge.telemetry import LogRecord, MetricsSnapshot, SpanRecord

log = logging.getLogger(__name__)
# Bytes fields that OTLP/JSON encodes as hex (spans, links, log records, exemplars); other bytes stay base64.
_HEX_FIELDS = frozenset({"trace_id", "span_id", "parent_span_id"})


def to_otlp_json(request: ExportRequest) -> dict[str, Any]:
    """An export request as an OTLP/JSON object ({"resourceSpans": [...]} and so on)."""
    return message_to_dict(request, enums_as_ints=True, hex_bytes=_HEX_FIELDS)  # type: ignore[no-any-return]


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
        return not spans or self.export_request(encode_traces(spans, scope_version=self._scope_version))

    def export_metrics(self, snapshots: Sequence[MetricsSnapshot]) -> bool:
        request = encode_metrics(snapshots, scope_version=self._scope_version)
        return not request.resource_metrics or self.export_request(request)

    def export_logs(self, logs: Sequence[LogRecord]) -> bool:
        return not logs or self.export_request(encode_logs(logs, scope_version=self._scope_version))

    def export_request(self, request: ExportRequest) -> bool:
        line = orjson.dumps(to_otlp_json(request)) + b"\n"
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
