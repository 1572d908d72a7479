"""Denied connections and the datapath's other drops.

A denied connection retransmits its SYN (after 1 s, then 2 s more) and every
attempt is dropped again: a policy verdict DROPPED plus a drop event at the node
that enforces the policy. Ingress denials leave the client's egress trace.
"""

from __future__ import annotations

from hubble_bridge.api import flow_pb2, observer_pb2
from hubble_bridge.generator.kit import DROP, Event, Kit, P, R, V, event_type, ip
from hubble_bridge.generator.packets import Conn, drop, packet, policy_verdict, trace
from hubble_bridge.generator.topology import WORLD_ENDPOINT, Node, Peer

_RETRANSMITS = (0, 1_000_000_000, 3_000_000_000)
_METADATA = Peer("169.254.169.254", "", None, WORLD_ENDPOINT, WORLD_ENDPOINT)


def denied_connection(kit: Kit) -> list[Event]:
    rng = kit.rng
    policies = kit.topology.policies
    r = rng.random()
    if r < 0.4:  # an explicit ingress deny rule
        client, server, port = kit.pod("order-worker"), kit.pod("payments"), 8080
        reason, deny = flow_pb2.POLICY_DENY, policies["deny-worker"]
    elif r < 0.7:  # nothing allows frontend into the database
        client, server, port = kit.pod("frontend"), kit.pod("postgres"), 5432
        reason, deny = flow_pb2.POLICY_DENIED, None
    else:  # an explicit egress deny: the cloud metadata service
        client = kit.pod(rng.choice(("frontend", "checkout", "payments", "otel-collector")))
        server, port = _METADATA, 80
        reason, deny = flow_pb2.POLICY_DENY, policies["deny-metadata"]
    conn = Conn(client, server, False, kit.port(), port)
    client_node = client.node
    assert client_node is not None
    events: list[Event] = []
    one_way = kit.hop(client_node, server.node)
    for attempt, at in enumerate(_RETRANSMITS[: rng.randint(1, 3)]):
        # The datapath traces the packet as it leaves the pod, then applies egress policy.
        events.append((at, trace(kit, client_node, conn, True, P.FROM_ENDPOINT, R.NEW, "SYN")))
        if server.node is None:
            events.append((at + 1_000, policy_verdict(kit, conn, False, V.DROPPED, 1, deny, reason)))
            events.append((at + 2_000, drop(kit, conn, reason)))
            continue
        if attempt == 0 and client.workload is not None and client.workload.namespace == "shop":
            verdict = policy_verdict(kit, conn, False, V.FORWARDED, 2, policies["shop-egress"])
            events.append((at + 1_000, verdict))
        match = 1 if deny is not None else 0
        events.append((at + one_way, policy_verdict(kit, conn, True, V.DROPPED, match, deny, reason)))
        events.append((at + one_way + 1_000, drop(kit, conn, reason, ingress=True)))
    return events


def datapath_drop(kit: Kit) -> list[Event]:
    rng = kit.rng
    r = rng.random()
    client = kit.pod(rng.choice(("frontend", "catalog", "cart", "checkout", "order-worker")))
    node = client.node
    assert node is not None
    if r < 0.2:
        return [(0, _router_solicitation(kit, rng.choice(kit.nodes)))]
    if r < 0.5:  # conntrack table full during a connection burst
        server = kit.pod(rng.choice(("catalog", "cart", "redis", "postgres")))
        assert server.workload is not None
        conn = Conn(client, server, kit.use_v6(client, server, 0.15), kit.port(), server.workload.port)
        return [(0, drop(kit, conn, flow_pb2.CT_MAP_INSERTION_FAILED))]
    if r < 0.75:  # a cached address of a pod whose node is gone
        stale = f"10.244.{len(kit.nodes) + rng.randint(1, 3)}.{rng.randint(31, 254)}"
        conn = Conn(client, Peer(stale, "", None, WORLD_ENDPOINT, WORLD_ENDPOINT), False, kit.port(), 8080)
        return [(0, drop(kit, conn, flow_pb2.STALE_OR_UNROUTABLE_IP))]
    # a Service whose backends are all gone
    cluster_ip = f"10.96.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
    conn = Conn(client, Peer(cluster_ip, "", None, WORLD_ENDPOINT, WORLD_ENDPOINT), False, kit.port(), 8080)
    event = drop(kit, conn, flow_pb2.SERVICE_BACKEND_NOT_FOUND)
    event.flow.destination_service.CopyFrom(flow_pb2.Service(name="recommendations", namespace="shop"))
    return [(0, event)]


def _router_solicitation(kit: Kit, node: Node) -> observer_pb2.GetFlowsResponse:
    """An IPv6 router solicitation from a link-local address the host does not accept."""
    groups = ":".join(f"{kit.rng.getrandbits(16):x}" for _ in range(4))
    source = f"fe80::{groups}"
    nobody = Peer("", "", None, flow_pb2.Endpoint(), flow_pb2.Endpoint())
    conn = Conn(nobody, nobody, True, 0, 0)
    l4 = flow_pb2.Layer4(ICMPv6=flow_pb2.ICMPv6(type=133))
    reason = flow_pb2.INVALID_SOURCE_IP
    event = packet(
        kit,
        node,
        conn,
        True,
        l4,
        "ICMPv6 RouterSolicitation",
        IP=ip(source, "ff02::2", True),
        verdict=V.DROPPED,
        drop_reason=reason,
        drop_reason_desc=reason,
        event_type=event_type(DROP, reason),
        file=flow_pb2.FileInfo(name="bpf_host.c", line=862),
    )
    # ff02::2 is all-routers, whose multicast MAC is 33:33:00:00:00:02; the sender is some VM or pod.
    event.flow.ethernet.source = "0e:" + ":".join(f"{kit.rng.randrange(256):02x}" for _ in range(5))
    event.flow.ethernet.destination = "33:33:00:00:00:02"
    return event
