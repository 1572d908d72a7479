"""Wiring: source -> mapping -> sinks, with bounded hand-offs and a clean shutdown.

Three threads, batches between them:
- reader: iterates the source, appends events to a bounded buffer;
- mapper: swaps the buffer out, runs the mapping (metrics, spans, logs) batch by
  batch, and hands export jobs (span/log batches, metric snapshots) on;
- exporters, one per signal: send each job to every sink, so one signal's retries never hold the
  others back.
Shutdown has one deadline (export.shutdown_timeout_s) from the moment stop() is called: past it, retries
stop, sinks are shut down (which ends calls in flight) and whatever is left is counted as dropped.
The per-event path is a list append and the mapping calls; no SDK calls, no I/O.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from google.protobuf.message import DecodeError

from hubble_bridge import __version__
from hubble_bridge.api import flow_pb2, observer_pb2, relay_pb2
from hubble_bridge.backoff import backoff_s
from hubble_bridge.config import BridgeConfig
from hubble_bridge.flows.codec import enum_name
from hubble_bridge.gc_tuning import young_threshold_raised
from hubble_bridge.mapping.logs import flow_log_of, lost_events_log, node_status_log
from hubble_bridge.mapping.metrics import MetricsAggregator
from hubble_bridge.mapping.spans import SpanMapper
from hubble_bridge.selfmetrics import SelfMetrics
from hubble_bridge.sources.base import FlowSource
from hubble_bridge.telemetry import LogRecord, MetricsSnapshot, SpanRecord, make_resource

log = logging.getLogger(__name__)

GetFlowsResponse = observer_pb2.GetFlowsResponse
BATCH = 512  # events the reader hands over at once
WAKE_S = 0.05  # longest an event waits in the buffer before mapping
EXPIRE_EVERY_S = 1.0


# What a source yields: decoded events, or (from the reader process) their bytes, decoded in the mapper.
Event = GetFlowsResponse | bytes
_decode = GetFlowsResponse.FromString


def _batched(source: FlowSource) -> Iterator[list[Event]]:
    """One event at a time: hand each over as soon as it arrives (a quiet stream must not wait)."""
    for response in source:
        yield [response]


class Sink(Protocol):
    def export_traces(self, spans: Sequence[SpanRecord]) -> bool: ...
    def export_logs(self, logs: Sequence[LogRecord]) -> bool: ...
    def export_metrics(self, snapshots: Sequence[MetricsSnapshot]) -> bool: ...
    def shutdown(self) -> None: ...


def sink_name(sink: Sink) -> str:
    """A sink's short name in counters and the summary ("otlp", "file"), else its class name."""
    return str(getattr(sink, "sink_name", "") or type(sink).__name__)


SIGNALS = ("traces", "logs", "metrics")


@dataclass
class _Job:
    signal: str  # traces | logs | metrics
    items: Sequence[SpanRecord] | Sequence[LogRecord] | Sequence[MetricsSnapshot]
    count: int


class Bridge:
    """One source, the mapping, and a set of sinks; `run()` blocks until the source ends or `stop()`."""

    def __init__(
        self,
        config: BridgeConfig,
        source: FlowSource,
        sinks: Sequence[Sink],
        stats: SelfMetrics | None = None,
    ) -> None:
        self.config = config
        self.source = source
        self.sinks = list(sinks)
        now = time.time_ns()
        self.stats = stats or SelfMetrics(start_time_ns=now)
        self.metrics = MetricsAggregator(config.metrics, start_time_ns=now)
        self.spans = SpanMapper(config.spans)
        own = {
            **config.resource_attributes,
            "service.name": config.service_name,
            "service.version": __version__,
        }
        if config.cluster_name:
            own["k8s.cluster.name"] = config.cluster_name
        self.resource = make_resource(own)
        self._buffer: list[Event] = []
        self._buffer_limit = config.export.queue_batches * BATCH
        self._cond = threading.Condition()
        self._mapping_lock = threading.Lock()  # guards the mapping state against /metrics scrapes
        self._source_done = threading.Event()
        self._stopping = threading.Event()
        # A sink that carries only some signals (OTEL_<SIGNAL>_EXPORTER) is not sent, nor counted, the others.
        self._sinks_of = {
            signal: [s for s in self.sinks if signal in getattr(s, "signals", SIGNALS)] for signal in SIGNALS
        }
        self._jobs: dict[str, queue.Queue[_Job | None]] = {
            signal: queue.Queue(maxsize=config.export.export_queue) for signal in SIGNALS
        }
        self._abort = threading.Event()  # shutdown deadline passed: stop retrying
        self._deadline: float | None = None  # monotonic time the shutdown must be done by
        self._deadline_lock = threading.Lock()
        self._deadline_timer: threading.Timer | None = None
        self._last_export_ok = True
        self._undecodable = 0  # event bytes protobuf refused in the mapper
        # readiness: the source says when its stream is open; otherwise the first event tells
        self.connected: threading.Event = getattr(source, "connected", None) or threading.Event()
        self.error: str | None = None

    # ---- lifecycle -------------------------------------------------------------------------

    def run(self) -> int:
        with young_threshold_raised():  # the mapping's allocations die young (gc_tuning.py)
            return self._run()

    def _run(self) -> int:
        reader = threading.Thread(target=self._read, name="hubble-otlp-reader", daemon=True)
        exporters = [
            threading.Thread(
                target=self._export_loop, args=(signal,), name=f"hubble-otlp-export-{signal}", daemon=True
            )
            for signal in SIGNALS
        ]
        reader.start()
        for exporter in exporters:
            exporter.start()
        try:
            self._map_loop()
        finally:
            self._stopping.set()
            self._start_deadline()  # a source that ended by itself: the flush gets the same deadline
            for signal in SIGNALS:
                self._submit(None, signal)
            for exporter in exporters:
                exporter.join(max(0.0, self._time_left()))
            if any(exporter.is_alive() for exporter in exporters):
                self._expire()
            for sink in self.sinks:
                sink.shutdown()
            for exporter in exporters:
                exporter.join(1.0)  # after _expire every retry and call in flight ends at once
            self._count_abandoned()
            if self._deadline_timer is not None:
                self._deadline_timer.cancel()  # done in time: no deadline warning later
        return 1 if self.error else 0

    def summary(self) -> str:
        """One line of totals, for the log at exit; per sink when there are several."""
        st = self.stats
        parts = [f"{st.total('flows.received')} events received"]
        names = [sink_name(sink) for sink in self.sinks] or [""]
        for signal in SIGNALS:
            per_sink = []
            for name in names:
                ok = st.sum_where("export.items", signal=signal, result="ok", sink=name)
                dropped = st.sum_where("export.items", signal=signal, result="dropped", sink=name)
                where = f" ({name})" if len(names) > 1 else ""
                per_sink.append(f"{ok:.0f} exported, {dropped:.0f} dropped{where}")
            parts.append(f"{signal}: {', '.join(per_sink)}")
        dropped_events = st.total("flows.dropped")
        if dropped_events:
            parts.append(f"{dropped_events} events dropped at the queue")
        return "; ".join(parts)

    def _count_abandoned(self) -> None:
        for jobs in self._jobs.values():
            while self._drop_one(jobs):
                pass

    def _count_dropped(self, job: _Job, sinks: Sequence[Sink] | None = None) -> None:
        """A job no sink (or only some) will get: dropped, counted for each sink that missed it."""
        for sink in self._sinks_of[job.signal] if sinks is None else sinks:
            name = sink_name(sink)
            self.stats.add("export.items", job.count, signal=job.signal, result="dropped", sink=name)

    def stop(self) -> None:
        """Stop reading; what was read is still mapped and exported. Safe from signal handlers."""
        self._stopping.set()
        self._start_deadline()
        threading.Thread(target=self.source.close, daemon=True).start()
        with self._cond:
            self._cond.notify_all()

    def _start_deadline(self) -> None:
        """Start the shutdown clock once; when it runs out, _expire ends whatever still waits."""
        with self._deadline_lock:
            if self._deadline is not None:
                return
            timeout = self.config.export.shutdown_timeout_s
            self._deadline = time.monotonic() + timeout
            self._deadline_timer = threading.Timer(timeout, self._expire)
            self._deadline_timer.daemon = True
            self._deadline_timer.start()

    def _time_left(self) -> float:
        deadline = self._deadline
        return float("inf") if deadline is None else deadline - time.monotonic()

    def _expire(self) -> None:
        """The shutdown deadline passed: stop retrying and end calls in flight; the rest is dropped."""
        with self._deadline_lock:  # the timer and run() may both get here
            if self._abort.is_set():
                return
            self._abort.set()
        log.warning(
            "flush deadline of %gs passed: dropping what is left", self.config.export.shutdown_timeout_s
        )
        with self._cond:
            self._cond.notify_all()
        for sink in self.sinks:
            sink.shutdown()  # interrupts a sink's retry backoff and its call in flight

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    @property
    def ready(self) -> bool:
        return self.connected.is_set() and self._last_export_ok and not self._source_done.is_set()

    # ---- reader ------------------------------------------------------------------------------

    def _read(self) -> None:
        # A source that reads in batches (the reader process) hands them over whole: one lock per batch.
        batches = getattr(self.source, "batches", None)
        stream = batches() if callable(batches) else _batched(self.source)
        try:
            for batch in stream:
                self.connected.set()
                if not self._enqueue(batch):
                    return
                if self._stopping.is_set():
                    break
        except Exception as exc:  # the source's own errors are BridgeErrors with one clear line
            if not self._stopping.is_set():
                self.error = str(exc)
                log.error("flow source %s failed: %s", self.source.name, exc)
        finally:
            self._source_done.set()
            with self._cond:
                self._cond.notify_all()

    def _enqueue(self, batch: list[Event]) -> bool:
        """Add events to the buffer; False when stopping while waiting for room."""
        drop_oldest = self.config.export.overflow == "drop_oldest"
        with self._cond:
            while len(self._buffer) >= self._buffer_limit and not drop_oldest:
                if self._stopping.is_set():
                    return False
                self._cond.wait(WAKE_S)
            overflow = len(self._buffer) + len(batch) - self._buffer_limit
            if overflow > 0 and drop_oldest:
                dropped = min(max(overflow, BATCH), len(self._buffer))  # a batch at once: del is a memmove
                del self._buffer[:dropped]
                if dropped:
                    self.stats.add("flows.dropped", dropped, reason="queue_full")
            self._buffer.extend(batch)
            if len(self._buffer) >= BATCH:
                self._cond.notify_all()
        return True

    # ---- mapper ------------------------------------------------------------------------------

    def _map_loop(self) -> None:
        export = self.config.export
        spans: list[SpanRecord] = []
        logs: list[LogRecord] = []
        next_flush = time.monotonic() + export.flush_interval_s
        next_metrics = time.monotonic() + export.metric_interval_s
        next_expire = time.monotonic() + EXPIRE_EVERY_S
        flows_seen = False  # span expiry runs on stream time: nothing to do before the first flow
        while True:
            with self._cond:
                if len(self._buffer) < BATCH and not self._source_done.is_set():
                    self._cond.wait(WAKE_S)
                self.stats.set("queue.depth", len(self._buffer))
                batch, self._buffer = self._buffer, []
                self._cond.notify_all()
                # Past the shutdown deadline the reader may still hang in a source that will not
                # close: what is buffered is mapped (and counted as dropped), the rest is not waited for.
                finished = (self._source_done.is_set() or self._abort.is_set()) and not self._buffer
            if batch:
                with self._mapping_lock:
                    flows_seen = self._map_batch(batch, spans, logs) > 0 or flows_seen
            now = time.monotonic()
            if now >= next_expire and flows_seen:
                with self._mapping_lock:
                    # the mapper's watermark ignores a lone far-future flow time
                    spans.extend(self.spans.expire(self.spans.watermark_ns))
                next_expire = now + EXPIRE_EVERY_S
            if finished:
                with self._mapping_lock:
                    spans.extend(self.spans.drain())
            if (
                len(spans) >= export.max_batch
                or len(logs) >= export.max_batch
                or now >= next_flush
                or finished
            ):
                self._flush(spans, logs)
                spans, logs = [], []
                next_flush = now + export.flush_interval_s
            if now >= next_metrics or finished:
                if export.metrics:
                    self._submit(_Job("metrics", [self.snapshot()], 1), "metrics")
                next_metrics = now + export.metric_interval_s
            if finished:
                return

    def _map_batch(self, batch: list[Event], spans: list[SpanRecord], logs: list[LogRecord]) -> int:
        """Map one batch; returns how many flows it held."""
        cfg = self.config
        metrics_flow = self.metrics.process_flow if cfg.export.metrics else None
        spans_flow = self.spans.process_flow if cfg.export.traces else None
        log_config = cfg.logs if cfg.export.logs else None
        mapped = 0
        undecodable = 0
        for event in batch:
            # Bytes are decoded here, one at a time, right before mapping: the message is still in cache.
            # Inline rather than through relay.lenient_decode: a call per event into that uncompiled
            # module cost 2-3 % of the compiled pipeline.
            if type(event) is bytes:
                try:
                    response = _decode(event)
                except DecodeError:  # e.g. invalid UTF-8 in a string: skipped and counted, not the end
                    undecodable += 1
                    continue
            else:
                response = event
            kind = response.WhichOneof("response_types")
            if kind == "flow":
                flow = response.flow
                if metrics_flow is not None:
                    metrics_flow(flow)
                if spans_flow is not None:
                    made = spans_flow(flow, response)
                    if made:
                        spans.extend(made)
                if log_config is not None:
                    record = flow_log_of(flow, response, log_config)
                    if record is not None:
                        logs.append(record)
                mapped += 1
            elif kind == "lost_events":
                self._map_lost_events(response, logs)
            elif kind == "node_status":
                state = enum_name(relay_pb2.NodeState, response.node_status.state_change)
                self.stats.add("node_status.changes", state=state)
                if log_config is not None:
                    logs.append(node_status_log(response, log_config))
        self.stats.add("flows.received", len(batch))
        self.stats.add("flows.mapped", mapped)
        self._undecodable += undecodable
        return mapped

    def _map_lost_events(self, response: GetFlowsResponse, logs: list[LogRecord]) -> None:
        cfg = self.config
        lost = response.lost_events
        source = enum_name(flow_pb2.LostEventSource, lost.source).lower()  # as hubble_lost_events_total
        self.stats.add("lost_events", lost.num_events_lost, source=source)
        if cfg.export.metrics:
            self.metrics.process(response)
        if cfg.export.logs:
            logs.append(lost_events_log(response, cfg.logs))

    def snapshot(self) -> MetricsSnapshot:
        """Flow metrics and self-metrics as of now (cumulative)."""
        with self._mapping_lock:
            families = self.metrics.snapshot()
            self._copy_counters()
        return MetricsSnapshot(self.resource, time.time_ns(), families + self.stats.families())

    def _copy_counters(self) -> None:
        """Counters that live in the components, as self-metrics."""
        st = self.stats
        st.set_total("spans.unanswered", self.spans.unanswered)
        st.set_total("spans.evicted", self.spans.evicted)
        st.set_total("metrics.overflow", self.metrics.overflowed)
        limits = self.spans.limit_counts
        for what in ("values", "lists", "attributes"):
            st.set_total("attributes.truncated", getattr(limits, what), what=what)
        for attr, name in (("filtered", "flows.filtered"), ("duplicates", "flows.duplicates")):
            value = getattr(self.source, attr, None)
            if isinstance(value, int):
                st.set_total(name, value)
        # Messages the source refused, plus event bytes the mapper could not decode (only sources
        # that yield bytes have any). A file source counts its invalid lines itself.
        refused = getattr(self.source, "invalid_messages", None)
        if isinstance(refused, int) or self._undecodable:
            st.set_total("input.invalid", (refused if isinstance(refused, int) else 0) + self._undecodable)
        for sink in self.sinks:
            sink_stats = getattr(sink, "stats", None)
            if callable(sink_stats):
                for signal, s in sink_stats().items():
                    st.set_total("export.retries", s.retries, signal=signal)
                    st.set_total("export.rejected", s.items_rejected, signal=signal)

    def _flush(self, spans: list[SpanRecord], logs: list[LogRecord]) -> None:
        size = self.config.export.max_batch
        for start in range(0, len(spans), size):
            chunk = spans[start : start + size]
            self._submit(_Job("traces", chunk, len(chunk)), "traces")
        for start in range(0, len(logs), size):
            chunk = logs[start : start + size]
            self._submit(_Job("logs", chunk, len(chunk)), "logs")

    def _submit(self, job: _Job | None, signal: str) -> None:
        """Queue a job (None: the end) for its signal's exporter.

        "block" waits for room, which slows the reader and the source down, but never past the shutdown
        deadline: then the job is counted as dropped. "drop_oldest" makes room by dropping the oldest.
        """
        jobs = self._jobs[signal]
        drop_oldest = self.config.export.overflow == "drop_oldest"
        while True:
            try:
                if drop_oldest:
                    jobs.put_nowait(job)
                else:
                    jobs.put(job, timeout=0.1)  # blocks: backpressure reaches the reader and the source
                return
            except queue.Full:
                pass
            aborted = self._abort.is_set()
            if aborted and job is not None:
                self._count_dropped(job)
                return
            if drop_oldest or aborted:  # aborted: room for the end marker, so the exporter stops
                self._drop_one(jobs)

    def _drop_one(self, jobs: queue.Queue[_Job | None]) -> bool:
        """Take the oldest job off `jobs`, counted as dropped; False when there was none."""
        try:
            old = jobs.get_nowait()
        except queue.Empty:
            return False
        if old is not None:
            self._count_dropped(old)
        return True

    # ---- exporters ---------------------------------------------------------------------------

    def _export_loop(self, signal: str) -> None:
        jobs = self._jobs[signal]
        sinks = self._sinks_of[signal]
        while (job := jobs.get()) is not None:
            for i, sink in enumerate(sinks):
                if self._abort.is_set():
                    self._count_dropped(job, sinks[i:])
                    break
                self._export_with_retry(sink, job)

    def _export_with_retry(self, sink: Sink, job: _Job) -> None:
        """Send one job to one sink, retrying failed sends (the sink retries too) until retry_max_s."""
        method = {"traces": sink.export_traces, "logs": sink.export_logs, "metrics": sink.export_metrics}[
            job.signal
        ]
        give_up = time.monotonic() + self.config.export.retry_max_s
        attempt = 0
        while True:
            attempt += 1
            started = time.monotonic()
            try:
                ok = method(job.items)  # type: ignore[arg-type]
            except Exception as exc:  # a sink must not kill the pipeline
                log.error("%s export to %s failed: %s", job.signal, sink_name(sink), exc)
                ok = False
            self._last_export_ok = ok
            name = sink_name(sink)
            self.stats.add("export.batches", signal=job.signal, result="ok" if ok else "failed", sink=name)
            self.stats.set("export.latency", time.monotonic() - started, signal=job.signal)
            if ok:
                self.stats.add("export.items", job.count, signal=job.signal, result="ok", sink=name)
                return
            drop_oldest = self.config.export.overflow == "drop_oldest"
            newer_waiting = drop_oldest and self._jobs[job.signal].qsize() > 0
            delay = backoff_s(attempt, 0.5, 5.0)
            if newer_waiting or time.monotonic() + delay > give_up or self._abort.wait(delay):
                self._count_dropped(job, [sink])
                return
