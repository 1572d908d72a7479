"""Kernel records -> Hubble flows (GetFlowsResponse), with the counters in a SidecarFlow extension.

Every flow is an L3_L4 trace event with verdict FORWARDED (the sidecar only
observes): XDP conversations at FROM_NETWORK, socket events at FROM_STACK.
Sources are oriented initiator -> responder, so is_reply is false wherever the
orientation is known, as in Hubble's flows for the first packet of a connection.
"""

from __future__ import annotations

import errno
import uuid
from collections.abc import Callable

from google.protobuf.wrappers_pb2 import BoolValue

from hubble_bridge.api import flow_pb2, observer_pb2, sidecar_pb2
from hubble_bridge.flows.codec import timestamp_from_ns
from hubble_bridge.mapping.metrics.names import DNS_RCODE
from hubble_bridge.mapping.redact import REDACTED, RedactConfig, redact_url
from hubble_bridge.sidecar import records as r
from hubble_bridge.sidecar.endpoints import EndpointResolver
from hubble_bridge.sidecar.orient import Conversation, Initiators, pair_samples

Ext = sidecar_pb2.SidecarFlow
EVENT_TRACE, FROM_STACK_SUBTYPE, FROM_NETWORK_SUBTYPE = 4, 8, 10  # monitor MessageType / Trace* constants
EVENT_ACCESS_LOG = 129  # monitor MessageTypeAccessLog: Hubble's L7 flows
DNS_OBSERVATION_SOURCE = "sidecar"
_FLAG_NAMES = (  # Hubble's order in "TCP Flags: ..." summaries
    (r.TCP_SYN, "SYN"),
    (r.TCP_FIN, "FIN"),
    (r.TCP_RST, "RST"),
    (r.TCP_PSH, "PSH"),
    (r.TCP_ACK, "ACK"),
    (r.TCP_URG, "URG"),
    (r.TCP_ECE, "ECE"),
    (r.TCP_CWR, "CWR"),
)
_ICMP_NAMES = {
    4: {0: "EchoReply", 3: "DestinationUnreachable", 8: "EchoRequest", 11: "TimeExceeded"},
    6: {
        1: "DestinationUnreachable",
        3: "TimeExceeded",
        128: "EchoRequest",
        129: "EchoReply",
        133: "RouterSolicitation",
        134: "RouterAdvertisement",
        135: "NeighborSolicitation",
        136: "NeighborAdvertisement",
    },
}
_ICMP_REPLIES = {(4, 0): True, (4, 8): False, (6, 129): True, (6, 128): False}


def ip_version(address: str) -> int:
    return 6 if ":" in address else 4


class FlowBuilder:
    """Builds the responses for one node; remembers conversation initiators across intervals."""

    def __init__(
        self,
        node_name: str,
        resolver: EndpointResolver,
        interface_name: Callable[[int], str],
        redact: RedactConfig | None = None,
    ) -> None:
        self.node_name = node_name
        self.redact = redact or RedactConfig()
        self.resolver = resolver
        self.interface_name = interface_name
        self.initiators = Initiators()

    def _response(self, flow: flow_pb2.Flow, ext: sidecar_pb2.SidecarFlow) -> observer_pb2.GetFlowsResponse:
        flow.extensions.Pack(ext)
        response = observer_pb2.GetFlowsResponse(flow=flow, node_name=self.node_name)
        response.time.CopyFrom(flow.time)
        return response

    def _flow(self, time_ns: int, source: str, destination: str, sub_type: int) -> flow_pb2.Flow:
        flow = flow_pb2.Flow(
            uuid=str(uuid.uuid4()),
            verdict=flow_pb2.FORWARDED,
            Type=flow_pb2.L3_L4,
            node_name=self.node_name,
        )
        flow.time.CopyFrom(timestamp_from_ns(time_ns))
        flow.IP.source = source
        flow.IP.destination = destination
        flow.IP.ipVersion = flow_pb2.IPv6 if ip_version(source) == 6 else flow_pb2.IPv4
        flow.event_type.type = EVENT_TRACE
        flow.event_type.sub_type = sub_type
        flow.trace_observation_point = (
            flow_pb2.FROM_NETWORK if sub_type == FROM_NETWORK_SUBTYPE else flow_pb2.FROM_STACK
        )
        src, dst = self.resolver.describe(source), self.resolver.describe(destination)
        flow.source.CopyFrom(src.endpoint)
        flow.destination.CopyFrom(dst.endpoint)
        if src.service is not None:
            flow.source_service.CopyFrom(src.service)
        if dst.service is not None:
            flow.destination_service.CopyFrom(dst.service)
        if dst.local and not src.local:
            flow.traffic_direction = flow_pb2.INGRESS
        elif src.local and not dst.local:
            flow.traffic_direction = flow_pb2.EGRESS
        return flow

    def xdp_flows(self, samples: list[r.XdpSample]) -> list[observer_pb2.GetFlowsResponse]:
        return [self._conversation(c) for c in pair_samples(samples, self.initiators)]

    def _conversation(self, conv: Conversation) -> observer_pb2.GetFlowsResponse:
        sample = conv.any
        forward, reverse = conv.forward, conv.reverse
        last = max(s.last_ns for s in (forward, reverse) if s is not None)
        first = min(s.first_ns for s in (forward, reverse) if s is not None)
        flow = self._flow(last, conv.source[0], conv.destination[0], FROM_NETWORK_SUBTYPE)
        flags = (forward.tcp_flags if forward else 0) | (reverse.tcp_flags if reverse else 0)
        summary = _set_l4(flow, sample.protocol, conv.source[1], conv.destination[1], flags)
        if sample.protocol in (r.IPPROTO_ICMP, r.IPPROTO_ICMPV6):
            reply = _ICMP_REPLIES.get((ip_version(sample.source), sample.source_port))
            if reply is not None:
                flow.is_reply.CopyFrom(BoolValue(value=reply))
        elif conv.known:
            flow.is_reply.CopyFrom(BoolValue(value=False))
        flow.interface.index = sample.ifindex
        flow.interface.name = self.interface_name(sample.ifindex)
        ext = Ext(event=Ext.EVENT_XDP)
        if forward is not None:
            ext.packets_sent, ext.bytes_sent = forward.packets, forward.bytes
        if reverse is not None:
            ext.packets_received, ext.bytes_received = reverse.packets, reverse.bytes
        ext.first_seen.CopyFrom(timestamp_from_ns(first))
        total_packets = ext.packets_sent + ext.packets_received
        total_bytes = ext.bytes_sent + ext.bytes_received
        flow.Summary = f"{summary} ({total_packets} packets, {total_bytes} bytes)"
        return self._response(flow, ext)

    def tcp_event_flow(self, event: r.TcpEvent) -> observer_pb2.GetFlowsResponse | None:
        local, remote = (event.local, event.local_port), (event.remote, event.remote_port)
        ext = Ext(process=Ext.Process(pid=event.pid, command=event.command))
        client_is_local = event.role != r.ROLE_SERVER
        flags = r.TCP_SYN
        verdict = flow_pb2.FORWARDED
        is_reply = False
        if event.kind == r.EV_CONNECT:
            ext.event, ext.connect_latency_ns = Ext.EVENT_TCP_CONNECT, event.latency_ns
            what = f"connect established in {event.latency_ns / 1e6:.3f} ms"
        elif event.kind == r.EV_ACCEPT:
            ext.event = Ext.EVENT_TCP_ACCEPT
            what = "connection accepted"
        elif event.kind == r.EV_CLOSE:
            ext.event, ext.duration_ns, ext.retransmits = (
                Ext.EVENT_TCP_CLOSE,
                event.duration_ns,
                event.retransmits,
            )
            flags = r.TCP_RST if event.reset else r.TCP_FIN
            closer_local = event.closed_by == r.CLOSED_BY_LOCAL or event.reset == r.RESET_SENT
            closer_remote = event.closed_by == r.CLOSED_BY_REMOTE or event.reset == r.RESET_RECEIVED
            if closer_local or closer_remote:
                by_client = closer_local == client_is_local
                ext.closed_by = Ext.SIDE_SOURCE if by_client else Ext.SIDE_DESTINATION
            what = f"connection {'reset' if event.reset else 'closed'} after {event.duration_ns / 1e9:.3f} s"
        elif event.kind == r.EV_CONNECT_FAILED:
            ext.event, ext.connect_latency_ns = Ext.EVENT_TCP_CONNECT_FAILED, event.latency_ns
            if event.reset:
                # As Hubble shows a refused connect: the server's RST, a reply to the client.
                flags, is_reply = r.TCP_RST, True
                what = "connect refused"
            else:
                what = "connect timed out or aborted"
        elif event.kind == r.EV_CONNECT_ERROR:
            ext.event, ext.error_number = Ext.EVENT_TCP_CONNECT_ERROR, event.error
            ext.error = errno.errorcode.get(event.error, str(event.error))
            verdict = flow_pb2.ERROR
            what = f"connect failed: {ext.error}"
        else:
            return None
        client, server = (local, remote) if client_is_local else (remote, local)
        if event.kind in (r.EV_CONNECT, r.EV_ACCEPT):
            self.initiators.learn(r.IPPROTO_TCP, client, server)
        source, destination = (server, client) if is_reply else (client, server)
        ext.process_side = Ext.SIDE_SOURCE if (source == local) else Ext.SIDE_DESTINATION
        flow = self._flow(event.time_ns, source[0], destination[0], FROM_STACK_SUBTYPE)
        flow.verdict = verdict
        # The socket knows which side it is; addresses alone cannot tell on loopback.
        flow.traffic_direction = flow_pb2.EGRESS if client_is_local else flow_pb2.INGRESS
        summary = _set_l4(flow, r.IPPROTO_TCP, source[1], destination[1], flags)
        flow.is_reply.CopyFrom(BoolValue(value=is_reply))
        flow.Summary = f"{summary} ({what}; {event.command}[{event.pid}])"
        return self._response(flow, ext)

    def retransmit_flows(self, samples: list[r.RetransmitSample]) -> list[observer_pb2.GetFlowsResponse]:
        responses = []
        for sample in samples:
            ext = Ext(event=Ext.EVENT_TCP_RETRANSMIT, retransmits=sample.count, process_side=Ext.SIDE_SOURCE)
            ext.process.pid, ext.process.command = sample.pid, sample.command
            flow = self._flow(sample.last_ns, sample.local, sample.remote, FROM_STACK_SUBTYPE)
            summary = _set_l4(flow, r.IPPROTO_TCP, sample.local_port, sample.remote_port, 0)
            server = sample.role == r.ROLE_SERVER
            flow.traffic_direction = flow_pb2.INGRESS if server else flow_pb2.EGRESS
            if sample.role:
                flow.is_reply.CopyFrom(BoolValue(value=server))
            flow.Summary = f"{summary} ({sample.count} retransmitted; {sample.command}[{sample.pid}])"
            responses.append(self._response(flow, ext))
        return responses

    def l7_flow(self, message: r.L7Message) -> observer_pb2.GetFlowsResponse:
        """A Hubble L7 flow as Cilium's proxy reports one (pkg/hubble/parser/seven): REQUEST from the
        client to the server, RESPONSE back with the latency since its request."""
        client, server = message.client, message.server
        source, destination = (server, client) if message.reply else (client, server)
        flow = self._flow(message.time_ns, source[0], destination[0], 0)
        flow.Type = flow_pb2.L7
        flow.event_type.type, flow.event_type.sub_type = EVENT_ACCESS_LOG, 0
        flow.trace_observation_point = flow_pb2.UNKNOWN_POINT
        if message.tls and message.process_is_client is not None:
            # Read inside one process: the flow is that process's view, as its own proxy would report it.
            flow.traffic_direction = flow_pb2.EGRESS if message.process_is_client else flow_pb2.INGRESS
        elif not flow.traffic_direction:
            # Both ends on this host (loopback): the flow is seen from the client, as a proxy on
            # the client's egress would report it.
            flow.traffic_direction = flow_pb2.EGRESS
        _set_l4(flow, message.protocol, source[1], destination[1], 0)
        flow.is_reply.CopyFrom(BoolValue(value=message.reply))
        if message.ifindex:
            flow.interface.index = message.ifindex
            flow.interface.name = self.interface_name(message.ifindex)
        l7 = flow.l7
        l7.type = flow_pb2.RESPONSE if message.reply else flow_pb2.REQUEST
        l7.latency_ns = message.latency_ns
        if message.dns is not None:
            flow.Summary = self._dns(l7.dns, message)
        elif message.http is not None:
            flow.Summary = self._http(l7.http, message)
        ext = Ext(event=Ext.EVENT_L7_TLS if message.tls else Ext.EVENT_L7)
        if message.pid:
            ext.process.pid, ext.process.command = message.pid, message.command
            is_client = message.process_is_client
            if is_client is None:
                is_client = flow.traffic_direction == flow_pb2.EGRESS
            # The client is the source of a request and the destination of a response.
            ext.process_side = Ext.SIDE_SOURCE if is_client != message.reply else Ext.SIDE_DESTINATION
        return self._response(flow, ext)

    def _dns(self, dns: flow_pb2.DNS, message: r.L7Message) -> str:
        """Fills l7.dns; returns Cilium's summary (seven/dns.go dnsSummary)."""
        parsed = message.dns
        assert parsed is not None
        dns.query = parsed.query
        dns.qtypes.extend(parsed.qtypes)
        dns.observation_source = DNS_OBSERVATION_SOURCE
        qtypes = ",".join(parsed.qtypes)
        if not message.reply:
            return f"DNS Query {parsed.query} {qtypes}"
        dns.ips.extend(parsed.ips)
        dns.ttl = parsed.ttl
        dns.cnames.extend(parsed.cnames)
        dns.rcode = parsed.rcode
        dns.rrtypes.extend(parsed.rrtypes)
        if parsed.rcode:
            answer = f"RCode: {DNS_RCODE.get(parsed.rcode, str(parsed.rcode))}"
        else:
            parts = []
            if parsed.ips:
                parts.append(f'"{",".join(parsed.ips)}"')
            if parsed.cnames:
                parts.append(f'CNAMEs: "{",".join(parsed.cnames)}"')
            answer = " ".join(parts)
        return f"DNS Answer {answer} TTL: {parsed.ttl} (Query {parsed.query} {qtypes})"

    def _http(self, http: flow_pb2.HTTP, message: r.L7Message) -> str:
        """Fills l7.http with the URL and headers redacted; returns Cilium's summary (seven/http.go)."""
        record = message.http
        assert record is not None
        http.method, http.protocol, http.code = record.method, record.protocol, record.code
        http.url = redact_url(absolute_url(record, message.server, message.tls), self.redact)
        kept, sensitive = self.redact._keep, self.redact._sensitive
        for key, value in record.headers or ():
            lower = key.lower()
            if lower in kept:  # the headers the bridge may read; no others leave the host
                http.headers.add(key=key, value=REDACTED if lower in sensitive else value)
        request = f"{http.method} {http.url}"
        if not message.reply:
            return f"{http.protocol} {request}"
        return f"{http.protocol} {http.code} {message.latency_ns // 1_000_000}ms ({request})"

    def lost_events(self, count: int, source: int, time_ns: int) -> observer_pb2.GetFlowsResponse:
        response = observer_pb2.GetFlowsResponse(node_name=self.node_name)
        response.time.CopyFrom(timestamp_from_ns(time_ns))
        response.lost_events.source = source
        response.lost_events.num_events_lost = count
        return response


def absolute_url(record: r.HttpRecord, server: tuple[str, int], tls: bool) -> str:
    """The request target as an absolute URL, as Cilium's proxy reports it: the Host header, else
    the server's address (without the scheme's default port)."""
    target = record.target
    if not target or "://" in target:
        return target
    scheme = "https" if tls else "http"
    host = record.host
    if not host:
        address, port = server
        if not address:
            return target
        host = f"[{address}]" if ":" in address else address
        if port and port != (443 if tls else 80):
            host = f"{host}:{port}"
    return f"{scheme}://{host}{target}"


def tcp_flag_names(flags: int) -> list[str]:
    return [name for bit, name in _FLAG_NAMES if flags & bit]


def _set_l4(flow: flow_pb2.Flow, protocol: int, source_port: int, destination_port: int, flags: int) -> str:
    """Fills flow.l4; returns Hubble's summary for it."""
    version = flow.IP.ipVersion
    if protocol == r.IPPROTO_TCP:
        tcp = flow.l4.TCP
        tcp.source_port, tcp.destination_port = source_port, destination_port
        tcp.flags.SetInParent()
        for name in tcp_flag_names(flags):
            setattr(tcp.flags, name, True)
        return "TCP Flags: " + ", ".join(tcp_flag_names(flags)) if flags else "TCP"
    if protocol == r.IPPROTO_UDP:
        flow.l4.UDP.source_port, flow.l4.UDP.destination_port = source_port, destination_port
        return "UDP"
    if protocol == r.IPPROTO_SCTP:
        flow.l4.SCTP.source_port, flow.l4.SCTP.destination_port = source_port, destination_port
        return "SCTP"
    if protocol in (r.IPPROTO_ICMP, r.IPPROTO_ICMPV6):
        icmp = flow.l4.ICMPv6 if version == flow_pb2.IPv6 else flow.l4.ICMPv4
        icmp.type, icmp.code = source_port, destination_port
        family = 6 if version == flow_pb2.IPv6 else 4
        name = _ICMP_NAMES[family].get(source_port, f"type {source_port}")
        return f"ICMPv{family} {name}"
    return f"IP protocol {protocol}"
