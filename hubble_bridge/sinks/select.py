"""A sink that passes on only some signals: OTEL_<SIGNAL>_EXPORTER choosing outputs per signal, and
scale-out workers that leave metrics to the parent.

A signal not chosen counts as delivered (True): the sink was not asked to carry it, so nothing
failed. Everything else (stats, shutdown, names in logs) is the wrapped sink's.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from hubble_bridge.telemetry import LogRecord, MetricsSnapshot, SpanRecord


class SignalSelect:
    def __init__(self, sink: Any, signals: Collection[str]) -> None:
        self.sink = sink
        self.signals = frozenset(signals)

    def export_traces(self, spans: Sequence[SpanRecord]) -> bool:
        return "traces" not in self.signals or self.sink.export_traces(spans)  # type: ignore[no-any-return]

    def export_logs(self, logs: Sequence[LogRecord]) -> bool:
        return "logs" not in self.signals or self.sink.export_logs(logs)  # type: ignore[no-any-return]

    def export_metrics(self, snapshots: Sequence[MetricsSnapshot]) -> bool:
        return "metrics" not in self.signals or self.sink.export_metrics(snapshots)  # type: ignore[no-any-return]

    def shutdown(self) -> None:
        self.sink.shutdown()

    def __getattr__(self, name: str) -> Any:
        # stats(), last_error and the like come from the wrapped sink
        return getattr(self.sink, name)
