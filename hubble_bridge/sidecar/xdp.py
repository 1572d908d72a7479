"""The XDP flow counter: compiled once, attached to each interface (driver mode, else generic), drained."""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import tempfile
from collections.abc import Iterator
from types import ModuleType
from typing import Any

from hubble_bridge.sidecar.bccload import per_cpu_counters, program_source
from hubble_bridge.sidecar.bpfsys import XDP_FLAGS_DRV_MODE, XDP_FLAGS_SKB_MODE, link_xdp
from hubble_bridge.sidecar.features import ProbeState, ProbeStatus
from hubble_bridge.sidecar.records import MonotonicClock, XdpSample, address

PROGRAM = "xdp_count_flows"
BUSY = "the interface already has an XDP program (ip link set dev IFACE xdp off removes it)"
STAT_NAMES = ("packets_counted", "packets_not_ip", "flows_created", "flows_not_created")


@contextlib.contextmanager
def captured_stderr() -> Iterator[list[str]]:
    """libbcc prints attach failures on fd 2; keep them out of the terminal and hand them back."""
    lines: list[str] = []
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield lines
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            lines.extend(sink.read().decode(errors="replace").splitlines())


class XdpCapture:
    def __init__(self, bcc: ModuleType, interfaces: list[str], map_size: int, clock: MonotonicClock) -> None:
        self._bcc = bcc
        self._interfaces = list(dict.fromkeys(interfaces))
        self.map_size = map_size
        self._clock = clock
        self._bpf: Any = None
        self._function: Any = None
        self._links: dict[str, int] = {}  # interface -> BPF link fd
        self._netlink: dict[str, int] = {}  # interface -> XDP mode of a netlink attachment
        self.last_drained = 0

    def start(self) -> list[ProbeStatus]:
        """Compile and attach; one status per interface. Never raises for one interface's failure."""
        bpf_class = self._bcc.BPF
        source = program_source("xdp_flows.c")
        try:
            with captured_stderr():
                self._bpf = bpf_class(text=source.encode(), cflags=[f"-DMAP_SIZE={self.map_size}"])
                self._function = self._bpf.load_func(PROGRAM.encode(), bpf_class.XDP)
        except Exception as exc:
            reason = f"the XDP program did not load: {exc}"
            return [ProbeStatus(f"xdp {name}", ProbeState.UNAVAILABLE, reason) for name in self._interfaces]
        return [self._attach(name) for name in self._interfaces]

    def _attach(self, name: str) -> ProbeStatus:
        probe = f"xdp {name}"
        try:
            ifindex = socket.if_nametoindex(name)
        except OSError:
            return ProbeStatus(probe, ProbeState.UNAVAILABLE, "no such interface")
        errors: list[str] = []
        for mode, label in ((XDP_FLAGS_DRV_MODE, "driver"), (XDP_FLAGS_SKB_MODE, "generic")):
            try:
                how = self._link(name, ifindex, mode)
            except OSError as exc:
                if exc.errno in (errno.EBUSY, errno.EEXIST):
                    return ProbeStatus(probe, ProbeState.UNAVAILABLE, BUSY)
                errors.append(f"{label}: {exc.strerror}")
                continue
            if label == "driver":
                return ProbeStatus(probe, ProbeState.ATTACHED, f"driver mode (native XDP), {how}")
            why = errors[0] if errors else "driver mode refused"
            return ProbeStatus(probe, ProbeState.FALLBACK, f"generic mode, {how} (no native XDP: {why})")
        return ProbeStatus(probe, ProbeState.UNAVAILABLE, "; ".join(errors))

    def _link(self, name: str, ifindex: int, mode: int) -> str:
        """Attach in `mode`; a BPF link where the kernel has them (5.9+), else a netlink attachment."""
        try:
            self._links[name] = link_xdp(self._function.fd, ifindex, mode)
            return "BPF link"
        except OSError as exc:
            if exc.errno not in (errno.EINVAL, errno.ENOSYS, errno.E2BIG):
                raise
        bpf_class = self._bcc.BPF
        try:
            with captured_stderr():
                flags = bpf_class.XDP_FLAGS_UPDATE_IF_NOEXIST | mode
                bpf_class.attach_xdp(name.encode(), self._function, flags)
        except Exception as exc:
            text = str(exc).lower()
            code = errno.EBUSY if "busy" in text or "exists" in text else errno.EOPNOTSUPP
            raise OSError(code, str(exc).rpartition(": ")[2] or str(exc)) from None
        self._netlink[name] = mode
        return "netlink (detached on exit only)"

    @property
    def attached(self) -> list[str]:
        return [*self._links, *self._netlink]

    def drain(self) -> list[XdpSample]:
        """Every flow counted since the last drain, removed from the map in the same system call."""
        if self._bpf is None or not self.attached:
            return []
        table = self._bpf[b"xdp_flows"]
        clock = self._clock
        samples: list[XdpSample] = []
        for key, per_cpu in table.items_lookup_and_delete_batch():
            packets = size = last = flags = 0
            first = 0
            opened = False
            for value in per_cpu:
                if not value.packets:
                    continue
                packets += value.packets
                size += value.bytes
                first = value.first_ns if not first else min(first, value.first_ns)
                last = max(last, value.last_ns)
                flags |= value.tcp_flags
                opened = opened or bool(value.opened)
            if not packets:
                continue
            version = key.ip_version
            samples.append(
                XdpSample(
                    key.ifindex,
                    version,
                    key.protocol,
                    address(key.saddr, version),
                    address(key.daddr, version),
                    key.sport,
                    key.dport,
                    packets,
                    size,
                    clock.wall(first),
                    clock.wall(last),
                    flags,
                    opened,
                )
            )
        self.last_drained = len(samples)
        return samples

    def counters(self) -> dict[str, int]:
        if self._bpf is None:
            return {}
        return per_cpu_counters(self._bpf[b"xdp_stats"], STAT_NAMES)

    def program_fds(self) -> dict[str, int]:
        return {PROGRAM: self._function.fd} if self._function is not None and self.attached else {}

    def close(self) -> None:
        """Detach from every interface (ignoring ones that are gone); safe twice."""
        for fd in self._links.values():
            os.close(fd)
        for name, mode in self._netlink.items():
            with contextlib.suppress(Exception), captured_stderr():
                self._bcc.BPF.remove_xdp(name.encode(), mode)
        self._links.clear()
        self._netlink.clear()
        if self._bpf is not None:
            with contextlib.suppress(Exception):
                self._bpf.cleanup()
            self._bpf = None
