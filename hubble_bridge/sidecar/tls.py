"""TLS plaintext: uprobes on OpenSSL's read/write functions in every libssl this host uses.

A uprobe is placed on the library file, so it covers every process that maps it,
including processes started later. The libraries are the ones the dynamic linker
knows (ldconfig -p) and any other libssl mapped by a running process (a bundled
copy). Each SSL object's socket comes from SSL_set_fd: its file descriptor is
resolved through /proc/<pid>/fd and /proc/<pid>/net/tcp{,6} when the event is
read, which gives the connection's addresses without reading kernel structures.
Where the kernel has no uprobes or no libssl is found, TLS connections stay
L3/L4 flows (reported as a fallback).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import subprocess
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from hubble_bridge.sidecar.bccload import per_cpu_counters, program_fds, program_source
from hubble_bridge.sidecar.features import ProbeState, ProbeStatus
from hubble_bridge.sidecar.records import MonotonicClock, command
from hubble_bridge.sidecar.xdp import captured_stderr

UPROBE_PMU = Path("/sys/bus/event_source/devices/uprobe/type")
STAT_NAMES = ("events_sent", "events_lost", "calls_not_tracked", "calls_skipped")
KIND_DATA, KIND_SET_FD = 1, 2
PAYLOAD_BYTES = 1024  # a power of two (tls_uprobes.c masks with it)
FALLBACK = "TLS connections are seen as TCP flows only, without their HTTP"
# (symbol, entry handler, return handler)
_PROBES = (
    ("SSL_write", "on_ssl_write", "on_ssl_write_return"),
    ("SSL_write_ex", "on_ssl_write_ex", "on_ssl_write_return"),
    ("SSL_read", "on_ssl_read", "on_ssl_read_return"),
    ("SSL_read_ex", "on_ssl_read_ex", "on_ssl_read_return"),
)
_SOCKET_LINK = re.compile(r"socket:\[(\d+)\]")

Side = tuple[str, int]


@dataclass(slots=True)
class TlsData:
    """Plaintext one process wrote to (or read from) one SSL object."""

    time_ns: int
    pid: int
    command: str
    ssl: int
    written: bool
    data: bytes
    local: Side | None  # None when the socket could not be resolved
    remote: Side | None


def libssl_paths() -> list[str]:
    """Every libssl file this host's processes use or would load, by real path, once each."""
    found: dict[str, None] = {}
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        listing = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, timeout=10).stdout
        for line in listing.splitlines():
            name, _, path = line.partition("=>")
            if re.match(r"\s*libssl\.so\.\d", name) and path.strip():
                found[os.path.realpath(path.strip())] = None
    for maps in Path("/proc").glob("[0-9]*/maps"):
        with contextlib.suppress(OSError):
            for line in maps.read_text().splitlines():
                if "libssl.so" in line:
                    path = line.split(None, 5)[-1]
                    if path.startswith("/") and os.path.exists(path):
                        found[os.path.realpath(path)] = None
    return list(found)


def uprobes_missing() -> str | None:
    if UPROBE_PMU.exists():
        return None
    return "this kernel has no uprobes (no uprobe PMU)"


def socket_sides(pid: int, fd: int) -> tuple[Side, Side] | None:
    """(local, remote) of the TCP socket behind `fd` in process `pid`, from /proc; None if gone or not TCP."""
    try:
        match = _SOCKET_LINK.fullmatch(os.readlink(f"/proc/{pid}/fd/{fd}"))
    except OSError:
        return None
    if match is None:
        return None
    inode = match.group(1)
    for table in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[9] == inode:
                return _proc_address(fields[1]), _proc_address(fields[2])
    return None


def _proc_address(text: str) -> Side:
    """/proc/net/tcp's "0100007F:1F90" (address in host byte order, 32-bit words) -> ("127.0.0.1", 8080)."""
    hex_address, _, hex_port = text.partition(":")
    raw = bytes.fromhex(hex_address)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    if len(words) == 4:
        return str(ipaddress.IPv4Address(words)), int(hex_port, 16)
    ip6 = ipaddress.IPv6Address(words)
    return str(ip6.ipv4_mapped or ip6), int(hex_port, 16)


class TlsCapture:
    def __init__(
        self, bcc: ModuleType, clock: MonotonicClock, call_map_size: int, ringbuf_pages: int
    ) -> None:
        self._bcc = bcc
        self._clock = clock
        self.call_map_size = call_map_size
        self._ringbuf_pages = ringbuf_pages
        self._bpf: Any = None
        self._on_data: Callable[[TlsData], None] | None = None
        # (pid, SSL object) -> (fd, (local, remote) once resolved)
        self._sockets: OrderedDict[tuple[int, int], tuple[int, tuple[Side, Side] | None]] = OrderedDict()
        self._lost_reported = 0
        self.unresolved = 0  # plaintext dropped: its socket was not known or already gone
        self.libraries: list[str] = []

    def start(self, on_data: Callable[[TlsData], None]) -> list[ProbeStatus]:
        self._on_data = on_data
        problem = uprobes_missing()
        if problem is not None:
            return [ProbeStatus("uprobe libssl", ProbeState.FALLBACK, f"{problem}; {FALLBACK}")]
        self.libraries = libssl_paths()
        if not self.libraries:
            return [ProbeStatus("uprobe libssl", ProbeState.FALLBACK, f"no libssl on this host; {FALLBACK}")]
        source = program_source("tls_uprobes.c")
        flags = [
            f"-DPAYLOAD_BYTES={PAYLOAD_BYTES}",
            f"-DCALL_MAP_SIZE={self.call_map_size}",
            f"-DRINGBUF_PAGES={self._ringbuf_pages}",
        ]
        try:
            with captured_stderr() as noise:
                self._bpf = self._bcc.BPF(text=source.encode(), cflags=flags)
        except Exception as exc:
            why = f"the uprobe programs did not load: {exc} {' '.join(noise[-3:])}".strip()
            return [
                ProbeStatus(f"uprobe {p}", ProbeState.FALLBACK, f"{why}; {FALLBACK}") for p in self.libraries
            ]
        statuses = [self._attach(path) for path in self.libraries]
        if any(s.state is ProbeState.ATTACHED for s in statuses):
            self._bpf[b"tls_events"].open_ring_buffer(self._deliver)
        return statuses

    def _attach(self, path: str) -> ProbeStatus:
        attached, missing = [], []
        for symbol, entry, ret in (*_PROBES, ("SSL_set_fd", "on_ssl_set_fd", None)):
            try:
                with captured_stderr():
                    self._bpf.attach_uprobe(name=path.encode(), sym=symbol.encode(), fn_name=entry.encode())
                    if ret is not None:
                        self._bpf.attach_uretprobe(
                            name=path.encode(), sym=symbol.encode(), fn_name=ret.encode()
                        )
                attached.append(symbol)
            except Exception:
                missing.append(symbol)
        name = f"uprobe {path}"
        if "SSL_set_fd" not in attached or not any(s in attached for s in ("SSL_write", "SSL_write_ex")):
            why = f"could not attach {', '.join(missing)}; {FALLBACK}"
            return ProbeStatus(name, ProbeState.FALLBACK, why)
        detail = f"uprobe + uretprobe on {', '.join(attached)}"
        if missing:
            detail += f" (not in this library: {', '.join(missing)})"
        return ProbeStatus(name, ProbeState.ATTACHED, detail)

    @property
    def attached(self) -> bool:
        return self._bpf is not None and bool(self._bpf.num_open_uprobes())

    def _deliver(self, ctx: Any, data: Any, size: int) -> None:
        raw = self._bpf[b"tls_events"].event(data)
        key = (raw.pid, raw.ssl)
        if raw.kind == KIND_SET_FD:
            # Resolved now, while the socket surely exists; retried at the first data if not connected yet.
            self._sockets[key] = (raw.fd, socket_sides(raw.pid, raw.fd))
            self._sockets.move_to_end(key)
            if len(self._sockets) > self.call_map_size:
                self._sockets.popitem(last=False)
            return
        known = self._sockets.get(key)
        sides = None
        if known is not None:
            sides = known[1]
            if sides is None:
                sides = socket_sides(raw.pid, known[0])
                self._sockets[key] = (known[0], sides)
        if sides is None:
            self.unresolved += 1
            return
        local, remote = sides
        event = TlsData(
            self._clock.wall(raw.time_ns),
            raw.pid,
            command(bytes(raw.comm)),
            raw.ssl,
            bool(raw.written),
            bytes(raw.data[: raw.length]),
            local,
            remote,
        )
        if self._on_data is not None:
            self._on_data(event)

    def poll(self, timeout_ms: int = 0) -> None:
        if self._bpf is not None and self.attached:
            self._bpf.ring_buffer_poll(timeout_ms)

    def counters(self) -> dict[str, int]:
        if self._bpf is None:
            return {}
        counted = per_cpu_counters(self._bpf[b"tls_stats"], STAT_NAMES)
        counted["plaintext_unresolved"] = self.unresolved
        return counted

    def newly_lost(self) -> int:
        """Plaintext events the ring buffer had no room for since the last call."""
        lost = self.counters().get("events_lost", 0)
        fresh, self._lost_reported = lost - self._lost_reported, lost
        return fresh

    def calls_open(self) -> int:
        """Entries in the in-progress call map (a walk: once per interval at most)."""
        return 0 if self._bpf is None else sum(1 for _ in self._bpf[b"tls_calls"])

    def program_fds(self) -> dict[str, int]:
        if self._bpf is None:
            return {}
        return program_fds(self._bpf)

    def close(self) -> None:
        if self._bpf is not None:
            with contextlib.suppress(Exception):
                self._bpf.cleanup()
            self._bpf = None
