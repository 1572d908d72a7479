"""L3/L4 scenarios: TCP connections, DNS packets to the proxy, ICMP probes, NDP, socket LB.

A TCP connection is a packet script (SYN, SYN-ACK, ACK, data, FIN or RST) in
which every packet is traced where the datapath would see it; its first packet
also gets policy verdicts at both ends when a policy selects them.
"""

from __future__ import annotations

import zlib

from hubble_bridge.api import flow_pb2
from hubble_bridge.generator.kit import TRACE_SOCK, Event, Kit, P, R, V, event_type, ip
from hubble_bridge.generator.packets import Conn, packet, path, policy_verdict, trace
from hubble_bridge.generator.topology import WORLD_ENDPOINT, Peer

# client, server, port, weight: "@name" is a world host, "@client" an Internet user,
# "@kubelet" the server node's host, "@health" the cilium-health endpoints.
_TCP_EDGES = (
    ("cart", "redis", 6379, 5),
    ("catalog", "postgres", 5432, 5),
    ("checkout", "postgres", 5432, 2),
    ("order-worker", "postgres", 5432, 3),
    ("payments", "@api.stripe.com", 443, 3),
    ("checkout", "@hooks.slack.com", 443, 1),
    ("frontend", "@o450123.ingest.sentry.io", 443, 1),
    ("otel-collector", "@sts.eu-west-1.amazonaws.com", 443, 1),
    ("otel-collector", "@objects.githubusercontent.com", 443, 1),
    ("@client", "ingress-nginx-controller", 443, 6),
    ("@kubelet", "frontend", 8080, 1),
    ("@kubelet", "checkout", 8080, 1),
    ("prometheus", "otel-collector", 8888, 2),
    ("@health", "@health", 4240, 2),
)
_TCP_WEIGHTS = [e[-1] for e in _TCP_EDGES]
# Ingress policy per server namespace, with Hubble's policy_match_type (2 L3-L4, 3 L4-only).
_INGRESS = {"shop": ("shop", 2), "data": ("data", 2), "ingress-nginx": ("ingress-nginx", 3)}


def _peer(kit: Kit, spec: str, other: Peer | None = None) -> Peer:
    rng = kit.rng
    if spec == "@client":
        user = (
            f"{rng.choice((31, 46, 77, 89, 91, 176, 185, 212))}.{rng.randint(0, 255)}.{rng.randint(0, 255)}"
        )
        return Peer(f"{user}.{rng.randint(1, 254)}", "", None, WORLD_ENDPOINT, WORLD_ENDPOINT)
    if spec.startswith("@"):
        return next(h for h in kit.world if h.names[0] == spec[1:])
    return kit.pod(spec)


def _endpoints(kit: Kit) -> tuple[Peer, Peer, int]:
    client_spec, server_spec, port, _ = kit.rng.choices(_TCP_EDGES, weights=_TCP_WEIGHTS)[0]
    if client_spec == "@health":
        a, b = kit.rng.sample(kit.nodes, 2)
        assert a.health is not None and b.health is not None
        return a.health, b.health, port
    server = _peer(kit, server_spec)
    if client_spec == "@kubelet":
        assert server.node is not None and server.node.host is not None
        return server.node.host, server, port
    return _peer(kit, client_spec), server, port


def _script(kit: Kit, work: int) -> list[tuple[bool, str, int, int]]:
    """(forward, flags, trace reason, pause before sending) per packet."""
    rng = kit.rng
    tiny = rng.randint(5_000, 60_000)
    if rng.random() < 0.04:  # nothing listens: the server resets
        return [(True, "SYN", R.NEW, 0), (False, "RST-ACK", R.REPLY, tiny)]
    steps = [(True, "SYN", R.NEW, 0), (False, "SYN-ACK", R.REPLY, tiny), (True, "ACK", R.ESTABLISHED, tiny)]
    if rng.random() < 0.7:
        steps += [(True, "PSH-ACK", R.ESTABLISHED, tiny), (False, "PSH-ACK", R.REPLY, work)]
    end = rng.random()
    idle = kit.latency(40.0, 1.5, 4000.0)
    if end < 0.8:
        steps += [(True, "FIN-ACK", R.ESTABLISHED, idle), (False, "FIN-ACK", R.REPLY, tiny)]
        steps.append((True, "ACK", R.ESTABLISHED, tiny))
    elif end < 0.92:
        steps.append((rng.random() < 0.5, "RST", R.ESTABLISHED, idle))
    return steps  # otherwise the connection stays open past the end of this scenario


def tcp_connection(kit: Kit) -> list[Event]:
    rng = kit.rng
    client, server, port = _endpoints(kit)
    conn = Conn(client, server, kit.use_v6(client, server, 0.15), kit.port(), port)
    events: list[Event] = []
    if client.workload is not None and client.node is not None and client.workload.namespace == "shop":
        policy = kit.topology.policies["fqdn" if server.node is None else "shop-egress"]
        # After the FROM_ENDPOINT trace of the SYN, which the datapath emits before egress policy.
        events.append((1_000, policy_verdict(kit, conn, False, V.FORWARDED, 2, policy)))
    one_way = kit.hop(client.node, server.node)
    if server.workload is not None and server.node is not None:
        arrive = one_way - 3_000
        if server.workload.namespace == "monitoring":  # that namespace runs in policy audit mode
            events.append((arrive, policy_verdict(kit, conn, True, V.AUDIT, 0)))
        elif server.workload.namespace in _INGRESS:
            key, match = _INGRESS[server.workload.namespace]
            key = "netpol" if server.workload.name == "postgres" and rng.random() < 0.5 else key
            policy = kit.topology.policies[key]
            events.append((arrive, policy_verdict(kit, conn, True, V.FORWARDED, match, policy)))
    t = 0
    for forward, flags, reason, pause in _script(kit, kit.latency(3.0, 1.0)):
        t += pause
        src, dst = (client, server) if forward else (server, client)
        for node, point, offset in path(kit, src, dst, one_way):
            events.append((t + offset, trace(kit, node, conn, forward, point, reason, flags)))
        t += one_way
    return events


def dns_packets(kit: Kit) -> list[Event]:
    """The UDP packets behind a DNS lookup: to the node's DNS proxy and the proxied answer back."""
    rng = kit.rng
    client = kit.pod(rng.choice(("frontend", "catalog", "cart", "checkout", "payments", "order-worker")))
    server = kit.pod("coredns")
    node = client.node
    assert node is not None
    conn = Conn(client, server, kit.use_v6(client, server, 0.15), kit.port(), 53, udp=True)
    back = kit.latency(0.8, 0.7, 500.0)
    return [
        (0, trace(kit, node, conn, True, P.FROM_ENDPOINT, R.NEW)),
        (4_000, trace(kit, node, conn, True, P.TO_PROXY, R.NEW)),
        (back, trace(kit, node, conn, False, P.TO_ENDPOINT, R.REPLY)),
    ]


def icmp_probe(kit: Kit) -> list[Event]:
    """cilium-health's echo probe between the health endpoints of two nodes."""
    rng = kit.rng
    a, b = rng.sample(kit.nodes, 2)
    assert a.health is not None and b.health is not None
    conn = Conn(a.health, b.health, rng.random() < 0.3, 0, 0)
    family = flow_pb2.Layer4
    if conn.v6:
        request = (family(ICMPv6=flow_pb2.ICMPv6(type=128)), "ICMPv6 EchoRequest")
        reply = (family(ICMPv6=flow_pb2.ICMPv6(type=129)), "ICMPv6 EchoReply")
    else:
        request = (family(ICMPv4=flow_pb2.ICMPv4(type=8)), "ICMPv4 EchoRequest")
        reply = (family(ICMPv4=flow_pb2.ICMPv4()), "ICMPv4 EchoReply")
    one_way = kit.hop(a, b)
    return [
        (0, trace(kit, a, conn, True, P.FROM_ENDPOINT, R.NEW, layer4=request)),
        (one_way, trace(kit, b, conn, True, P.TO_ENDPOINT, R.NEW, layer4=request)),
        (one_way + 20_000, trace(kit, b, conn, False, P.FROM_ENDPOINT, R.REPLY, layer4=reply)),
        (2 * one_way + 20_000, trace(kit, a, conn, False, P.TO_ENDPOINT, R.REPLY, layer4=reply)),
    ]


def neighbor_solicitation(kit: Kit) -> list[Event]:
    """A pod resolving its gateway over IPv6 NDP; Cilium answers it, so it is traced once."""
    rng = kit.rng
    pod = kit.pod(rng.choice(tuple(kit.wl)))
    node = pod.node
    assert node is not None
    target = rng.getrandbits(24)
    link_local = "fe80::" + pod.mac.replace(":", "")[4:8] + ":" + pod.mac.replace(":", "")[8:12]
    multicast = f"ff02::1:ff{target >> 16:02x}:{target & 0xFFFF:x}"
    conn = Conn(pod, Peer("", "", None, flow_pb2.Endpoint(), flow_pb2.Endpoint()), True, 0, 0)
    layer4 = (flow_pb2.Layer4(ICMPv6=flow_pb2.ICMPv6(type=135)), "ICMPv6 NeighborSolicitation")
    event = trace(kit, node, conn, True, P.FROM_ENDPOINT, R.TRACE_REASON_UNKNOWN, layer4=layer4)
    event.flow.IP.CopyFrom(ip(link_local, multicast, True))
    return [(0, event)]


def socket_translation(kit: Kit) -> list[Event]:
    """Socket-level load balancing: connect() to a ClusterIP, rewritten to a backend pod."""
    rng = kit.rng
    client_wl, server_wl = rng.choice(
        (("frontend", "catalog"), ("frontend", "cart"), ("checkout", "payments"), ("cart", "redis"))
    )
    client, server = kit.pod(client_wl), kit.pod(server_wl)
    node, wl = client.node, server.workload
    assert node is not None and wl is not None and wl.service is not None
    v6 = kit.use_v6(client, server, 0.15)
    src_ip = client.ipv6 if v6 else client.ipv4
    frontend = wl.cluster_ipv6 if v6 else wl.cluster_ipv4
    l4 = flow_pb2.Layer4(TCP=flow_pb2.TCP(destination_port=wl.port))  # connect() has no source port yet
    # cgroup v2 ids are inode numbers: stable per pod, small.
    cgroup, cookie = 4000 + (zlib.crc32(client.local.pod_name.encode()) & 0x3FFF), rng.randint(8192, 1 << 22)
    events = []
    for point, verdict, dst_ip, dst in (
        (flow_pb2.SOCK_XLATE_POINT_PRE_DIRECTION_FWD, V.TRACED, frontend, None),
        (
            flow_pb2.SOCK_XLATE_POINT_POST_DIRECTION_FWD,
            V.TRANSLATED,
            server.ipv6 if v6 else server.ipv4,
            server,
        ),
    ):
        conn = Conn(client, dst or Peer("", "", None, WORLD_ENDPOINT, WORLD_ENDPOINT), v6, 0, wl.port)
        event = packet(
            kit,
            node,
            conn,
            True,
            l4,
            "TCP",
            IP=ip(src_ip, dst_ip, v6),
            verdict=verdict,
            event_type=event_type(TRACE_SOCK, point),
            sock_xlate_point=point,
            socket_cookie=cookie,
            cgroup_id=cgroup,
        )
        event.flow.ClearField("ethernet")
        event.flow.Type = flow_pb2.SOCK
        if dst is None:
            event.flow.destination_service.CopyFrom(wl.service)
        else:
            event.flow.ClearField("destination_service")
        events.append((0 if dst is None else 2_000, event))
    return events
