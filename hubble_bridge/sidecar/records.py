"""What the kernel programs report, as plain values: decoded from BPF maps, consumed by `convert`.

Times are wall-clock nanoseconds (the programs' CLOCK_MONOTONIC moved by the
offset measured at drain time); addresses are text; the kernel's C constants
that matter to user space are mirrored here, in one place.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Sequence
from dataclasses import dataclass

from hubble_bridge.sidecar.dnsmsg import DnsMessage

# TCP flag bits as in the header's 13th byte (tcp_life.c / xdp_flows.c).
TCP_FIN, TCP_SYN, TCP_RST, TCP_PSH, TCP_ACK, TCP_URG, TCP_ECE, TCP_CWR = (1 << i for i in range(8))
IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, IPPROTO_SCTP, IPPROTO_ICMPV6 = 1, 6, 17, 132, 58

# tcp_life.c enums
ROLE_CLIENT, ROLE_SERVER = 1, 2
CLOSED_BY_LOCAL, CLOSED_BY_REMOTE = 1, 2
RESET_RECEIVED, RESET_SENT = 1, 2
EV_CONNECT, EV_ACCEPT, EV_CLOSE, EV_CONNECT_FAILED, EV_CONNECT_ERROR = 1, 2, 3, 4, 5


@dataclass(slots=True)
class XdpSample:
    """One direction of one 5-tuple on one interface over one interval, summed over CPUs."""

    ifindex: int
    ip_version: int
    protocol: int
    source: str
    destination: str
    source_port: int  # ICMP: type
    destination_port: int  # ICMP: code
    packets: int
    bytes: int
    first_ns: int
    last_ns: int
    tcp_flags: int
    opened: bool  # a SYN without ACK went this way: the sender opened the connection


@dataclass(slots=True)
class TcpEvent:
    """A connection step from tcp_life.c, seen from the local socket."""

    kind: int
    time_ns: int
    ip_version: int
    local: str
    remote: str
    local_port: int
    remote_port: int
    pid: int
    command: str
    role: int
    closed_by: int = 0
    reset: int = 0
    latency_ns: int = 0
    duration_ns: int = 0
    retransmits: int = 0
    error: int = 0


@dataclass(slots=True)
class RetransmitSample:
    """Retransmissions by one local socket over one interval."""

    ip_version: int
    local: str
    remote: str
    local_port: int
    remote_port: int
    count: int
    last_ns: int
    pid: int
    command: str
    role: int


def address(raw: Sequence[int], ip_version: int) -> str:
    """Dual-stack sockets report IPv4 peers as ::ffff:a.b.c.d; those come out as a.b.c.d, as on the wire."""
    if ip_version == 4:
        return str(ipaddress.IPv4Address(bytes(raw[:4])))
    ip6 = ipaddress.IPv6Address(bytes(raw[:16]))
    return str(ip6.ipv4_mapped or ip6)


def command(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


class MonotonicClock:
    """Moves bpf_ktime_get_ns() (CLOCK_MONOTONIC) times onto the wall clock."""

    def __init__(self) -> None:
        self.offset_ns = 0
        self.update()

    def update(self) -> None:
        # Measured at every drain: the wall clock may be stepped while the sidecar runs.
        self.offset_ns = time.time_ns() - time.monotonic_ns()

    def wall(self, monotonic_ns: int) -> int:
        return monotonic_ns + self.offset_ns if monotonic_ns else 0


@dataclass(slots=True)
class HttpRecord:
    """One HTTP/1.x exchange's fields as a flow carries them; a response repeats its request's."""

    method: str
    target: str  # as sent: "/path?q" or absolute
    host: str  # the Host header, "" when absent or cut by the capture
    protocol: str
    code: int = 0
    headers: list[tuple[str, str]] | None = None


@dataclass(slots=True)
class L7Message:
    """A DNS or HTTP request or response, client and server known, ready to become an L7 flow."""

    time_ns: int
    protocol: int  # IPPROTO_TCP or IPPROTO_UDP
    client: tuple[str, int]
    server: tuple[str, int]
    reply: bool
    latency_ns: int = 0
    ifindex: int = 0
    dns: DnsMessage | None = None
    http: HttpRecord | None = None
    pid: int = 0
    command: str = ""
    process_is_client: bool | None = None  # which end `pid` is, when known
    tls: bool = False  # plaintext read from OpenSSL by uprobes, not from packets
