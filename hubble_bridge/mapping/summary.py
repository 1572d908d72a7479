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

UrlRewriter = Callable[[str], str]


def compact_summary(response: observer_pb2.GetFlowsResponse, rewrite_url: UrlRewriter | None = None) -> str:
    """The compact line for a flow, lost-events or node-status event ("" for anything else).

    `rewrite_url` (e.g. a bound `redact_url`) replaces the HTTP URL wherever it appears.
    """
    kind = response.WhichOneof("response_types")
    if kind == "flow":
        return _flow_line(response, rewrite_url)
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
    if not 0 <= ts.nanos < 1_000_000_000:
        return "N/A"
    try:
        t = _EPOCH + timedelta(seconds=ts.seconds)
    except OverflowError:
        return "N/A"
    return f"{_MONTHS[t.month - 1]} {t.day:>2} {t:%H:%M:%S}.{ts.nanos // 1_000_000:03d}"


def flow_type_text(flow: flow_pb2.Flow) -> str:
    """The TYPE column: "http-request", "to-endpoint", "Policy denied", "policy-verdict:L3-L4 EGRESS"..."""
    if flow.HasField("l7"):
        l7 = flow.l7
        l7_type = enum_name(flow_pb2.L7FlowType, l7.type).lower()
        record = l7.WhichOneof("record")
        if record == "dns" and l7.dns.observation_source:
            l7_type += " " + l7.dns.observation_source
        return f"{record or 'l7'}-{l7_type}"
    etype, sub = flow.event_type.type, flow.event_type.sub_type
    if etype == _TYPE_TRACE:
        return TRACE_OBSERVATION_POINTS.get(sub) or str(sub)
    if etype == _TYPE_DROP:
        return drop_reason_text(sub)
    if etype == _TYPE_POLICY_VERDICT:
        direction = enum_name(flow_pb2.TrafficDirection, flow.traffic_direction)
        return f"policy-verdict:{policy_match_text(flow.policy_match_type)} {direction}"
    if etype == _TYPE_CAPTURE:
        return enum_name(flow_pb2.DebugCapturePoint, flow.debug_capture_point)
    if etype == _TYPE_TRACE_SOCK:
        return _XLATE_TEXT.get(flow.sock_xlate_point, str(flow.sock_xlate_point))
    # Field-masked exporter output has no event_type: say what the remaining fields say.
    reason = flow.drop_reason_desc or flow.drop_reason
    if flow.verdict == flow_pb2.DROPPED and reason:
        return drop_reason_text(reason)
    if flow.trace_observation_point:
        return (
            enum_name(flow_pb2.TraceObservationPoint, flow.trace_observation_point).lower().replace("_", "-")
        )
    return "UNKNOWN"


def _flow_line(response: observer_pb2.GetFlowsResponse, rewrite_url: UrlRewriter | None) -> str:
    flow = response.flow
    ts = flow.time if flow.HasField("time") else response.time
    src, dst = _hostnames(flow)
    src_id, dst_id = _identity(flow.source.identity), _identity(flow.destination.identity)
    arrow = "->"
    if not flow.HasField("is_reply"):
        arrow = "<>"  # direction unknown
    elif flow.is_reply.value:
        src, dst, src_id, dst_id, arrow = dst, src, dst_id, src_id, "<-"
    return (
        f"{stamp_milli(ts)}: {src} {src_id} {arrow} {dst} {dst_id} "
        f"{flow_type_text(flow)} {_verdict_text(flow)} ({_summary(flow, rewrite_url)})"
    )


def _hostnames(flow: flow_pb2.Flow) -> tuple[str, str]:
    if not flow.HasField("IP"):
        if flow.HasField("ethernet"):
            return flow.ethernet.source, flow.ethernet.destination
        return "", ""
    src_port, dst_port = _ports(flow.l4)
    src_svc = flow.source_service if flow.HasField("source_service") else None
    dst_svc = flow.destination_service if flow.HasField("destination_service") else None
    return (
        _hostname(flow.IP.source, src_port, flow.source, src_svc, flow.source_names),
        _hostname(flow.IP.destination, dst_port, flow.destination, dst_svc, flow.destination_names),
    )


def _hostname(
    ip: str, port: int, ep: flow_pb2.Endpoint, svc: flow_pb2.Service | None, names: list[str]
) -> str:
    namespace = svc.namespace if svc is not None else ep.namespace
    if ep.pod_name:
        host = f"{namespace}/{ep.pod_name}" if namespace else ep.pod_name
    elif svc is not None and svc.name:
        host = f"{namespace}/{svc.name}" if namespace else svc.name
    elif names:
        host = ",".join(names)
    else:
        host = ip
    if not port:
        return host
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _ports(l4: flow_pb2.Layer4) -> tuple[int, int]:
    proto = l4.WhichOneof("protocol")
    if proto in ("TCP", "UDP", "SCTP"):
        msg = getattr(l4, proto)
        return msg.source_port, msg.destination_port
    return 0, 0


def _identity(identity: int) -> str:
    if identity < len(_RESERVED_IDENTITIES):
        return f"({_RESERVED_IDENTITIES[identity]})"
    return f"(ID:{identity})"


def _verdict_text(flow: flow_pb2.Flow) -> str:
    verdict = flow.verdict
    if flow.event_type.type == _TYPE_POLICY_VERDICT:
        if verdict in (flow_pb2.FORWARDED, flow_pb2.REDIRECTED):
            return "ALLOWED"
        if verdict in (flow_pb2.DROPPED, flow_pb2.ERROR):
            return "DENIED"
        if verdict == flow_pb2.AUDIT:
            return "AUDITED"
    return enum_name(flow_pb2.Verdict, verdict)


def _summary(flow: flow_pb2.Flow, rewrite_url: UrlRewriter | None) -> str:
    text = flow.Summary or _derived_summary(flow)
    url = flow.l7.http.url
    if rewrite_url is not None and url:
        text = text.replace(url, rewrite_url(url))
    if flow.ip_trace_id.trace_id:
        text = f"IP Trace ID: {flow.ip_trace_id.trace_id}; {text}"
    if flow.auth_type:
        text = f"{text}; {enum_name(flow_pb2.AuthType, flow.auth_type)}"
    return text


def _derived_summary(flow: flow_pb2.Flow) -> str:
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
