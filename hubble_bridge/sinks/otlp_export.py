"""The OTLP exporter: encode a batch, send it over the signal's transport, retry what may succeed later.

Traces and logs are written straight to protobuf bytes (otlp_wire); metrics,
exported once per interval, go through the protobuf message (otlp_encode).

Retries use exponential backoff with jitter, never sooner than the server's
Retry-After / RetryInfo hint, and stop at the export deadline (timeout_s per
batch, all attempts included). shutdown() wakes a sleeping backoff at once.
Failures reach the caller as False plus a one-line `last_error`; the counters
feed the bridge's self-metrics.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

import grpc
from google.protobuf.message import Message
from tenacity import RetryCallState, Retrying, retry_if_exception_type, wait_exponential_jitter

from hubble_bridge import __version__
from hubble_bridge.sinks.otlp_config import SIGNALS, OtlpConfig, Signal, SignalSettings
from hubble_bridge.sinks.otlp_encode import ExportRequest, count_items, encode_metrics, signal_of
from hubble_bridge.sinks.otlp_temporality import DeltaConverter
from hubble_bridge.sinks.otlp_transport import (
    ExportError,
    GrpcTransport,
    HttpTransport,
    RetryableExportError,
    Transport,
    channel_key,
    grpc_channel,
)
from hubble_bridge.sinks.otlp_wire import logs_bytes, traces_bytes
from hubble_bridge.telemetry import LogRecord, MetricsSnapshot, SpanRecord

__all__ = ["OtlpConfig", "OtlpExporter", "SignalStats"]

log = logging.getLogger(__name__)
PARTIAL_LOG_INTERVAL_S = 60.0
_REJECTED_FIELD = {
    "traces": "rejected_spans",
    "metrics": "rejected_data_points",
    "logs": "rejected_log_records",
}


@dataclass
class SignalStats:
    """Counters of one signal; items are spans, metric data points or log records."""

    items_sent: int = 0  # accepted by the server
    items_failed: int = 0  # not delivered, rejected ones included
    items_rejected: int = 0  # refused through a partial-success response
    batches_sent: int = 0
    batches_failed: int = 0
    retries: int = 0
    last_error: str = ""
    last_latency_s: float = 0.0  # duration of the last export call, retries included


class _Interrupted(Exception):
    pass


class OtlpExporter:
    """Exports to one OTLP endpoint per signal; safe to call from several threads."""

    sink_name = "otlp"  # in the self-metrics and the exit summary

    def __init__(
        self,
        config: OtlpConfig,
        *,
        scope_version: str = __version__,
        backoff_initial_s: float = 1.0,
        backoff_max_s: float = 32.0,
    ) -> None:
        config.validate()
        self._scope_version = scope_version
        self._wait_backoff = wait_exponential_jitter(
            multiplier=backoff_initial_s, max=backoff_max_s, jitter=backoff_initial_s
        )
        self._settings = {signal: config.settings(signal) for signal in SIGNALS}
        self._channels: dict[tuple[str, bool, str, str, str], grpc.Channel] = {}
        self._transports = {signal: self._transport(s) for signal, s in self._settings.items()}
        self._stats = {signal: SignalStats() for signal in SIGNALS}
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._temporality = DeltaConverter(config.metrics_temporality)
        self._partials: dict[Signal, int] = dict.fromkeys(SIGNALS, 0)
        self._partial_logged: dict[Signal, float] = {}

    def _transport(self, settings: SignalSettings) -> Transport:
        if settings.protocol == "http/protobuf":
            return HttpTransport(settings)
        key = channel_key(settings)
        if key not in self._channels:
            self._channels[key] = grpc_channel(settings)
        return GrpcTransport(settings, self._channels[key])

    def export_traces(self, spans: Sequence[SpanRecord]) -> bool:
        if not spans:
            return True
        return self._export("traces", traces_bytes(spans, scope_version=self._scope_version), len(spans))

    def export_metrics(self, snapshots: Sequence[MetricsSnapshot]) -> bool:
        converted, pending = self._temporality.convert(snapshots)
        ok = self.export_request(encode_metrics(converted, scope_version=self._scope_version))
        if ok:
            self._temporality.commit(pending)  # deltas start from what the backend accepted
        return ok

    def export_logs(self, logs: Sequence[LogRecord]) -> bool:
        if not logs:
            return True
        return self._export("logs", logs_bytes(logs, scope_version=self._scope_version), len(logs))

    def export_request(self, request: ExportRequest) -> bool:
        """Send an already encoded request; True when the server accepted it (partially or fully)."""
        items = count_items(request)
        if not items:
            return True
        return self._export(signal_of(request), request.SerializeToString(), items)

    def _export(self, signal: Signal, request: bytes, items: int) -> bool:
        """Send a serialized request of `items` spans, data points or log records."""
        started = time.monotonic()
        try:
            response = self._send(signal, request, started + self._settings[signal].timeout_s)
        except (ExportError, _Interrupted) as exc:
            self._record(signal, started, False, 0, items, str(exc) or f"{signal}: interrupted by shutdown")
            return False
        except Exception as exc:  # a bug must cost one batch, not the exporting thread
            log.debug("OTLP %s export failed unexpectedly", signal, exc_info=True)
            self._record(signal, started, False, 0, items, f"{signal}: {type(exc).__name__}: {exc}")
            return False
        partial = getattr(response, "partial_success", None)
        rejected = getattr(partial, _REJECTED_FIELD[signal], 0) if partial is not None else 0
        error = ""
        if rejected:
            error = f"{signal}: server rejected {rejected} of {items}: {partial.error_message}".rstrip(": ")
        elif partial is not None and partial.error_message:
            error = f"{signal}: accepted with a warning: {partial.error_message}"
        self._record(signal, started, True, items - rejected, rejected, error)
        return True

    def _send(self, signal: Signal, request: bytes, deadline: float) -> Message:
        if self._stopped.is_set():
            raise ExportError(f"{signal}: exporter is shut down")
        transport = self._transports[signal]

        def attempt() -> Message:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ExportError(f"{signal}: export deadline passed")
            return transport.send(request, remaining)

        retrying = Retrying(
            retry=retry_if_exception_type(RetryableExportError),
            wait=self._wait,
            stop=lambda rs: self._stopped.is_set() or time.monotonic() + rs.upcoming_sleep >= deadline,
            sleep=self._sleep,
            before_sleep=lambda rs: self._count_retry(signal),
            reraise=True,
        )
        try:
            return retrying(attempt)
        except RetryableExportError as exc:
            attempts = retrying.statistics.get("attempt_number", 1)
            plural = "s" if attempts != 1 else ""
            raise ExportError(f"{exc} (gave up after {attempts} attempt{plural})") from None

    def _wait(self, state: RetryCallState) -> float:
        backoff = self._wait_backoff(state)
        exc = state.outcome.exception() if state.outcome else None
        hint = getattr(exc, "retry_after_s", None)
        return max(backoff, hint) if hint is not None else backoff

    def _sleep(self, seconds: float) -> None:
        if self._stopped.wait(seconds):
            raise _Interrupted()

    def _count_retry(self, signal: Signal) -> None:
        with self._lock:
            self._stats[signal].retries += 1

    def _record(
        self, signal: Signal, started: float, accepted: bool, sent: int, failed: int, error: str
    ) -> None:
        with self._lock:
            stats = self._stats[signal]
            stats.items_sent += sent
            stats.items_failed += failed
            stats.last_latency_s = time.monotonic() - started
            if accepted:
                stats.batches_sent += 1
                stats.items_rejected += failed
            else:
                stats.batches_failed += 1
            repeated = error == stats.last_error
            if error:
                stats.last_error = error
            if accepted and error:
                # Partial success: one warning per signal per PARTIAL_LOG_INTERVAL_S, with the backend's
                # message and how many such responses the interval had (each is counted in the stats).
                now = time.monotonic()
                self._partials[signal] += 1
                repeated = (
                    now < self._partial_logged.get(signal, -PARTIAL_LOG_INTERVAL_S) + PARTIAL_LOG_INTERVAL_S
                )
                if not repeated:
                    if self._partials[signal] > 1:
                        error += f" ({self._partials[signal]} partial successes since the last warning)"
                    self._partial_logged[signal], self._partials[signal] = now, 0
        if error:
            # A collector that is down fails every batch the same way: say so once, not per batch.
            log.log(logging.DEBUG if repeated else logging.WARNING, "OTLP export: %s", error)

    def stats(self) -> dict[Signal, SignalStats]:
        with self._lock:
            return {signal: replace(s) for signal, s in self._stats.items()}

    def shutdown(self) -> None:
        """Stop exporting and wake any backoff; safe to call twice."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        for transport in self._transports.values():
            if isinstance(transport, HttpTransport):
                transport.close()
        for channel in self._channels.values():
            channel.close()
