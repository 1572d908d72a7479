"""DNS messages (RFC 1035 wire format) -> the fields Hubble's DNS flows carry. Pure: no I/O.

What Cilium's DNS proxy reports (pkg/hubble/parser/seven/dns.go and the proxy's
access log): the query name with its trailing dot, question types and answer
record types by gopacket's names, the A/AAAA addresses, the CNAME targets, the
response code and the lowest TTL of the answers. Captured packets may be cut
short (the sidecar reads a bounded amount of each): whatever answers were
captured in full are reported, and a message without a complete header and
question is an error.
"""

from __future__ import annotations

import contextlib
import ipaddress
import struct
from dataclasses import dataclass, field

# gopacket's layers.DNSType names, which Hubble puts in qtypes and rrtypes.
TYPE_NAMES = {
    1: "A", 2: "NS", 3: "MD", 4: "MF", 5: "CNAME", 6: "SOA", 7: "MB", 8: "MG", 9: "MR", 10: "NULL",
    11: "WKS", 12: "PTR", 13: "HINFO", 14: "MINFO", 15: "MX", 16: "TXT", 28: "AAAA", 33: "SRV",
    41: "OPT", 64: "SVCB", 65: "HTTPS", 256: "URI",
}  # fmt: skip
TYPE_A, TYPE_CNAME, TYPE_AAAA = 1, 5, 28
_HEADER = struct.Struct("!HHHHHH")
_RR = struct.Struct("!HHIH")
_MAX_POINTERS = 32  # a compressed name following more pointers than this is a loop


class DnsError(ValueError):
    """Not a DNS message, or one cut before its question ended."""


@dataclass(slots=True)
class DnsMessage:
    id: int
    response: bool
    rcode: int
    query: str  # "example.com." as Hubble reports it
    qtypes: list[str]
    ips: list[str] = field(default_factory=list)
    cnames: list[str] = field(default_factory=list)
    rrtypes: list[str] = field(default_factory=list)
    ttl: int = 0
    truncated: bool = False  # the capture ended inside the answers


def type_name(code: int) -> str:
    return TYPE_NAMES.get(code, "Unknown")


def _name(data: bytes, offset: int) -> tuple[str, int]:
    """The name at `offset` and the offset after it (after the first pointer, if compressed)."""
    labels: list[str] = []
    end = -1
    jumps = 0
    total = 0
    while True:
        if offset >= len(data):
            raise DnsError("name runs past the end of the message")
        length = data[offset]
        if length & 0xC0 == 0xC0:
            if offset + 1 >= len(data):
                raise DnsError("name pointer cut short")
            jumps += 1
            if jumps > _MAX_POINTERS:
                raise DnsError("name pointers loop")
            if end < 0:
                end = offset + 2
            offset = ((length & 0x3F) << 8) | data[offset + 1]
            continue
        if length & 0xC0:
            raise DnsError(f"unsupported label type 0x{length & 0xC0:02x}")
        offset += 1
        if length == 0:
            break
        label = data[offset : offset + length]
        if len(label) < length:
            raise DnsError("label runs past the end of the message")
        total += length + 1
        if total > 255:
            raise DnsError("name longer than 255 bytes")
        labels.append(label.decode("ascii", "backslashreplace"))
        offset += length
    return ".".join(labels) + ".", (end if end >= 0 else offset)


def parse(data: bytes) -> DnsMessage:
    """The message in `data`; DnsError when it has no complete header and first question."""
    if len(data) < _HEADER.size:
        raise DnsError(f"{len(data)} bytes: shorter than a DNS header")
    ident, flags, qdcount, ancount, _, _ = _HEADER.unpack_from(data)
    if flags & 0x7800:  # opcode: only QUERY (0) is a lookup
        raise DnsError(f"opcode {(flags >> 11) & 0xF} is not a query")
    if qdcount == 0:
        raise DnsError("no question")
    offset = _HEADER.size
    query = ""
    qtypes: list[str] = []
    for index in range(qdcount):
        name, offset = _name(data, offset)
        if offset + 4 > len(data):
            raise DnsError("question cut short")
        (qtype,) = struct.unpack_from("!H", data, offset)
        offset += 4
        if index == 0:
            query = name
        qtypes.append(type_name(qtype))
    message = DnsMessage(ident, bool(flags & 0x8000), flags & 0xF, query, qtypes)
    if not message.response:
        return message
    ttl = None
    for _ in range(ancount):
        try:
            _, offset = _name(data, offset)
        except DnsError:
            message.truncated = True
            break
        if offset + _RR.size > len(data):
            message.truncated = True
            break
        rtype, _, rttl, length = _RR.unpack_from(data, offset)
        offset += _RR.size
        rdata = data[offset : offset + length]
        if len(rdata) < length:
            message.truncated = True
            break
        message.rrtypes.append(type_name(rtype))
        if rtype == TYPE_A and length == 4:
            message.ips.append(str(ipaddress.IPv4Address(rdata)))
        elif rtype == TYPE_AAAA and length == 16:
            message.ips.append(str(ipaddress.IPv6Address(rdata)))
        elif rtype == TYPE_CNAME:
            with contextlib.suppress(DnsError):
                message.cnames.append(_name(data, offset)[0])
        offset += length
        ttl = rttl if ttl is None else min(ttl, rttl)
    message.ttl = ttl or 0
    return message


def tcp_messages(payload: bytes) -> list[bytes]:
    """DNS over TCP: each message has a two-byte length; a message cut by the capture comes last, short."""
    messages = []
    offset = 0
    while offset + 2 <= len(payload):
        (length,) = struct.unpack_from("!H", payload, offset)
        if length == 0:
            break
        messages.append(payload[offset + 2 : offset + 2 + length])
        offset += 2 + length
    return messages
