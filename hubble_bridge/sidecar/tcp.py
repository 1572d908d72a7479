"""TCP lifecycle probes: which of them this kernel has, attaching them, reading what they report.

Tracepoints come first: sock:inet_sock_set_state (connects, accepts, closes),
tcp:tcp_retransmit_skb and the reset tracepoints. kprobes on tcp_v4_connect /
tcp_v6_connect add failed connect() calls where the kernel has kprobes; where it
does not, the connecting process still comes from the state change, which runs
in the caller's context.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from hubble_bridge.sidecar.bccload import per_cpu_counters, program_fds, program_source
from hubble_bridge.sidecar.features import (
    ProbeState,
    ProbeStatus,
    kernel_symbols,
    kprobes_missing,
    tracepoint_exists,
    tracepoint_field_offset,
)
from hubble_bridge.sidecar.records import (
    MonotonicClock,
    RetransmitSample,
    TcpEvent,
    address,
    command,
)
from hubble_bridge.sidecar.xdp import captured_stderr

STAT_NAMES = ("events_sent", "events_lost", "connections_tracked")
_TRACEPOINTS = {
    "set_state": ("sock", "inet_sock_set_state"),
    "retransmit": ("tcp", "tcp_retransmit_skb"),
    "receive_reset": ("tcp", "tcp_receive_reset"),
    "send_reset": ("tcp", "tcp_send_reset"),
}
_KPROBES = ("tcp_v4_connect", "tcp_v6_connect")


class TcpCapture:
    def __init__(
        self,
        bcc: ModuleType,
        tracefs: Path | None,
        *,
        conn_map_size: int,
        retransmit_map_size: int,
        ringbuf_pages: int,
        clock: MonotonicClock,
    ) -> None:
        self._bcc = bcc
        self._tracefs = tracefs
        self.conn_map_size = conn_map_size
        self.retransmit_map_size = retransmit_map_size
        self._ringbuf_pages = ringbuf_pages
        self._clock = clock
        self._bpf: Any = None
        self._on_event: Callable[[TcpEvent], None] | None = None
        self._lost_reported = 0

    def plan(self) -> tuple[list[str], list[ProbeStatus]]:
        """The compiler flags for what this kernel has, and the status of what it lacks."""
        tracefs = self._tracefs
        flags: list[str] = []
        missing: list[ProbeStatus] = []
        has = {key: tracepoint_exists(tracefs, *tp) for key, tp in _TRACEPOINTS.items()}
        if has["set_state"]:
            flags.append("-DHAVE_SET_STATE_TP")
        if has["retransmit"]:
            flags.append("-DHAVE_RETRANSMIT_TP")
        for key, macro in (("receive_reset", "RECEIVE"), ("send_reset", "SEND")):
            offset = tracepoint_field_offset(tracefs, *_TRACEPOINTS[key], "skaddr") if has[key] else None
            if offset is not None:
                flags.append(f"-D{macro}_RESET_SKADDR_OFFSET={offset}")
        kprobe_problem = kprobes_missing(tracefs)
        if kprobe_problem is None:
            absent = set(_KPROBES) - kernel_symbols(set(_KPROBES))
            kprobe_problem = f"no kernel symbol {', '.join(sorted(absent))}" if absent else None
        if kprobe_problem is None:
            flags.append("-DHAVE_KPROBES")
        else:
            fallback = (
                "connecting process from sock:inet_sock_set_state CLOSE -> SYN_SENT; "
                "connects failing before their SYN are not seen"
            )
            state = ProbeState.FALLBACK if has["set_state"] else ProbeState.UNAVAILABLE
            detail = f"{kprobe_problem}; {fallback}" if has["set_state"] else kprobe_problem
            missing += [ProbeStatus(f"kprobe {name}", state, detail) for name in _KPROBES]
        return flags, missing

    def start(self, on_event: Callable[[TcpEvent], None]) -> list[ProbeStatus]:
        """Compile, attach what the kernel has, and report every probe."""
        self._on_event = on_event
        flags, statuses = self.plan()
        names = {key: f"tracepoint {c}:{e}" for key, (c, e) in _TRACEPOINTS.items()}
        if "-DHAVE_SET_STATE_TP" not in flags and "-DHAVE_RETRANSMIT_TP" not in flags:
            why = "not in this kernel's tracefs (needs Linux 4.16+ and tracefs mounted)"
            return [ProbeStatus(n, ProbeState.UNAVAILABLE, why) for n in names.values()] + statuses
        sizes = [
            f"-DCONN_MAP_SIZE={self.conn_map_size}",
            f"-DRETRANS_MAP_SIZE={self.retransmit_map_size}",
            f"-DRINGBUF_PAGES={self._ringbuf_pages}",
        ]
        source = program_source("tcp_life.c")
        try:
            with captured_stderr() as noise:
                self._bpf = self._bcc.BPF(text=source.encode(), cflags=flags + sizes)
        except Exception as exc:
            why = f"the TCP programs did not load: {exc} {' '.join(noise[-3:])}".strip()
            return [ProbeStatus(n, ProbeState.UNAVAILABLE, why) for n in names.values()] + statuses
        core = []
        for key, macro in (("set_state", "-DHAVE_SET_STATE_TP"), ("retransmit", "-DHAVE_RETRANSMIT_TP")):
            attached = macro in flags
            state = ProbeState.ATTACHED if attached else ProbeState.UNAVAILABLE
            core.append(ProbeStatus(names[key], state, "tracepoint" if attached else "not in tracefs"))
        statuses = core + self._attach_resets(flags, names) + statuses + self._attach_kprobes(flags)
        self._bpf[b"tcp_events"].open_ring_buffer(self._deliver)
        return statuses

    def _attach_resets(self, flags: list[str], names: dict[str, str]) -> list[ProbeStatus]:
        statuses = []
        inferred = "resets inferred from ESTABLISHED -> CLOSE without FIN"
        for key, macro, function in (
            ("receive_reset", "-DRECEIVE_RESET", "on_tcp_receive_reset"),
            ("send_reset", "-DSEND_RESET", "on_tcp_send_reset"),
        ):
            if not any(flag.startswith(macro) for flag in flags):
                statuses.append(ProbeStatus(names[key], ProbeState.FALLBACK, f"not in tracefs; {inferred}"))
                continue
            try:
                with captured_stderr():
                    tracepoint = ":".join(_TRACEPOINTS[key]).encode()
                    self._bpf.attach_tracepoint(tp=tracepoint, fn_name=function.encode())
            except Exception as exc:
                statuses.append(ProbeStatus(names[key], ProbeState.FALLBACK, f"{exc}; {inferred}"))
                continue
            statuses.append(ProbeStatus(names[key], ProbeState.ATTACHED, "tracepoint, offsets from tracefs"))
        return statuses

    def _attach_kprobes(self, flags: list[str]) -> list[ProbeStatus]:
        if "-DHAVE_KPROBES" not in flags:
            return []
        statuses = []
        for name in _KPROBES:
            try:
                with captured_stderr():
                    self._bpf.attach_kprobe(event=name.encode(), fn_name=f"on_{name}".encode())
                    self._bpf.attach_kretprobe(event=name.encode(), fn_name=b"on_tcp_connect_return")
            except Exception as exc:
                why = f"{exc}; connecting process from sock:inet_sock_set_state instead"
                statuses.append(ProbeStatus(f"kprobe {name}", ProbeState.FALLBACK, why))
                continue
            statuses.append(ProbeStatus(f"kprobe {name}", ProbeState.ATTACHED, "kprobe + kretprobe"))
        return statuses

    def _deliver(self, ctx: Any, data: Any, size: int) -> None:
        raw = self._bpf[b"tcp_events"].event(data)
        version = raw.ip_version
        wall = self._clock.wall
        event = TcpEvent(
            kind=raw.kind,
            time_ns=wall(raw.time_ns),
            ip_version=version,
            local=address(raw.local, version),
            remote=address(raw.remote, version),
            local_port=raw.local_port,
            remote_port=raw.remote_port,
            pid=raw.pid,
            command=command(bytes(raw.comm)),
            role=raw.role,
            closed_by=raw.closed_by,
            reset=raw.reset,
            latency_ns=raw.latency_ns,
            duration_ns=raw.duration_ns,
            retransmits=raw.retransmits,
            error=raw.error,
        )
        if self._on_event is not None:
            self._on_event(event)

    def poll(self, timeout_ms: int) -> None:
        """Deliver the events in the ring buffer, waiting up to timeout_ms for the first."""
        if self._bpf is not None:
            self._bpf.ring_buffer_poll(timeout_ms)

    def drain_retransmits(self) -> list[RetransmitSample]:
        if self._bpf is None or b"tracepoint__tcp__tcp_retransmit_skb" not in self._bpf.funcs:
            return []
        wall = self._clock.wall
        samples = []
        for key, value in self._bpf[b"tcp_retransmits"].items_lookup_and_delete_batch():
            version = key.ip_version
            samples.append(
                RetransmitSample(
                    version,
                    address(key.local, version),
                    address(key.remote, version),
                    key.local_port,
                    key.remote_port,
                    value.count,
                    wall(value.last_ns),
                    value.pid,
                    command(bytes(value.comm)),
                    value.role,
                )
            )
        return samples

    def counters(self) -> dict[str, int]:
        if self._bpf is None:
            return {}
        return per_cpu_counters(self._bpf[b"tcp_stats"], STAT_NAMES)

    def newly_lost(self) -> int:
        """Events the ring buffer had no room for since the last call."""
        lost = self.counters().get("events_lost", 0)
        fresh, self._lost_reported = lost - self._lost_reported, lost
        return fresh

    def connections(self) -> int:
        """Entries in the connection map (walks the map: call once per interval at most)."""
        return 0 if self._bpf is None else sum(1 for _ in self._bpf[b"tcp_conns"])

    def program_fds(self) -> dict[str, int]:
        if self._bpf is None:
            return {}
        return program_fds(self._bpf)

    def close(self) -> None:
        if self._bpf is not None:
            with contextlib.suppress(Exception):
                self._bpf.cleanup()
            self._bpf = None
