"""The scale-out parent: worker processes, stream assignment and hand-over, merged metrics.

Streams come from the configured relays or from `peer.Peer/Notify`; each is
assigned to one worker (`plan_assignment`). A stream moves between workers only
through the parent: the old owner stops it and reports its position (the time of
the last event handed to its pipeline), then the new owner starts after it. A
worker that dies is restarted with backoff; its streams resume after the
positions of its last report, and `SnapshotMerger` keeps its earlier totals.
"""

from __future__ import annotations

import logging
import multiprocessing
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hubble_bridge import __version__
from hubble_bridge.backoff import backoff_s
from hubble_bridge.config import BridgeConfig
from hubble_bridge.errors import ConfigError
from hubble_bridge.mapping.merge import SnapshotMerger
from hubble_bridge.scaleout.config import ScaleOutConfig
from hubble_bridge.scaleout.plan import plan_assignment
from hubble_bridge.scaleout.worker import start_worker
from hubble_bridge.sources.peers import PeerWatcher, StreamSpec
from hubble_bridge.telemetry import MetricsSnapshot, make_resource

log = logging.getLogger("hubble_bridge.scaleout")
# The first restart of a dead worker waits this long, doubling per consecutive death (backoff_s).
RESTART_BACKOFF_INITIAL_S = 0.5


@dataclass(eq=False)
class _Worker:
    index: int
    process: Any = None  # multiprocessing Process of the current life
    commands: Any = None  # Connection to send to
    pid: int = 0
    ready: bool = False
    running: bool = False
    sent: dict[str, StreamSpec] = field(default_factory=dict)  # streams it was told to read
    restart_at: float | None = None
    failures: int = 0  # consecutive deaths, for the backoff


class ScaleOut:
    """The parent: workers, stream assignment, merged metrics. `start()` returns at once; `wait()` blocks."""

    def __init__(self, config: BridgeConfig, streams: ScaleOutConfig, workers: int) -> None:
        if workers < 1:
            raise ConfigError(f"invalid configuration: workers must be at least 1, got {workers}")
        if config.source.first:
            raise ConfigError("invalid configuration: source.first cannot be used with several streams")
        self.config = config
        self.settings = streams
        start = time.time_ns()
        resource = make_resource(
            {
                **config.resource_attributes,
                "service.name": config.service_name,
                "service.version": __version__,
                "k8s.cluster.name": config.cluster_name,
            }
        )
        self._merger = SnapshotMerger(resource, start)
        self._workers = [_Worker(i) for i in range(workers)]
        self._events: queue.Queue[tuple[Any, ...]] = queue.Queue()
        self._lock = threading.Lock()  # merger, positions and owners, read by scrapes and tests
        self._wanted: dict[str, StreamSpec] = {k: StreamSpec(k, k) for k in streams.relays}
        self._positions: dict[str, int] = {}
        self._owner: dict[str, int] = {}
        self._plan: dict[str, int] = {}
        self._restarts = 0
        self._stopping = False
        self._stop_deadline = 0.0
        self._done = threading.Event()
        self._changed = threading.Condition()  # notified after every batch of events handled
        self.error: str | None = None
        self._ctx = multiprocessing.get_context("spawn")
        self._watcher = (
            PeerWatcher(streams.peers, self.set_streams, streams.peers_tls) if streams.peers else None
        )
        self._loop_thread = threading.Thread(target=self._loop, name="scaleout", daemon=True)

    # ---- public surface --------------------------------------------------------------------

    def start(self) -> None:
        for worker in self._workers:
            self._spawn(worker)
        if self._watcher is not None:
            self._watcher.start()
        self._loop_thread.start()

    def stop(self) -> None:
        """Workers flush what they read, send their final snapshots and exit. Safe from signal handlers."""
        self._events.put(("stop",))

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    def set_streams(self, streams: Mapping[str, StreamSpec]) -> None:
        """Read exactly these streams from now on (the peer watcher calls this on every change)."""
        self._events.put(("streams", dict(streams)))

    def wait_until(self, check: Callable[[], bool], timeout: float) -> bool:
        """Wait until `check()` holds, testing it again whenever the parent has handled something."""
        with self._changed:
            return self._changed.wait_for(check, timeout)

    @property
    def ready(self) -> bool:
        peers_ok = self._watcher is None or self._watcher.connected.is_set()
        return peers_ok and all(w.ready and w.running for w in self._workers)

    def merged(self) -> MetricsSnapshot:
        """Every worker's metrics merged, cumulative since the parent started."""
        with self._lock:
            return self._merger.merged(time.time_ns())

    @property
    def start_time_ns(self) -> int:
        return self._merger.start_time_ns

    @property
    def restarts(self) -> int:
        """Workers restarted after they died."""
        return self._restarts

    @property
    def workers(self) -> int:
        return len(self._workers)

    def assignment(self) -> dict[str, int]:
        """Stream key -> the worker reading it now."""
        with self._lock:
            return dict(self._owner)

    def worker_pids(self) -> list[int]:
        return [w.pid for w in self._workers]

    # ---- the loop ----------------------------------------------------------------------------

    def _loop(self) -> None:
        try:
            while not self._finished():
                try:
                    self._handle(self._events.get(timeout=self._next_timeout()))
                    while True:  # a burst (the initial peer list, several snapshots) is handled at once
                        self._handle(self._events.get_nowait())
                except queue.Empty:
                    pass
                self._restart_due()
                if not self._stopping:
                    self._reconcile()
                elif time.monotonic() > self._stop_deadline:
                    self._kill_stragglers()
                with self._changed:
                    self._changed.notify_all()
        finally:
            if self._watcher is not None:
                self._watcher.stop()
            self._done.set()
            with self._changed:
                self._changed.notify_all()

    def _finished(self) -> bool:
        return self._stopping and not any(w.running for w in self._workers)

    def _next_timeout(self) -> float:
        due = [w.restart_at for w in self._workers if w.restart_at is not None]
        if self._stopping:
            return 0.5
        return max(0.0, min(due) - time.monotonic()) if due else 5.0

    def _handle(self, event: tuple[Any, ...]) -> None:
        kind = event[0]
        if kind == "msg":
            self._on_message(self._workers[event[1]], event[2])
        elif kind == "eof":
            self._on_exit(self._workers[event[1]])
        elif kind == "streams":
            self._wanted = event[1]
        elif kind == "stop" and not self._stopping:
            self._stopping = True
            self._stop_deadline = time.monotonic() + self.settings.stop_timeout_s
            for worker in self._workers:
                worker.restart_at = None
                self._send(worker, ("stop",))

    def _kill_stragglers(self) -> None:
        for worker in self._workers:
            if worker.running and worker.process is not None and worker.process.exitcode is None:
                log.warning("worker %d did not stop in time; killing it", worker.index)
                worker.process.kill()

    def _on_message(self, worker: _Worker, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "ready":
            worker.ready, worker.pid, worker.failures = True, message[1], 0
        elif kind in ("state", "final"):
            with self._lock:
                self._merger.update(str(worker.index), message[1])
                for key, position in message[2].items():
                    if self._owner.get(key) == worker.index:
                        self._positions[key] = max(position, self._positions.get(key, position))
        elif kind == "released":
            with self._lock:
                for key, position in message[1].items():
                    if position is not None:
                        self._positions[key] = max(position, self._positions.get(key, position))
                    if self._owner.get(key) == worker.index:
                        del self._owner[key]
        elif kind == "error":
            log.error("worker %d: %s", worker.index, message[1])
            if not worker.ready:  # it could not even start: restarting would fail the same way
                self.error = message[1]
                self._events.put(("stop",))

    def _on_exit(self, worker: _Worker) -> None:
        worker.process.join(timeout=5)
        code = worker.process.exitcode
        worker.running = worker.ready = False
        worker.commands.close()
        worker.sent = {}
        with self._lock:
            # Streams of a dead worker resume, on its next life, after the last reported position.
            for key in [k for k, owner in self._owner.items() if owner == worker.index]:
                del self._owner[key]
            self._merger.forget_gauges(str(worker.index))
        if self._stopping:
            return
        worker.failures += 1
        delay = backoff_s(worker.failures, RESTART_BACKOFF_INITIAL_S, self.settings.restart_backoff_max_s)
        log.warning("worker %d exited (code %s); restarting in %.1fs", worker.index, code, delay)
        worker.restart_at = time.monotonic() + delay

    def _restart_due(self) -> None:
        now = time.monotonic()
        for worker in self._workers:
            if worker.restart_at is not None and worker.restart_at <= now and not self._stopping:
                worker.restart_at = None
                with self._lock:
                    self._restarts += 1
                self._spawn(worker)

    def _reconcile(self) -> None:
        with self._lock:
            self._plan = plan_assignment(sorted(self._wanted), len(self._workers), self._plan)
            for worker in self._workers:
                if not worker.running:
                    continue
                wanted = {
                    k: self._wanted[k]
                    for k, owner in self._plan.items()
                    if owner == worker.index and self._owner.get(k) in (None, worker.index)
                }
                if wanted == worker.sent:
                    continue
                assignment = {k: (spec, self._positions.get(k)) for k, spec in wanted.items()}
                if self._send(worker, ("assign", assignment)):
                    worker.sent = wanted
                    for key in wanted:
                        self._owner[key] = worker.index

    # ---- processes ---------------------------------------------------------------------------

    def _spawn(self, worker: _Worker) -> None:
        level = logging.getLogger("hubble_bridge").getEffectiveLevel()
        process, commands = start_worker(
            self._ctx, worker.index, self.config, self.settings.snapshot_interval_s, level, self._events.put
        )
        worker.process, worker.commands, worker.running, worker.sent = process, commands, True, {}

    def _send(self, worker: _Worker, message: tuple[Any, ...]) -> bool:
        if not worker.running or worker.commands is None:
            return False
        try:
            worker.commands.send(message)
            return True
        except (OSError, ValueError):
            return False  # it died; its EOF is on the way
