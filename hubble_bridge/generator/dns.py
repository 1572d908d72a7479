"""DNS lookups through Cilium's DNS proxy: a REQUEST and a RESPONSE at the client's node.

Queries keep the trailing dot. Answers for cluster services come from kube-dns
with TTL 30; external names get CNAMEs now and then; search-path expansions of
external names come back NXDOMAIN; a few lookups of an unreachable internal zone
fail with SERVFAIL. Like Hubble, DNS flows carry no latency_ns (only HTTP has it).
"""

from __future__ import annotations

from hubble_bridge.api import flow_pb2
from hubble_bridge.generator.kit import (
    ACCESS_LOG,
    IS_REPLY,
    NOT_REPLY,
    D,
    Event,
    Kit,
    V,
    address,
    event_type,
    ip,
)

# Hubble's DNS responses without answer records report the largest TTL (MaxUint32).
NO_ANSWER_TTL = 4294967295
_RCODE_NAMES = {2: "Server Failure", 3: "Non-Existent Domain"}
_CLIENTS = (
    "frontend",
    "catalog",
    "cart",
    "checkout",
    "payments",
    "order-worker",
    "prometheus",
    "otel-collector",
)
_SERVICES = ("catalog", "cart", "checkout", "payments", "redis", "kafka", "postgres", "otel-collector")
_NAMESPACES = ("shop", "svc.cluster.local", "cluster.local", "eu-west-1.compute.internal")
# kind and cumulative share: ~10% NXDOMAIN, ~1.5% SERVFAIL
_KINDS = (
    ("service-a", 0.56),
    ("service-aaaa", 0.64),
    ("external-a", 0.84),
    ("external-aaaa", 0.885),
    ("nxdomain", 0.985),
    ("servfail", 1.0),
)


def _answer(kit: Kit, client_ns: str) -> tuple[str, str, int, list[str], list[str], int]:
    """query, qtype, rcode, ips, cnames, ttl"""
    rng = kit.rng
    r = rng.random()
    kind = next(k for k, share in _KINDS if r < share)
    if kind.startswith("service"):
        wl = kit.wl[rng.choice(_SERVICES)]
        if kind == "service-a":
            return wl.dns_name, "A", 0, [wl.cluster_ipv4], [], 30
        return wl.dns_name, "AAAA", 0, [wl.cluster_ipv6], [], 30
    host = rng.choice(kit.world)
    name = host.names[0]
    if kind == "nxdomain":
        suffix = rng.choice(_NAMESPACES)
        suffix = f"{client_ns}.svc.cluster.local" if suffix == "shop" else suffix
        return f"{name}.{suffix}.", rng.choice(("A", "AAAA")), 3, [], [], NO_ANSWER_TTL
    if kind == "servfail":
        return f"vault.corp-{rng.randint(1, 3)}.internal.", "A", 2, [], [], NO_ANSWER_TTL
    cnames = (
        [f"{name.split('.')[0]}.edge-{rng.randint(1, 9)}.cdn-provider.net."] if rng.random() < 0.3 else []
    )
    ttl = rng.choice((20, 60, 60, 120, 300))
    if kind == "external-a":
        return f"{name}.", "A", 0, [host.ipv4], cnames, ttl
    return f"{name}.", "AAAA", 0, [host.ipv6] if host.ipv6 else [], cnames if host.ipv6 else [], ttl


def _summary(query: str, qtype: str, rcode: int, ips: list[str], cnames: list[str], ttl: int) -> str:
    if rcode:
        answer = f"RCode: {_RCODE_NAMES[rcode]}"
    else:
        parts = [f'"{",".join(ips)}"'] if ips else []
        if cnames:
            parts.append(f'CNAMEs: "{",".join(cnames)}"')
        answer = " ".join(parts)
    return f"DNS Answer {answer} TTL: {ttl} (Proxy {query} {qtype})"


def dns_lookup(kit: Kit) -> list[Event]:
    rng = kit.rng
    client = kit.pod(rng.choice(_CLIENTS))
    server = kit.pod("coredns")
    node = client.node
    assert node is not None and client.workload is not None
    query, qtype, rcode, ips, cnames, ttl = _answer(kit, client.workload.namespace)
    v6 = kit.use_v6(client, server, 0.15)
    src_ip, dst_ip = address(client, v6), address(server, v6)
    sport = kit.port()
    src_ep, dst_ep = client.endpoint_on(node), server.endpoint_on(node)
    common = {
        "verdict": V.FORWARDED,
        "Type": flow_pb2.L7,
        "event_type": event_type(ACCESS_LOG),
        "traffic_direction": D.EGRESS,
    }
    request = kit.event(
        node,
        IP=ip(src_ip, dst_ip, v6),
        l4=flow_pb2.Layer4(UDP=flow_pb2.UDP(source_port=sport, destination_port=53)),
        source=src_ep,
        destination=dst_ep,
        l7=flow_pb2.Layer7(
            type=flow_pb2.REQUEST,
            dns=flow_pb2.DNS(query=query, observation_source="proxy", qtypes=[qtype]),
        ),
        is_reply=NOT_REPLY,
        destination_service=server.workload.service if server.workload else None,
        Summary=f"DNS Query {query} {qtype}",
        **common,
    )
    rrtypes = (["CNAME"] * len(cnames)) + [qtype] * len(ips)
    response = kit.event(
        node,
        IP=ip(dst_ip, src_ip, v6),
        l4=flow_pb2.Layer4(UDP=flow_pb2.UDP(source_port=53, destination_port=sport)),
        source=dst_ep,
        destination=src_ep,
        l7=flow_pb2.Layer7(
            type=flow_pb2.RESPONSE,
            dns=flow_pb2.DNS(
                query=query,
                ips=ips,
                ttl=ttl,
                cnames=cnames,
                observation_source="proxy",
                rcode=rcode,
                qtypes=[qtype],
                rrtypes=rrtypes,
            ),
        ),
        is_reply=IS_REPLY,
        source_service=server.workload.service if server.workload else None,
        Summary=_summary(query, qtype, rcode, ips, cnames, ttl),
        **common,
    )
    forwarded = not query.endswith(".local.")  # kube-dns asks the upstream resolver
    delay = kit.latency(12.0 if forwarded else 0.6, 0.7, 2000.0)
    return [(0, request), (delay, response)]
