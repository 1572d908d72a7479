"""The one-line text `hubble observe -o compact` prints for an event.

Same fields, order and wording as the Hubble CLI's compact printer, so a log
body reads exactly like the terminal output operators already know:

    Aug 21 12:12:18.510: default/xwing:44916 (ID:1234) -> default/deathstar:80 (ID:5678)
        policy-verdict:L3-L4 INGRESS DENIED (TCP Flags: SYN)

Two additions for exporter files whose field mask dropped `event_type` and
`Summary`: the type text then falls back to the drop reason / observation point,
and the summary to one derived from L4/L7 the way Cilium's parser writes it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from hubble_bridge.api import flow_pb2, observer_pb2, relay_pb2
from hubble_bridge.mapping.metrics.names import DNS_RCODE, TRACE_OBSERVATION_POINTS, icmpv4_type, icmpv6_type

# pkg/monitor/api/drop.go: the text Hubble prints for a drop event's sub_type.
_DROP_TEXT = dict(enumerate((
    "Invalid source mac", "Invalid destination mac", "Invalid source ip", "Policy denied", "Invalid packet",
    "CT: Truncated or invalid header", "Fragmentation needed", "CT: Unknown L4 protocol",
    "CT: Can't create entry from packet", "Unsupported L3 protocol", "Missed tail call",
    "Error writing to packet", "Unknown L4 protocol", "Unknown ICMPv4 code", "Unknown ICMPv4 type",
    "Unknown ICMPv6 code", "Unknown ICMPv6 type", "Error retrieving tunnel key",
    "Error retrieving tunnel options", "Invalid Geneve option", "Unknown L3 target address",
    "Stale or unroutable IP", "No matching local container found", "Error while correcting L3 checksum",
    "Error while correcting L4 checksum", "CT: Map insertion failed", "Invalid IPv6 extension header",
    "IP fragmentation not supported", "Service backend not found", "",
    "No tunnel/encapsulation endpoint (datapath BUG!)", "NAT 46/64 not enabled",
    "Reached EDT rate-limiting drop horizon", "Unknown connection tracking state",
    "Local host is unreachable", "No configuration available to perform policy decision",
    "Unsupported L2 protocol", "No mapping for NAT masquerade", "Unsupported protocol for NAT masquerade",
    "FIB lookup failed", "Encapsulation traffic is prohibited", "Invalid identity", "Unknown sender",
    "NAT not needed", "Is a ClusterIP", "First logical datagram fragment not found",
    "Forbidden ICMPv6 message", "Denied by LB src range check", "Socket lookup failed",
    "Socket assign failed", "Proxy redirection not supported for protocol", "Policy denied by denylist",
    "VLAN traffic disallowed by VLAN filter", "Incorrect VNI from VTEP",
    "Failed to update or lookup TC buffer", "No SID was found for the IP address",
    "SRv6 state was removed during tail call", "L3 translation from IPv4 to IPv6 failed (NAT46)",
    "L3 translation from IPv6 to IPv4 failed (NAT64)", "Authentication required", "No conntrack map found",
    "No nat map found", "Invalid ClusterID", "Unsupported packet protocol for DSR encapsulation",
    "No egress gateway found", "Traffic is unencrypted", "TTL exceeded", "No node ID found", "Rate limited",
    "IGMP handled", "IGMP subscribed", "Multicast handled", "Host datapath not ready",
    "Endpoint policy program not available", "No Egress IP configured", "Punt to proxy",
), start=130))  # fmt: skip
_POLICY_MATCH_TEXT = ("none", "L3-Only", "L3-L4", "L4-Only", "all", "L3-Proto", "Proto-Only")
_RESERVED_IDENTITIES = (
    "unknown", "host", "world", "unmanaged", "health", "init", "remote-node", "kube-apiserver", "ingress",
    "world-ipv4", "world-ipv6",
)  # fmt: skip
_XLATE_TEXT = {1: "pre-xlate-fwd", 2: "post-xlate-fwd", 3: "pre-xlate-rev", 4: "post-xlate-rev"}
_TCP_FLAG_ORDER = ("SYN", "ACK", "RST", "FIN", "PSH", "URG", "ECE", "CWR", "NS")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NODE_NAMES_CUTOFF = 50
_TYPE_DROP, _TYPE_TRACE, _TYPE_POLICY_VERDICT, _TYPE_CAPTURE, _TYPE_TRACE_SOCK = 1, 4, 5, 3, 7
_PORTED = frozenset({"TCP", "UDP", "SCTP"})
_L7_TYPE_LOWER = {v.number: v.name.lower() for v in flow_pb2.L7FlowType.DESCRIPTOR.values}
_VERDICT_TEXT = {v.number: v.name for v in flow_pb2.Verdict.DESCRIPTOR.values}
# A policy-verdict event words its verdict as the policy decision.
_POLICY_VERDICT_TEXT = {
    **_VERDICT_TEXT,
    flow_pb2.FORWARDED: "ALLOWED",
    flow_pb2.REDIRECTED: "ALLOWED",
    flow_pb2.DROPPED: "DENIED",
    flow_pb2.ERROR: "DENIED",
    flow_pb2.AUDIT: "AUDITED",
}
_AUTH_TYPE_TEXT = {v.number: v.name for v in flow_pb2.AuthType.DESCRIPTOR.values}
_DIRECTION_TEXT = {v.number: v.name for v in flow_pb2.TrafficDirection.DESCRIPTOR.values}
_POLICY_VERDICT_TYPE_TEXT = {
    (match_type, direction): f"policy-verdict:{match_text} {direction_text}"
    for match_type, match_text in enumerate(_POLICY_MATCH_TEXT)
    for direction, direction_text in _DIRECTION_TEXT.items()
}
# Reserved identities by name, then numeric ones as they are seen, up to a cluster's worth.
_IDENTITY_TEXT = {identity: f"({name})" for identity, name in enumerate(_RESERVED_IDENTITIES)}
_IDENTITY_CACHE_SIZE = 16384
# The TYPE column of trace and drop events: their sub_type's text.
_SUB_TYPE_TEXT = {_TYPE_TRACE: TRACE_OBSERVATION_POINTS, _TYPE_DROP: _DROP_TEXT}
_MILLIS = tuple(f".{milli:03d}" for milli in range(1000))
# Distinct seconds in flight at once: a stream's events arrive within a few seconds of each other.
_STAMP_CACHE_SIZE = 1024
_STAMP_SECONDS: dict[int, str] = {}  # "Jan _2 15:04:05" by Unix second, "" out of range; bounded

UrlRewriter = Callable[[str], str]


def compact_summary(response: observer_pb2.GetFlowsResponse, rewrite_url: UrlRewriter | None = None) -> str:
    """The compact line for a flow, lost-events or node-status event ("" for anything else).

    `rewrite_url` (e.g. a bound `redact_url`) replaces the HTTP URL wherever it appears.
    """
    kind = response.WhichOneof("response_types")
    if kind == "flow":
        return flow_line(response.flow, response, rewrite_url)
    if kind == "lost_events":
        lost = response.lost_events
        source = enum_name(flow_pb2.LostEventSource, lost.source)
        return f"EVENTS LOST: {source} CPU({lost.cpu.value}) {lost.num_events_lost}"
    if kind == "node_status":
        return _node_status_line(response)
    return ""


def drop_reason_text(code: int) -> str:
    return _DROP_TEXT.get(code) or str(code)


def policy_match_text(match_type: int) -> str:
    return _POLICY_MATCH_TEXT[match_type] if match_type < len(_POLICY_MATCH_TEXT) else "unknown"


def stamp_milli(ts: Timestamp) -> str:
    """Go's time.StampMilli ("Jan _2 15:04:05.000") in UTC, truncated; "N/A" when out of range."""
    return _stamp(ts.seconds, ts.nanos)


def flow_type_text(flow: flow_pb2.Flow) -> str:
    """The TYPE column: "http-request", "to-endpoint", "Policy denied", "policy-verdict:L3-L4 EGRESS"..."""
    if flow.HasField("l7"):
        l7 = flow.l7
        return _l7_type_text(l7, l7.WhichOneof("record"))
    event_type = flow.event_type
    return _event_type_text(flow, event_type.type, event_type, flow.verdict)


def flow_line(
    flow: flow_pb2.Flow, response: observer_pb2.GetFlowsResponse, rewrite_url: UrlRewriter | None = None
) -> str:
    """`compact_summary` of a flow event, for a caller that has read `flow = response.flow` already.

    Reads each field once (every read of a protobuf field costs), in one function for the same reason.
    """
    ts = flow.time
    seconds, nanos = ts.seconds, ts.nanos
    if not (seconds or nanos) and not flow.HasField("time"):
        ts = response.time
        seconds, nanos = ts.seconds, ts.nanos
    source, destination = flow.source, flow.destination
    if flow.HasField("IP"):
        src_port = dst_port = 0
        l4 = flow.l4
        proto = l4.WhichOneof("protocol")
        if proto in _PORTED:
            ports = getattr(l4, proto)
            src_port, dst_port = ports.source_port, ports.destination_port
        ip = flow.IP
        src = _service_or_pod(source, flow.source_service if flow.HasField("source_service") else None)
        if not src:
            names = flow.source_names
            src = ",".join(names) if names else ip.source
        if src_port:
            src = f"[{src}]:{src_port}" if ":" in src else f"{src}:{src_port}"
        dst = _service_or_pod(
            destination, flow.destination_service if flow.HasField("destination_service") else None
        )
        if not dst:
            names = flow.destination_names
            dst = ",".join(names) if names else ip.destination
        if dst_port:
            dst = f"[{dst}]:{dst_port}" if ":" in dst else f"{dst}:{dst_port}"
    else:
        proto = None
        if flow.HasField("ethernet"):
            ethernet = flow.ethernet
            src, dst = ethernet.source, ethernet.destination
        else:
            src = dst = ""
    identity = source.identity
    src_id = _IDENTITY_TEXT.get(identity) or _identity(identity)
    identity = destination.identity
    dst_id = _IDENTITY_TEXT.get(identity) or _identity(identity)
    if not flow.HasField("is_reply"):
        pair = f"{src} {src_id} <> {dst} {dst_id}"  # direction unknown
    elif flow.is_reply.value:
        pair = f"{dst} {dst_id} <- {src} {src_id}"
    else:
        pair = f"{src} {src_id} -> {dst} {dst_id}"

    verdict = flow.verdict
    event_type = flow.event_type
    etype = event_type.type
    url = ""
    if flow.HasField("l7"):
        l7 = flow.l7
        record = l7.WhichOneof("record")
        type_text = _l7_type_text(l7, record)
        if rewrite_url is not None and record == "http":
            url = l7.http.url
    else:
        sub_type_texts = _SUB_TYPE_TEXT.get(etype)
        if sub_type_texts is not None:  # trace and drop events, most of them
            sub = event_type.sub_type
            type_text = sub_type_texts.get(sub) or str(sub)
        else:
            type_text = _event_type_text(flow, etype, event_type, verdict)
    verdict_names = _POLICY_VERDICT_TEXT if etype == _TYPE_POLICY_VERDICT else _VERDICT_TEXT
    verdict_text = verdict_names.get(verdict) or str(verdict)

    text = flow.Summary or _derived_summary(flow, proto)
    if url and rewrite_url is not None:
        text = text.replace(url, rewrite_url(url))
    if flow.HasField("ip_trace_id"):
        trace_id = flow.ip_trace_id.trace_id
        if trace_id:
            text = f"IP Trace ID: {trace_id}; {text}"
    auth_type = flow.auth_type
    if auth_type:
        text = f"{text}; {_AUTH_TYPE_TEXT.get(auth_type) or str(auth_type)}"
    return f"{_stamp(seconds, nanos)}: {pair} {type_text} {verdict_text} ({text})"


def _service_or_pod(endpoint: flow_pb2.Endpoint, service: flow_pb2.Service | None) -> str:
    """The pod or service name as Hubble prints it, "" when neither is known (names or IP then)."""
    pod = endpoint.pod_name
    if pod:
        namespace = service.namespace if service is not None else endpoint.namespace
        return f"{namespace}/{pod}" if namespace else pod
    if service is not None:
        name = service.name
        if name:
            namespace = service.namespace
            return f"{namespace}/{name}" if namespace else name
    return ""


def _l7_type_text(l7: flow_pb2.Layer7, record: str | None) -> str:
    l7_type = l7.type
    type_text = _L7_TYPE_LOWER.get(l7_type) or str(l7_type)
    if record == "dns":
        source = l7.dns.observation_source
        if source:
            type_text = f"{type_text} {source}"
    return f"{record or 'l7'}-{type_text}"


def _event_type_text(
    flow: flow_pb2.Flow, etype: int, event_type: flow_pb2.CiliumEventType, verdict: int
) -> str:
    sub_type_texts = _SUB_TYPE_TEXT.get(etype)
    if sub_type_texts is not None:
        sub = event_type.sub_type
        return sub_type_texts.get(sub) or str(sub)
    if etype == _TYPE_POLICY_VERDICT:
        match_type, direction = flow.policy_match_type, flow.traffic_direction
        text = _POLICY_VERDICT_TYPE_TEXT.get((match_type, direction))
        if text is None:
            direction_text = _DIRECTION_TEXT.get(direction) or str(direction)
            text = f"policy-verdict:{policy_match_text(match_type)} {direction_text}"
        return text
    if etype == _TYPE_CAPTURE:
        return enum_name(flow_pb2.DebugCapturePoint, flow.debug_capture_point)
    if etype == _TYPE_TRACE_SOCK:
        return _XLATE_TEXT.get(flow.sock_xlate_point, str(flow.sock_xlate_point))
    # Field-masked exporter output has no event_type: say what the remaining fields say.
    if verdict == flow_pb2.DROPPED:
        reason = flow.drop_reason_desc or flow.drop_reason
        if reason:
            return drop_reason_text(reason)
    point = flow.trace_observation_point
    if point:
        return enum_name(flow_pb2.TraceObservationPoint, point).lower().replace("_", "-")
    return "UNKNOWN"


def _identity(identity: int) -> str:
    """The identity column of a numeric identity that `_IDENTITY_TEXT` does not hold yet."""
    text = f"(ID:{identity})"
    if len(_IDENTITY_TEXT) < _IDENTITY_CACHE_SIZE:
        _IDENTITY_TEXT[identity] = text
    return text


def _stamp_seconds(seconds: int) -> str:
    """What _STAMP_SECONDS holds for `seconds`, made and kept."""
    try:
        t = _EPOCH + timedelta(seconds=seconds)
    except OverflowError:
        text = ""
    else:
        text = f"{_MONTHS[t.month - 1]} {t.day:>2} {t:%H:%M:%S}"
    if len(_STAMP_SECONDS) >= _STAMP_CACHE_SIZE:
        _STAMP_SECONDS.clear()
    _STAMP_SECONDS[seconds] = text
    return text


def _stamp(seconds: int, nanos: int) -> str:
    if not 0 <= nanos < 1_000_000_000:
        return "N/A"
    prefix = _STAMP_SECONDS.get(seconds)
    if prefix is None:
        prefix = _stamp_seconds(seconds)
    return prefix + _MILLIS[nanos // 1_000_000] if prefix else "N/A"


def _derived_summary(flow: flow_pb2.Flow, proto: str | None) -> str:
    l7 = flow.l7
    if l7.HasField("http"):
        http = l7.http
        if l7.type == flow_pb2.RESPONSE:
            return f"{http.protocol} {http.code} {l7.latency_ns // 1_000_000}ms ({http.method} {http.url})"
        return f"{http.protocol} {http.method} {http.url}"
    if l7.HasField("dns"):
        dns = l7.dns
        query = f"{dns.query} {','.join(dns.qtypes)}"
        if l7.type != flow_pb2.RESPONSE:
            return f"DNS Query {query}"
        ips = f'"{",".join(dns.ips)}"' if dns.ips else ""
        answer = f"RCode: {DNS_RCODE.get(dns.rcode, dns.rcode)}" if dns.rcode else ips
        return f"DNS Answer {answer} TTL: {dns.ttl} ({dns.observation_source.capitalize()} {query})"
    if proto is None:
        proto = flow.l4.WhichOneof("protocol")
    if proto == "TCP":
        flags = flow.l4.TCP.flags
        return "TCP Flags: " + ", ".join(name for name in _TCP_FLAG_ORDER if getattr(flags, name))
    if proto == "ICMPv4":
        return f"ICMPv4 {icmpv4_type(flow.l4.ICMPv4.type, flow.l4.ICMPv4.code)}"
    if proto == "ICMPv6":
        return f"ICMPv6 {icmpv6_type(flow.l4.ICMPv6.type, flow.l4.ICMPv6.code)}"
    return proto or ""


def _node_status_line(response: observer_pb2.GetFlowsResponse) -> str:
    status = response.node_status
    names = list(status.node_names)
    prefix = f"{stamp_milli(response.time)} [{response.node_name}]"
    joined = _join_with_cutoff(names)
    state = status.state_change
    if state == relay_pb2.NODE_CONNECTED:
        return f"{prefix}: Receiving flows from {len(names)} nodes: {joined}"
    if state == relay_pb2.NODE_UNAVAILABLE:
        return f"{prefix}: {len(names)} nodes are unavailable: {joined}"
    if state == relay_pb2.NODE_GONE:
        return f"{prefix}: {len(names)} nodes removed from cluster: {joined}"
    if state == relay_pb2.NODE_ERROR:
        # json.dumps quotes like Go's %q for everything but rare control characters.
        message = json.dumps(status.message, ensure_ascii=False)
        return f"{prefix}: Error {message} on {len(names)} nodes: {joined}"
    return f"{prefix}: unknown node status event: state {state} on {len(names)} nodes: {joined}"


def _join_with_cutoff(names: list[str]) -> str:
    """Join names, keeping the line short: always at least one, then "(and N more)"."""
    length, end = 0, len(names)
    for i, name in enumerate(names):
        length += len(name) + 2
        if length > _NODE_NAMES_CUTOFF and i > 0:
            end = i
            break
    joined = ", ".join(names[:end])
    return joined if end == len(names) else f"{joined} (and {len(names) - end} more)"


def enum_name(enum: Any, value: int) -> str:
    """The enum value's name, or the number (as Go prints it) for values newer than our protos."""
    found = enum.DESCRIPTOR.values_by_number.get(value)
    return found.name if found is not None else str(value)
