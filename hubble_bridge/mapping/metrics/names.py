"""Hubble's label values: the strings its metric handlers derive from enums and numbers.

Kept as plain lookup tables so the per-flow path is a dict get, and so one place
owns each string that Hubble's Grafana dashboards query.
"""

from __future__ import annotations

from hubble_bridge.api import flow_pb2


def _enum_names(enum: object) -> dict[int, str]:
    return {v.number: v.name for v in enum.DESCRIPTOR.values}  # type: ignore[attr-defined]


VERDICT = _enum_names(flow_pb2.Verdict)
DROP_REASON = _enum_names(flow_pb2.DropReason)
IP_VERSION = _enum_names(flow_pb2.IPVersion)
TRAFFIC_DIRECTION = _enum_names(flow_pb2.TrafficDirection)
LOST_EVENT_SOURCE = _enum_names(flow_pb2.LostEventSource)

# Go's enum String() prints the number for values it does not know; so do we.
VERDICT_LOWER = {k: v.lower() for k, v in VERDICT.items()}
DIRECTION_LOWER = {k: v.lower() for k, v in TRAFFIC_DIRECTION.items()}

FORWARDED = flow_pb2.FORWARDED
DROPPED = flow_pb2.DROPPED
REDIRECTED = flow_pb2.REDIRECTED
INGRESS = flow_pb2.INGRESS
EGRESS = flow_pb2.EGRESS
L7_REQUEST = flow_pb2.REQUEST
L7_RESPONSE = flow_pb2.RESPONSE
POLICY_DENIED = flow_pb2.POLICY_DENIED

# Monitor message types (pkg/monitor/api): flow.event_type.type.
EVENT_DROP = 1
EVENT_CAPTURE = 3
EVENT_TRACE = 4
EVENT_POLICY_VERDICT = 5
EVENT_ACCESS_LOG = 129

# Monitor Trace* sub-types, numbered as in bpf/lib/trace.h (not the proto enum).
TRACE_OBSERVATION_POINTS = {
    0: "to-endpoint",
    1: "to-proxy",
    2: "to-host",
    3: "to-stack",
    4: "to-overlay",
    5: "from-endpoint",
    6: "from-proxy",
    7: "from-host",
    8: "from-stack",
    9: "from-overlay",
    10: "from-network",
    11: "to-network",
    12: "from-crypto",
    13: "to-crypto",
}

# flow.l7 oneof arm -> Hubble's protocol / subtype name.
L7_PROTOCOL = {"dns": "DNS", "http": "HTTP", "kafka": "Kafka"}

# Reporter as Hubble's http and kafka handlers define it.
REPORTER = {INGRESS: "server", EGRESS: "client"}

# PolicyMatchType.String(), lower-cased by the policy handler.
POLICY_MATCH = {0: "none", 1: "l3-only", 2: "l3-l4", 3: "l4-only", 4: "all", 5: "l3-proto", 6: "proto-only"}

RESERVED_HOST_IDENTITY = 1
WORLD_LABELS = frozenset({"reserved:world", "reserved:world-ipv4", "reserved:world-ipv6"})

# DNS RCODE names as the dns handler prints them (IANA numbering).
DNS_RCODE = {
    0: "No Error",
    1: "Format Error",
    2: "Server Failure",
    3: "Non-Existent Domain",
    4: "Not Implemented",
    5: "Query Refused",
    6: "Name Exists when it should not",
    7: "RR Set Exists when it should not",
    8: "RR Set that should exist does not",
    9: "Not Authorized",
    10: "Name not contained in zone",
    11: "DSO-TYPE Not Implemented",
    16: "Bad OPT Version",
    17: "Key not recognized",
    18: "Signature out of time window",
    19: "Bad TKEY Mode",
    20: "Duplicate key name",
    21: "Algorithm not supported",
    22: "Bad Truncation",
    23: "Bad/missing Server Cookie",
}

# ICMP type (and code) names in gopacket's TypeCode.String() form, which the icmp handler uses.
_ICMPV4: dict[int, tuple[str, dict[int, str] | None]] = {
    0: ("EchoReply", None),
    3: (
        "DestinationUnreachable",
        {
            0: "Net",
            1: "Host",
            2: "Protocol",
            3: "Port",
            4: "FragmentationNeeded",
            5: "SourceRoutingFailed",
            6: "NetUnknown",
            7: "HostUnknown",
            8: "SourceIsolated",
            9: "NetAdminProhibited",
            10: "HostAdminProhibited",
            11: "NetTOS",
            12: "HostTOS",
            13: "CommAdminProhibited",
            14: "HostPrecedence",
            15: "PrecedenceCutoff",
        },
    ),
    4: ("SourceQuench", None),
    5: ("Redirect", {0: "Net", 1: "Host", 2: "TOS+Net", 3: "TOS+Host"}),
    8: ("EchoRequest", None),
    9: ("RouterAdvertisement", None),
    10: ("RouterSolicitation", None),
    11: ("TimeExceeded", {0: "TTLExceeded", 1: "FragmentReassemblyTimeExceeded"}),
    12: ("ParameterProblem", {0: "PointerIndicatesError", 1: "MissingOption", 2: "BadLength"}),
    13: ("TimestampRequest", None),
    14: ("TimestampReply", None),
    15: ("InfoRequest", None),
    16: ("InfoReply", None),
    17: ("AddressMaskRequest", None),
    18: ("AddressMaskReply", None),
}
_ICMPV6: dict[int, tuple[str, dict[int, str] | None]] = {
    1: (
        "DestinationUnreachable",
        {
            0: "NoRouteToDst",
            1: "AdminProhibited",
            2: "BeyondScopeOfSrc",
            3: "AddressUnreachable",
            4: "PortUnreachable",
            5: "SrcAddressFailedPolicy",
            6: "RejectRouteToDst",
        },
    ),
    2: ("PacketTooBig", None),
    3: ("TimeExceeded", {0: "HopLimitExceeded", 1: "FragmentReassemblyTimeExceeded"}),
    4: (
        "ParameterProblem",
        {0: "ErroneousHeaderField", 1: "UnrecognizedNextHeader", 2: "UnrecognizedIPv6Option"},
    ),
    128: ("EchoRequest", None),
    129: ("EchoReply", None),
    133: ("RouterSolicitation", None),
    134: ("RouterAdvertisement", None),
    135: ("NeighborSolicitation", None),
    136: ("NeighborAdvertisement", None),
    137: ("Redirect", None),
}


def _icmp_name(table: dict[int, tuple[str, dict[int, str] | None]], icmp_type: int, code: int) -> str:
    info = table.get(icmp_type)
    if info is None:
        return f"{icmp_type}({code})"
    type_name, codes = info
    if codes is None:
        return type_name if code == 0 else f"{type_name}(Code: {code})"
    code_name = codes.get(code)
    return f"{type_name}({code_name})" if code_name else f"{type_name}(Code: {code})"


def icmpv4_type(icmp_type: int, code: int) -> str:
    return _icmp_name(_ICMPV4, icmp_type, code)


def icmpv6_type(icmp_type: int, code: int) -> str:
    return _icmp_name(_ICMPV6, icmp_type, code)
