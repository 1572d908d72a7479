"""FlowFilter field builders: parse a field's values once, return a flow predicate.

Builders are filed by proto field name (here for L3/L4 and flow metadata; endpoints.py and
l7.py hold the rest); a populated field without a builder is rejected by the compiler, so a
field added to the schema is never skipped silently. Semantics follow Hubble's server-side
filters (cilium pkg/hubble/filters).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from hubble_bridge.api import flow_pb2
from hubble_bridge.filtering import patterns
from hubble_bridge.filtering.errors import InvalidFilterError

Flow = flow_pb2.Flow
Predicate = Callable[[Flow], bool]
Builder = Callable[[str, Sequence[Any], flow_pb2.FlowFilter], Predicate]

BUILDERS: dict[str, Builder] = {}

_DROPPED = flow_pb2.DROPPED
_TCP_FLAGS = tuple(field.name for field in flow_pb2.TCPFlags.DESCRIPTOR.fields)
_PORTED_L4 = frozenset({"TCP", "UDP", "SCTP"})
_L4_PROTOCOLS = {
    "tcp": ("TCP",),
    "udp": ("UDP",),
    "sctp": ("SCTP",),
    "icmp": ("ICMPv4", "ICMPv6"),
    "icmpv4": ("ICMPv4",),
    "icmpv6": ("ICMPv6",),
    "vrrp": ("VRRP",),
    "igmp": ("IGMP",),
}
_L7_PROTOCOLS = {"http": "http", "dns": "dns", "kafka": "kafka"}


def registrar(registry: dict[str, Builder]) -> Callable[..., Callable[[Builder], Builder]]:
    """A decorator factory that files a builder under one or more field names."""

    def names(*fields: str) -> Callable[[Builder], Builder]:
        def register(builder: Builder) -> Builder:
            for name in fields:
                registry[name] = builder
            return builder

        return register

    return names


_register = registrar(BUILDERS)


def checked(field: str, value: Any, parse: Callable[[Any], Any]) -> Any:
    try:
        return parse(value)
    except ValueError as exc:
        raise InvalidFilterError(field, value, str(exc)) from None


def one_of(values: Sequence[Any], get: Callable[[Flow], Any]) -> Predicate:
    wanted = frozenset(values)
    return lambda f: get(f) in wanted


@_register("source_port", "destination_port")
def _ports(field: str, values: Sequence[str], _: flow_pb2.FlowFilter) -> Predicate:
    wanted = frozenset(checked(field, value, patterns.parse_port) for value in values)
    attr = "source_port" if field.startswith("source") else "destination_port"

    def match(flow: Flow) -> bool:
        kind = flow.l4.WhichOneof("protocol")
        return kind in _PORTED_L4 and (getattr(getattr(flow.l4, kind), attr) & 0xFFFF) in wanted

    return match


@_register("protocol")
def _protocols(field: str, values: Sequence[str], _: flow_pb2.FlowFilter) -> Predicate:
    l4: set[str] = set()
    l7: set[str] = set()
    for value in values:
        name = value.lower()
        if name in _L4_PROTOCOLS:
            l4.update(_L4_PROTOCOLS[name])
        elif name in _L7_PROTOCOLS:
            l7.add(_L7_PROTOCOLS[name])
        else:
            known = ", ".join([*_L4_PROTOCOLS, *_L7_PROTOCOLS])
            raise InvalidFilterError(field, value, f"unknown protocol (known: {known})")
    return lambda f: f.l4.WhichOneof("protocol") in l4 or f.l7.WhichOneof("record") in l7


@_register("tcp_flags")
def _tcp_flags(field: str, values: Sequence[flow_pb2.TCPFlags], _: flow_pb2.FlowFilter) -> Predicate:
    # Each entry is a set of flags that must all be present; any entry may match.
    wanted = tuple(tuple(name for name in _TCP_FLAGS if getattr(entry, name)) for entry in values)

    def match(flow: Flow) -> bool:
        if flow.l4.WhichOneof("protocol") != "TCP" or not flow.l4.TCP.HasField("flags"):
            return False
        flags = flow.l4.TCP.flags
        return any(all(getattr(flags, name) for name in names) for names in wanted)

    return match


@_register("node_name")
def _node_names(field: str, values: Sequence[str], _: flow_pb2.FlowFilter) -> Predicate:
    regex = patterns.anchored_union([checked(field, v, patterns.node_name_regex) for v in values])

    def match(flow: Flow) -> bool:
        name = flow.node_name
        if not name:
            return False
        if "/" not in name:
            name = f"{patterns.DEFAULT_CLUSTER}/{name}"
        return regex.fullmatch(name) is not None

    return match


@_register("event_type")
def _event_types(field: str, values: Sequence[flow_pb2.EventTypeFilter], _: flow_pb2.FlowFilter) -> Predicate:
    wanted = tuple((t.type, t.match_sub_type, t.sub_type) for t in values)

    def match(flow: Flow) -> bool:
        if not flow.HasField("event_type"):
            return False
        event = flow.event_type
        return any(
            (not typ or typ == event.type) and (not by_sub or sub == event.sub_type)
            for typ, by_sub, sub in wanted
        )

    return match


@_register("reply")
def _reply(field: str, values: Sequence[bool], _: flow_pb2.FlowFilter) -> Predicate:
    wanted = frozenset(values)

    def match(flow: Flow) -> bool:
        if flow.HasField("is_reply"):
            return flow.is_reply.value in wanted
        # Hubble reads an unknown direction on a drop as "not a reply" (older clients' view).
        return flow.verdict == _DROPPED and False in wanted

    return match


@_register("drop_reason_desc")
def _drop_reasons(field: str, values: Sequence[int], _: flow_pb2.FlowFilter) -> Predicate:
    wanted = frozenset(values)
    return lambda f: f.verdict == _DROPPED and f.drop_reason_desc in wanted


@_register("interface")
def _interfaces(field: str, values: Sequence[flow_pb2.NetworkInterface], _: flow_pb2.FlowFilter) -> Predicate:
    wanted = tuple((i.index, i.name) for i in values)

    def match(flow: Flow) -> bool:
        if not flow.HasField("interface"):
            return False
        iface = flow.interface
        return any((not idx or idx == iface.index) and (not nm or nm == iface.name) for idx, nm in wanted)

    return match


@_register("ip_trace_id")
def _ip_trace_ids(field: str, values: Sequence[int], _: flow_pb2.FlowFilter) -> Predicate:
    wanted = frozenset(values)
    return lambda f: f.HasField("ip_trace_id") and f.ip_trace_id.trace_id in wanted


BUILDERS.update(
    verdict=lambda field, values, _: one_of(values, lambda f: f.verdict),
    traffic_direction=lambda field, values, _: one_of(values, lambda f: f.traffic_direction),
    ip_version=lambda field, values, _: one_of(values, lambda f: f.IP.ipVersion),
    encrypted=lambda field, values, _: one_of(values, lambda f: f.IP.encrypted),
    uuid=lambda field, values, _: one_of(values, lambda f: f.uuid),
    trace_id=lambda field, values, _: one_of(values, lambda f: f.trace_context.parent.trace_id),
)
