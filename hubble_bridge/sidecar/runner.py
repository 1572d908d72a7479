"""The sidecar's capture loop: attach the probes, turn what they report into flows, fill the store.

One thread owns the BPF objects. It waits on the TCP ring buffer (so socket
events reach the store within ~100 ms) and drains the kernel's counters every
interval, or at once when `flush()` asks, which is how tests and shutdown get
everything counted so far without waiting for the next interval.
"""

from __future__ import annotations

import contextlib
import os
import queue
import socket
import threading
import time
from dataclasses import dataclass

from hubble_bridge.api import flow_pb2, observer_pb2
from hubble_bridge.errors import ConfigError
from hubble_bridge.k8s.metadata import ClusterMetadata
from hubble_bridge.server.store import EventStore
from hubble_bridge.sidecar.bccload import require_bpf, tracefs_dir
from hubble_bridge.sidecar.convert import FlowBuilder
from hubble_bridge.sidecar.endpoints import EndpointResolver
from hubble_bridge.sidecar.features import ProbeState, ProbeStatus
from hubble_bridge.sidecar.records import MonotonicClock, TcpEvent
from hubble_bridge.sidecar.selfstats import BpfStatsSwitch, SelfStats
from hubble_bridge.sidecar.tcp import TcpCapture
from hubble_bridge.sidecar.xdp import XdpCapture

_POLL_MS = 100


@dataclass
class SidecarOptions:
    interfaces: list[str]
    interval_s: float = 5.0
    map_size: int = 65536  # XDP flow entries; the connection and retransmit maps get the same
    ringbuf_pages: int = 64  # 256 KiB of socket events between two polls
    max_flows: int = 4095  # the Observer server's ring
    node_name: str | None = None

    def validate(self) -> None:
        errors = []
        if not self.interval_s > 0:
            errors.append(f"--interval must be a positive number of seconds, got {self.interval_s:g}")
        if self.map_size < 16:
            errors.append(f"map size must be at least 16 entries, got {self.map_size}")
        if self.ringbuf_pages < 1 or self.ringbuf_pages & (self.ringbuf_pages - 1):
            errors.append(f"ring buffer pages must be a power of two, got {self.ringbuf_pages}")
        if self.max_flows < 1:
            errors.append(f"--max-flows must be at least 1, got {self.max_flows}")
        if errors:
            raise ConfigError("sidecar: " + "; ".join(errors))

    def resolved_node_name(self) -> str:
        return self.node_name or os.environ.get("NODE_NAME") or socket.gethostname()


class SidecarStore(EventStore):
    """The Observer store, listing the sidecar's node from the start, not only once it has flows."""

    def __init__(self, max_flows: int, node_name: str) -> None:
        super().__init__(max_flows)
        self.node_name = node_name

    def nodes(self) -> list[tuple[str, int, int]]:
        listed = super().nodes()
        if not any(name == self.node_name for name, _, _ in listed):
            listed = sorted([*listed, (self.node_name, 0, 0)])
        return listed


class Sidecar:
    def __init__(self, options: SidecarOptions, *, metadata: ClusterMetadata | None = None) -> None:
        options.validate()
        self.options = options
        self.node_name = options.resolved_node_name()
        self.store = SidecarStore(options.max_flows, self.node_name)
        self.stats = SelfStats(self.node_name)
        self.statuses: list[ProbeStatus] = []
        self._metadata = metadata
        self._clock = MonotonicClock()
        self._builder = FlowBuilder(self.node_name, EndpointResolver(metadata), _interface_name)
        self._stats_switch = BpfStatsSwitch()
        self._xdp: XdpCapture | None = None
        self._tcp: TcpCapture | None = None
        self._pending: list[observer_pb2.GetFlowsResponse] = []
        self._flushes: queue.SimpleQueue[threading.Event] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> list[ProbeStatus]:
        """Attaches every probe it can; SidecarUnavailable when BPF cannot be used at all."""
        bcc = require_bpf()
        options = self.options
        self._stats_switch.enable()
        self._xdp = XdpCapture(bcc, options.interfaces, options.map_size, self._clock)
        self._tcp = TcpCapture(
            bcc,
            tracefs_dir(),
            conn_map_size=options.map_size,
            retransmit_map_size=options.map_size,
            ringbuf_pages=options.ringbuf_pages,
            clock=self._clock,
        )
        try:
            self.statuses = self._xdp.start() + self._tcp.start(self._on_tcp_event)
        except BaseException:
            self.stop()
            raise
        if self._metadata is not None:
            self._metadata.start()
        self._thread = threading.Thread(target=self._run, name="sidecar-capture", daemon=True)
        self._thread.start()
        return self.statuses

    @property
    def capturing(self) -> bool:
        """The capture loop is running (it stops only with stop() or when it fails)."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def attached(self) -> list[ProbeStatus]:
        return [s for s in self.statuses if s.state is not ProbeState.UNAVAILABLE]

    def flush(self, timeout: float = 10.0) -> bool:
        """Drain everything counted before this call into the store; False if the loop did not answer."""
        if not self.capturing:
            return False
        done = threading.Event()
        self._flushes.put(done)
        return done.wait(timeout)

    def stop(self) -> None:
        """Stops the loop, detaches every probe, restores BPF statistics; safe before start and twice."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._metadata is not None:
            self._metadata.stop()
        for capture in (self._xdp, self._tcp):
            if capture is not None:
                capture.close()
        self._stats_switch.close()
        self.store.close()

    def _on_tcp_event(self, event: TcpEvent) -> None:
        response = self._builder.tcp_event_flow(event)
        if response is not None:
            self._pending.append(response)

    def _run(self) -> None:
        assert self._tcp is not None
        interval = self.options.interval_s
        next_drain = time.monotonic() + interval
        while not self._stop.is_set():
            wait_ms = max(0, min(_POLL_MS, int((next_drain - time.monotonic()) * 1000)))
            self._tcp.poll(wait_ms)
            self._publish()
            flushes = _take_all(self._flushes)
            if flushes or time.monotonic() >= next_drain:
                self._drain()
                for done in flushes:
                    done.set()
                next_drain = max(next_drain + interval, time.monotonic())
        with contextlib.suppress(Exception):
            self._drain()  # what was counted up to shutdown still reaches followers
        for done in _take_all(self._flushes):
            done.set()

    def _publish(self) -> None:
        if self._pending:
            batch, self._pending = self._pending, []
            self.stats.counters["flows_served"] = self.stats.counters.get("flows_served", 0) + len(batch)
            self.store.extend(batch)

    def _drain(self) -> None:
        xdp, tcp = self._xdp, self._tcp
        assert xdp is not None and tcp is not None
        self._clock.update()
        tcp.poll(0)
        now = time.time_ns()
        lost = tcp.newly_lost()
        if lost:
            self._pending.append(self._builder.lost_events(lost, flow_pb2.PERF_EVENT_RING_BUFFER, now))
        self._pending += self._builder.xdp_flows(xdp.drain())
        retransmits = tcp.drain_retransmits()
        self._pending += self._builder.retransmit_flows(retransmits)
        self._publish()
        counters = {f"xdp.{k}": v for k, v in xdp.counters().items()}
        counters.update({f"tcp.{k}": v for k, v in tcp.counters().items()})
        maps = {
            "xdp_flows": (xdp.last_drained, xdp.map_size),
            "tcp_conns": (tcp.connections(), tcp.conn_map_size),
            "tcp_retransmits": (len(retransmits), tcp.retransmit_map_size),
        }
        self.stats.update({**xdp.program_fds(), **tcp.program_fds()}, maps, counters)


def _take_all(pending: queue.SimpleQueue[threading.Event]) -> list[threading.Event]:
    taken = []
    with contextlib.suppress(queue.Empty):
        while True:
            taken.append(pending.get_nowait())
    return taken


def _interface_name(index: int) -> str:
    try:
        return socket.if_indextoname(index)
    except OSError:
        return ""
