"""L7 packets: a packet socket per interface with the l7_filter.c socket filter, read without blocking.

The filter is attached before the socket is bound to its interface, so no
unfiltered packet is ever queued. The kernel stamps each packet when it passes
the tap (SO_TIMESTAMPNS): latencies are measured between those stamps, not when
user space got round to reading. Packets the socket had no room for are counted
by the kernel (PACKET_STATISTICS) and reported as lost events.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import struct
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from hubble_bridge.sidecar.bccload import per_cpu_counters, program_source
from hubble_bridge.sidecar.features import ProbeState, ProbeStatus
from hubble_bridge.sidecar.records import IPPROTO_TCP, IPPROTO_UDP
from hubble_bridge.sidecar.xdp import captured_stderr

PROGRAM = "l7_filter"
STAT_NAMES = ("packets_inspected", "dns_packets", "http_packets", "tcp_payloads_skipped")
ETH_P_ALL = 0x0003
SO_ATTACH_BPF = 50
SO_TIMESTAMPNS = 35
SOL_PACKET = 263
PACKET_STATISTICS = 6
RCVBUF_BYTES = 4 << 20
_TIMESPEC = struct.Struct("@qq")
_VLAN_TYPES = (0x8100, 0x88A8)


@dataclass(slots=True)
class Segment:
    """One kept packet: its addresses, ports, TCP sequence number and (bounded) payload."""

    time_ns: int
    ifindex: int
    protocol: int
    source: str
    destination: str
    source_port: int
    destination_port: int
    seq: int  # TCP only
    payload: bytes


def decode_frame(frame: bytes, time_ns: int, ifindex: int) -> Segment | None:
    """An Ethernet frame -> Segment; None for anything that is not IPv4/IPv6 TCP/UDP."""
    if len(frame) < 14:
        return None
    ethertype = int.from_bytes(frame[12:14], "big")
    l3 = 14
    if ethertype in _VLAN_TYPES and len(frame) >= 18:
        ethertype, l3 = int.from_bytes(frame[16:18], "big"), 18
    if ethertype == 0x0800 and len(frame) >= l3 + 20:
        protocol = frame[l3 + 9]
        source = str(ipaddress.IPv4Address(frame[l3 + 12 : l3 + 16]))
        destination = str(ipaddress.IPv4Address(frame[l3 + 16 : l3 + 20]))
        l4 = l3 + (frame[l3] & 0x0F) * 4
    elif ethertype == 0x86DD and len(frame) >= l3 + 40:
        protocol = frame[l3 + 6]
        source = str(ipaddress.IPv6Address(frame[l3 + 8 : l3 + 24]))
        destination = str(ipaddress.IPv6Address(frame[l3 + 24 : l3 + 40]))
        l4 = l3 + 40
    else:
        return None
    if protocol == IPPROTO_UDP and len(frame) >= l4 + 8:
        sport, dport = struct.unpack_from("!HH", frame, l4)
        return Segment(time_ns, ifindex, protocol, source, destination, sport, dport, 0, frame[l4 + 8 :])
    if protocol == IPPROTO_TCP and len(frame) >= l4 + 20:
        sport, dport, seq = struct.unpack_from("!HHI", frame, l4)
        payload = frame[l4 + (frame[l4 + 12] >> 4) * 4 :]
        return Segment(time_ns, ifindex, protocol, source, destination, sport, dport, seq, payload)
    return None


class PacketCapture:
    def __init__(
        self, bcc: ModuleType, interfaces: list[str], dns_ports: list[int], payload_bytes: int
    ) -> None:
        self._bcc = bcc
        self._interfaces = list(dict.fromkeys(interfaces))
        self.dns_ports = list(dict.fromkeys(dns_ports))
        self.payload_bytes = payload_bytes
        self._bpf: Any = None
        self._function: Any = None
        self._sockets: dict[str, tuple[socket.socket, int]] = {}  # interface -> (socket, ifindex)
        self.dropped = 0  # packets the sockets had no room for, over the sidecar's life

    def start(self) -> list[ProbeStatus]:
        source = program_source("l7_filter.c")
        loopback = _ifindex("lo") or 1
        flags = [f"-DPAYLOAD_BYTES={self.payload_bytes}", f"-DLOOPBACK_IFINDEX={loopback}"]
        try:
            with captured_stderr() as noise:
                self._bpf = self._bcc.BPF(text=source.encode(), cflags=flags)
                self._function = self._bpf.load_func(PROGRAM.encode(), self._bcc.BPF.SOCKET_FILTER)
            ports = self._bpf[b"dns_ports"]
            for port in self.dns_ports:
                ports[ports.Key(port)] = ports.Leaf(1)
        except Exception as exc:
            why = f"the socket filter did not load: {exc} {' '.join(noise[-3:])}".strip()
            return [ProbeStatus(f"socket filter {n}", ProbeState.UNAVAILABLE, why) for n in self._interfaces]
        return [self._open(name) for name in self._interfaces]

    def _open(self, name: str) -> ProbeStatus:
        probe = f"socket filter {name}"
        ifindex = _ifindex(name)
        if ifindex is None:
            return ProbeStatus(probe, ProbeState.UNAVAILABLE, "no such interface")
        try:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)  # protocol 0: receives nothing yet
        except OSError as exc:
            return ProbeStatus(
                probe, ProbeState.UNAVAILABLE, f"packet socket: {exc.strerror} (needs CAP_NET_RAW)"
            )
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_BPF, self._function.fd)
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF_BYTES)
            sock.bind((name, ETH_P_ALL))
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            return ProbeStatus(probe, ProbeState.UNAVAILABLE, f"packet socket: {exc.strerror}")
        self._sockets[name] = (sock, ifindex)
        ports = ",".join(str(p) for p in self.dns_ports)
        detail = (
            f"DNS on ports {ports}, HTTP/1.x on any TCP port, {self.payload_bytes} payload bytes a packet"
        )
        return ProbeStatus(probe, ProbeState.ATTACHED, detail)

    @property
    def attached(self) -> list[str]:
        return list(self._sockets)

    def read(self, limit: int = 4096) -> list[Segment]:
        """What the sockets hold now (at most `limit` packets per socket per call)."""
        segments: list[Segment] = []
        ancillary = socket.CMSG_SPACE(_TIMESPEC.size)
        size = self.payload_bytes + 256  # headers: Ethernet, VLAN, IPv6, TCP with options
        for sock, ifindex in self._sockets.values():
            for _ in range(limit):
                try:
                    frame, ancdata, _, _ = sock.recvmsg(size, ancillary)
                except (BlockingIOError, InterruptedError):
                    break
                time_ns = 0
                for level, kind, data in ancdata:
                    if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= _TIMESPEC.size:
                        seconds, nanos = _TIMESPEC.unpack_from(data)
                        time_ns = seconds * 1_000_000_000 + nanos
                segment = decode_frame(frame, time_ns, ifindex)
                if segment is not None:
                    segments.append(segment)
        return segments

    def newly_dropped(self) -> int:
        """Packets dropped for want of socket buffer since the last call (the kernel resets its count)."""
        fresh = 0
        for sock, _ in self._sockets.values():
            with contextlib.suppress(OSError):
                _, drops = struct.unpack("II", sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
                fresh += drops
        self.dropped += fresh
        return fresh

    def counters(self) -> dict[str, int]:
        if self._bpf is None:
            return {}
        counted = per_cpu_counters(self._bpf[b"l7_stats"], STAT_NAMES)
        counted["packets_dropped"] = self.dropped
        return counted

    def program_fds(self) -> dict[str, int]:
        return {PROGRAM: self._function.fd} if self._function is not None and self._sockets else {}

    def close(self) -> None:
        for sock, _ in self._sockets.values():
            sock.close()
        self._sockets.clear()
        if self._bpf is not None:
            with contextlib.suppress(Exception):
                self._bpf.cleanup()
            self._bpf = None


def _ifindex(name: str) -> int | None:
    try:
        return socket.if_nametoindex(name)
    except OSError:
        return None
