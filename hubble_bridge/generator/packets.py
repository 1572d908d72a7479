"""L3/L4 events for one connection: datapath traces, policy verdicts and drops.

A `Conn` fixes the two peers, the address family and the ports; builders turn
one packet of it, observed at one node, into the event Hubble would print there.
Directions follow Hubble: EGRESS when the endpoint reporting the packet opened
the connection, INGRESS otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

from hubble_bridge.api import flow_pb2, observer_pb2
from hubble_bridge.generator.kit import (
    DROP,
    IS_REPLY,
    NOT_REPLY,
    POLICY_VERDICT,
    TCP_FLAGS,
    D,
    Kit,
    P,
    R,
    V,
    address,
    event_type,
    ip,
    is_endpoint_on,
    trace_event_type,
)
from hubble_bridge.generator.topology import Node, Peer

_NETWORK_IFACE = flow_pb2.NetworkInterface(index=2, name="ens5")
_OVERLAY_IFACE = flow_pb2.NetworkInterface(index=5, name="cilium_vxlan")
_IFACES = {
    P.FROM_NETWORK: _NETWORK_IFACE,
    P.TO_NETWORK: _NETWORK_IFACE,
    P.FROM_OVERLAY: _OVERLAY_IFACE,
    P.TO_OVERLAY: _OVERLAY_IFACE,
}
# Points on the sending side of a packet; the others are on the receiving side.
_SENDER_SIDE = frozenset({P.FROM_ENDPOINT, P.TO_OVERLAY, P.TO_NETWORK, P.TO_STACK, P.TO_PROXY, P.TO_HOST})
# Datapath source files and lines that drops point at (Flow.file, v1.17+).
DROP_FILES = {
    flow_pb2.POLICY_DENIED: ("bpf_lxc.c", 2166),
    flow_pb2.POLICY_DENY: ("bpf_lxc.c", 2166),
    flow_pb2.CT_MAP_INSERTION_FAILED: ("bpf_lxc.c", 1410),
    flow_pb2.STALE_OR_UNROUTABLE_IP: ("bpf_lxc.c", 1625),
    flow_pb2.SERVICE_BACKEND_NOT_FOUND: ("bpf_lxc.c", 1003),
    flow_pb2.INVALID_SOURCE_IP: ("bpf_host.c", 862),
}


@dataclass(slots=True)
class Conn:
    client: Peer
    server: Peer
    v6: bool
    sport: int
    dport: int
    udp: bool = False

    def addresses(self, forward: bool) -> tuple[str, str]:
        client_ip = address(self.client, self.v6)
        server_ip = address(self.server, self.v6)
        return (client_ip, server_ip) if forward else (server_ip, client_ip)

    def l4(self, forward: bool, flags: str = "") -> tuple[flow_pb2.Layer4, str]:
        sport, dport = (self.sport, self.dport) if forward else (self.dport, self.sport)
        if self.udp:
            return flow_pb2.Layer4(UDP=flow_pb2.UDP(source_port=sport, destination_port=dport)), "UDP"
        tcp_flags, summary = TCP_FLAGS[flags]
        tcp = flow_pb2.TCP(source_port=sport, destination_port=dport, flags=tcp_flags)
        return flow_pb2.Layer4(TCP=tcp), summary

    def node_of(self, ingress: bool) -> Node:
        """Where a policy is enforced: the server's node for ingress, the client's for egress."""
        node = self.server.node if ingress else self.client.node
        assert node is not None, "policy is enforced only on cluster nodes"
        return node


def packet(
    kit: Kit, node: Node, conn: Conn, forward: bool, l4: flow_pb2.Layer4, summary: str, **fields: object
) -> observer_pb2.GetFlowsResponse:
    src, dst = (conn.client, conn.server) if forward else (conn.server, conn.client)
    src_ip, dst_ip = conn.addresses(forward)
    ethernet = flow_pb2.Ethernet(
        source=src.mac if src.node is node and src.mac else node.mac,
        destination=dst.mac if dst.node is node and dst.mac else node.mac,
    )
    service = src.workload.service if not forward and src.workload else None
    dst_service = dst.workload.service if forward and dst.workload else None
    return kit.event(
        node,
        ethernet=ethernet,
        IP=fields.pop("IP", None) or ip(src_ip, dst_ip, conn.v6),
        l4=l4,
        source=src.endpoint_on(node),
        destination=dst.endpoint_on(node),
        Type=flow_pb2.L3_L4,
        source_names=src.names,
        destination_names=dst.names,
        source_service=service,
        destination_service=dst_service,
        Summary=summary,
        **fields,
    )


def trace(
    kit: Kit,
    node: Node,
    conn: Conn,
    forward: bool,
    point: int,
    reason: int,
    flags: str = "",
    layer4: tuple[flow_pb2.Layer4, str] | None = None,
) -> observer_pb2.GetFlowsResponse:
    """A forwarded packet at one observation point; `layer4` overrides the Conn's (ICMP)."""
    l4, summary = layer4 or conn.l4(forward, flags)
    extra: dict[str, object] = {}
    iface = _IFACES.get(point)
    if iface is not None:
        extra["interface"] = iface
    if point == P.TO_NETWORK and conn.server.node is None and forward:
        src_ip, dst_ip = conn.addresses(True)
        masquerade = node.ipv6 if conn.v6 else node.ipv4
        extra["IP"] = ip(src_ip, dst_ip, conn.v6, source_xlated=masquerade)
    return packet(
        kit,
        node,
        conn,
        forward,
        l4,
        summary,
        verdict=V.FORWARDED,
        event_type=trace_event_type(point),
        trace_observation_point=point,
        trace_reason=reason,
        # Without a conntrack reason Hubble cannot tell replies apart and leaves is_reply unset.
        is_reply=IS_REPLY if reason == R.REPLY else (NOT_REPLY if reason else None),
        traffic_direction=_direction(conn, forward, point) if reason else D.TRAFFIC_DIRECTION_UNKNOWN,
        **extra,
    )


def _direction(conn: Conn, forward: bool, point: int) -> int:
    """Hubble's rule: EGRESS when the endpoint that reports the packet opened the connection."""
    sender, receiver = (conn.client, conn.server) if forward else (conn.server, conn.client)
    reporter = sender if point in _SENDER_SIDE else receiver
    return D.EGRESS if reporter is conn.client and reporter.local.identity != 1 else D.INGRESS


def path(kit: Kit, src: Peer, dst: Peer, one_way: int) -> list[tuple[Node, int, int]]:
    """Where one packet from src to dst is observed: (node, observation point, offset)."""
    rng = kit.rng
    seen: list[tuple[Node, int, int]] = []
    if src.node is not None and is_endpoint_on(src, src.node):
        seen.append((src.node, P.FROM_ENDPOINT, 0))
    if src.node is not dst.node:
        if src.node is not None and rng.random() < 0.35:
            seen.append((src.node, P.TO_OVERLAY if dst.node else P.TO_NETWORK, 6_000))
        if dst.node is not None and rng.random() < 0.35:
            seen.append((dst.node, P.FROM_OVERLAY if src.node else P.FROM_NETWORK, one_way - 6_000))
    if dst.node is not None and is_endpoint_on(dst, dst.node):
        seen.append((dst.node, P.TO_ENDPOINT, one_way))
    return seen


def policy_verdict(
    kit: Kit,
    conn: Conn,
    ingress: bool,
    verdict: int,
    match_type: int,
    policy: flow_pb2.Policy | None = None,
    drop_reason: int = 0,
) -> observer_pb2.GetFlowsResponse:
    """The verdict on a connection's first packet, at the server (ingress) or the client (egress)."""
    l4, summary = conn.l4(True, "SYN")
    lists: dict[str, object] = {}
    if policy is not None:
        side = "ingress" if ingress else "egress"
        lists[f"{side}_{'denied' if drop_reason else 'allowed'}_by"] = [policy]
    return packet(
        kit,
        conn.node_of(ingress),
        conn,
        True,
        l4,
        summary,
        verdict=verdict,
        drop_reason=drop_reason,
        drop_reason_desc=drop_reason,
        event_type=event_type(POLICY_VERDICT),
        traffic_direction=D.INGRESS if ingress else D.EGRESS,
        policy_match_type=match_type,
        is_reply=None if verdict == V.DROPPED else NOT_REPLY,  # Hubble cannot tell for drops
        **lists,
    )


def drop(kit: Kit, conn: Conn, reason: int, ingress: bool = False) -> observer_pb2.GetFlowsResponse:
    """A connection's SYN dropped at the server's node (ingress) or the client's (egress)."""
    l4, summary = conn.l4(True, "SYN")
    name, line = DROP_FILES.get(reason, ("bpf_lxc.c", 1200))
    return packet(
        kit,
        conn.node_of(ingress),
        conn,
        True,
        l4,
        summary,
        verdict=V.DROPPED,
        drop_reason=reason,
        drop_reason_desc=reason,
        event_type=event_type(DROP, reason),
        traffic_direction=D.INGRESS if ingress else D.EGRESS,
        file=flow_pb2.FileInfo(name=name, line=line),
    )
