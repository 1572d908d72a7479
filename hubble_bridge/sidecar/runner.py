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
from collections import OrderedDict
from dataclasses import dataclass

from hubble_bridge.api import flow_pb2, observer_pb2
from hubble_bridge.errors import ConfigError
from hubble_bridge.k8s.metadata import ClusterMetadata
from hubble_bridge.server.store import EventStore
from hubble_bridge.sidecar.bccload import require_bpf, tracefs_dir
from hubble_bridge.sidecar.convert import FlowBuilder
from hubble_bridge.sidecar.endpoints import EndpointResolver
from hubble_bridge.sidecar.features import ProbeState, ProbeStatus
from hubble_bridge.sidecar.l7pair import DnsPairs, HttpStreams
from hubble_bridge.sidecar.packets import PacketCapture, Segment
from hubble_bridge.sidecar.records import (
    EV_ACCEPT,
    EV_CONNECT,
    IPPROTO_TCP,
    L7Message,
    MonotonicClock,
    TcpEvent,
)
from hubble_bridge.sidecar.selfstats import BpfStatsSwitch, SelfStats
from hubble_bridge.sidecar.tcp import TcpCapture
from hubble_bridge.sidecar.tls import TlsCapture, TlsData
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
    l7: bool = True  # DNS and HTTP/1.x from packets on the same interfaces
    dns_ports: tuple[int, ...] = (53,)
    l7_payload_bytes: int = 1024  # read of each kept packet's payload
    l7_pending: int = 16384  # open DNS queries, and HTTP connections, remembered
    l7_timeout_s: float = 10.0  # a request unanswered this long is dropped and counted

    def validate(self) -> None:
        errors = []
        if not self.dns_ports or any(not 0 < p < 65536 for p in self.dns_ports):
            errors.append(f"DNS ports must be 1-65535, got {list(self.dns_ports)}")
        if not 64 <= self.l7_payload_bytes <= 65535:
            errors.append(f"L7 payload bytes must be 64-65535, got {self.l7_payload_bytes}")
        if self.l7_pending < 1:
            errors.append(f"L7 pending requests must be at least 1, got {self.l7_pending}")
        if not self.l7_timeout_s > 0:
            errors.append(f"L7 timeout must be a positive number of seconds, got {self.l7_timeout_s:g}")
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
        self._packets: PacketCapture | None = None
        self._tls: TlsCapture | None = None
        timeout_ns = int(options.l7_timeout_s * 1e9)
        self._dns = DnsPairs(list(options.dns_ports), options.l7_pending, timeout_ns)
        self._http = HttpStreams(options.l7_pending, timeout_ns)
        self._owners: OrderedDict[tuple[tuple[str, int], tuple[str, int]], tuple[int, str]] = OrderedDict()
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
        if options.l7:
            self._packets = PacketCapture(
                bcc, options.interfaces, list(options.dns_ports), options.l7_payload_bytes
            )
            self._tls = TlsCapture(bcc, self._clock, options.l7_pending, options.ringbuf_pages)
        try:
            self.statuses = self._xdp.start() + self._tcp.start(self._on_tcp_event)
            if self._packets is not None:
                self.statuses += self._packets.start()
            if self._tls is not None:
                self.statuses += self._tls.start(self._on_tls)
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
        for capture in (self._xdp, self._tcp, self._packets, self._tls):
            if capture is not None:
                capture.close()
        self._stats_switch.close()
        self.store.close()

    def _on_tcp_event(self, event: TcpEvent) -> None:
        if event.kind in (EV_CONNECT, EV_ACCEPT):
            # Who owns each socket, for the L7 messages on it (kept past the close: the last
            # response may be read after the close event).
            key = ((event.local, event.local_port), (event.remote, event.remote_port))
            self._owners[key] = (event.pid, event.command)
            self._owners.move_to_end(key)
            if len(self._owners) > self.options.l7_pending:
                self._owners.popitem(last=False)
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
            self._read_l7()
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

    def _read_l7(self) -> None:
        if self._packets is None:
            return
        assert self._tcp is not None
        self._tcp.poll(0)  # connects and accepts first: they name the processes of what follows
        if self._tls is not None:
            self._tls.poll(0)
        for segment in self._packets.read():
            for message in self._l7_messages(segment):
                self._pending.append(self._builder.l7_flow(self._with_process(message)))

    def _on_tls(self, data: TlsData) -> None:
        local, remote = data.local, data.remote
        assert local is not None and remote is not None
        sender, receiver = (local, remote) if data.written else (remote, local)
        for message in self._http.messages(
            ("tls", data.pid, data.ssl), data.time_ns, sender, receiver, data.data
        ):
            message.tls = True
            message.pid, message.command = data.pid, data.command
            message.process_is_client = message.client == local
            self._pending.append(self._builder.l7_flow(message))

    def _l7_messages(self, segment: Segment) -> list[L7Message]:
        source = (segment.source, segment.source_port)
        destination = (segment.destination, segment.destination_port)
        if segment.source_port in self._dns.dns_ports or segment.destination_port in self._dns.dns_ports:
            messages = self._dns.messages(
                segment.time_ns, segment.protocol, source, destination, segment.payload, segment.ifindex
            )
        elif segment.protocol == IPPROTO_TCP:
            key = (segment.ifindex, *sorted((source, destination)))
            messages = self._http.messages(
                key, segment.time_ns, source, destination, segment.payload, segment.seq
            )
            for message in messages:
                message.ifindex = segment.ifindex
        else:
            messages = []
        return messages

    def _with_process(self, message: L7Message) -> L7Message:
        """The local process of the connection, when a TCP connect or accept named it (the client's first)."""
        for key, is_client in (
            ((message.client, message.server), True),
            ((message.server, message.client), False),
        ):
            owner = self._owners.get(key)
            if owner is not None:
                message.pid, message.command = owner
                message.process_is_client = is_client
                break
        return message

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
        self._read_l7()
        # L7 messages the kernel had no room for: packets a socket could not queue, TLS events.
        dropped = self._packets.newly_dropped() if self._packets is not None else 0
        dropped += self._tls.newly_lost() if self._tls is not None else 0
        if dropped:
            self._pending.append(self._builder.lost_events(dropped, flow_pb2.PERF_EVENT_RING_BUFFER, now))
        self._dns.expire(now)
        self._http.expire(now)
        self._pending += self._builder.xdp_flows(xdp.drain())
        retransmits = tcp.drain_retransmits()
        self._pending += self._builder.retransmit_flows(retransmits)
        self._publish()
        counters = {f"xdp.{k}": v for k, v in xdp.counters().items()}
        counters.update({f"tcp.{k}": v for k, v in tcp.counters().items()})
        if self._packets is not None:
            counters.update({f"l7.{k}": v for k, v in self._packets.counters().items()})
        if self._tls is not None:
            counters.update({f"tls.{k}": v for k, v in self._tls.counters().items()})
        counters.update(self._dns.counts)
        counters.update(self._http.counts)
        maps = {
            "xdp_flows": (xdp.last_drained, xdp.map_size),
            "tcp_conns": (tcp.connections(), tcp.conn_map_size),
            "tcp_retransmits": (len(retransmits), tcp.retransmit_map_size),
            "dns_queries_open": (len(self._dns), self.options.l7_pending),
            "http_connections_open": (len(self._http), self.options.l7_pending),
        }
        if self._tls is not None and self._tls.attached:
            maps["tls_calls"] = (self._tls.calls_open(), self._tls.call_map_size)
        programs = {**xdp.program_fds(), **tcp.program_fds()}
        for l7 in (self._packets, self._tls):
            if l7 is not None:
                programs.update(l7.program_fds())
        self.stats.update(programs, maps, counters)


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
