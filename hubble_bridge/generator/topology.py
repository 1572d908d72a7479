"""The simulated cluster: nodes, workloads and their pods, services, world hosts and policies.

The shape (which workloads exist, who talks to whom) is fixed; names, addresses,
identities and endpoint IDs vary with the seed. Every addressable party is a
`Peer` carrying the Endpoint messages Hubble would print for it, so scenarios
never assemble labels or workloads per flow.
"""

from __future__ import annotations

import ipaddress
import random
from dataclasses import dataclass, field

from hubble_bridge.api import flow_pb2

CLUSTER = "prod-eu1"
REGION = "eu-west-1"
# Kubernetes' rand.SafeEncodeString alphabet: pod-template hashes and pod suffixes use it.
_SAFE = "bcdfghjklmnpqrstvwxz2456789"

# name, namespace, kind, replicas, port, HTTP protocol ("" when the port is not proxied HTTP)
_WORKLOADS = (
    ("ingress-nginx-controller", "ingress-nginx", "Deployment", 2, 443, ""),
    ("frontend", "shop", "Deployment", 3, 8080, "HTTP/1.1"),
    ("catalog", "shop", "Deployment", 2, 8080, "HTTP/2"),
    ("cart", "shop", "Deployment", 2, 8080, "HTTP/2"),
    ("checkout", "shop", "Deployment", 2, 8080, "HTTP/1.1"),
    ("payments", "shop", "Deployment", 2, 8080, "HTTP/1.1"),
    ("order-worker", "shop", "Deployment", 2, 0, ""),
    ("redis", "shop", "StatefulSet", 1, 6379, ""),
    ("kafka", "data", "StatefulSet", 3, 9092, ""),
    ("postgres", "data", "StatefulSet", 2, 5432, ""),
    ("coredns", "kube-system", "Deployment", 2, 53, ""),
    ("prometheus", "monitoring", "StatefulSet", 1, 9090, "HTTP/1.1"),
    ("otel-collector", "monitoring", "DaemonSet", 0, 4317, ""),
)
# Services whose name differs from the workload's.
_SERVICE_NAMES = {"coredns": "kube-dns", "ingress-nginx-controller": "ingress-nginx-controller"}

_WORLD_HOSTS = (
    ("api.stripe.com", True),
    ("hooks.slack.com", False),
    ("sts.eu-west-1.amazonaws.com", True),
    ("objects.githubusercontent.com", True),
    ("o450123.ingest.sentry.io", False),
)

WORLD_ENDPOINT = flow_pb2.Endpoint(identity=2, labels=["reserved:world"])


@dataclass(eq=False, slots=True)
class Node:
    name: str  # "prod-eu1/node-a": Hubble prefixes the cluster name
    short: str
    index: int
    ipv4: str
    ipv6: str
    mac: str
    labels: list[str]
    host: Peer | None = None
    health: Peer | None = None


@dataclass(eq=False, slots=True)
class Peer:
    """One address owner: a pod, a node's host or health endpoint, or a world host."""

    ipv4: str
    ipv6: str  # "" when the peer has no IPv6 address
    node: Node | None  # None for the world
    local: flow_pb2.Endpoint  # as its own node reports it (with the endpoint ID)
    remote: flow_pb2.Endpoint  # as any other node reports it
    mac: str = ""
    workload: Workload | None = None
    names: tuple[str, ...] = ()  # DNS names, for world hosts

    def endpoint_on(self, node: Node) -> flow_pb2.Endpoint:
        return self.local if node is self.node else self.remote


@dataclass(eq=False, slots=True)
class Workload:
    name: str
    namespace: str
    kind: str
    port: int
    protocol: str
    identity: int
    service: flow_pb2.Service | None
    cluster_ipv4: str = ""
    cluster_ipv6: str = ""
    pods: list[Peer] = field(default_factory=list)

    @property
    def host(self) -> str:
        """The host part of in-cluster URLs: "checkout.shop"."""
        return f"{self.service.name}.{self.namespace}" if self.service else self.name

    @property
    def dns_name(self) -> str:
        return f"{self.host}.svc.cluster.local."


@dataclass(eq=False, slots=True)
class Topology:
    nodes: list[Node]
    workloads: dict[str, Workload]
    world: list[Peer]
    policies: dict[str, flow_pb2.Policy]


def _mac(rng: random.Random) -> str:
    octets = [rng.randrange(256) for _ in range(6)]
    octets[0] = (octets[0] & 0xFC) | 0x02  # locally administered unicast, like veth/lxc devices
    return ":".join(f"{o:02x}" for o in octets)


def _v6(text: str) -> str:
    """The canonical text form, as Go's net/netip prints it (fd00:10:244:0::5 -> fd00:10:244::5)."""
    return str(ipaddress.IPv6Address(text))


def _safe(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(_SAFE) for _ in range(n))


def _labels(name: str, namespace: str) -> list[str]:
    app = "k8s:k8s-app=kube-dns" if name == "coredns" else f"k8s:app={name}"
    return sorted(
        [
            app,
            f"k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name={namespace}",
            f"k8s:io.cilium.k8s.policy.cluster={CLUSTER}",
            f"k8s:io.cilium.k8s.policy.serviceaccount={name}",
            f"k8s:io.kubernetes.pod.namespace={namespace}",
        ]
    )


def _policy(rng: random.Random, name: str, namespace: str, kind: str) -> flow_pb2.Policy:
    uid = f"{rng.getrandbits(128):032x}"
    labels = [
        f"k8s:io.cilium.k8s.policy.derived-from={kind}",
        f"k8s:io.cilium.k8s.policy.name={name}",
        f"k8s:io.cilium.k8s.policy.uid={uid[:8]}-{uid[8:12]}-{uid[12:16]}-{uid[16:20]}-{uid[20:]}",
    ]
    if namespace:
        labels.append(f"k8s:io.cilium.k8s.policy.namespace={namespace}")
    return flow_pb2.Policy(
        name=name, namespace=namespace, labels=sorted(labels), revision=rng.randint(40, 900), kind=kind
    )


def _nodes(rng: random.Random) -> list[Node]:
    nodes = []
    for i in range(rng.randint(3, 5)):
        short = f"node-{'abcde'[i]}"
        zone = f"{REGION}{'abc'[i % 3]}"
        labels = [
            "kubernetes.io/arch=amd64",
            f"kubernetes.io/hostname={short}",
            "kubernetes.io/os=linux",
            "node.kubernetes.io/instance-type=m6i.2xlarge",
            f"topology.kubernetes.io/region={REGION}",
            f"topology.kubernetes.io/zone={zone}",
        ]
        ipv4, ipv6 = f"10.20.{i}.{rng.randint(10, 250)}", _v6(f"fd00:10:20:{i}::{rng.randint(16, 4000):x}")
        node = Node(f"{CLUSTER}/{short}", short, i, ipv4, ipv6, _mac(rng), labels)
        host = flow_pb2.Endpoint(ID=rng.randint(100, 4000), identity=1, labels=["reserved:host"])
        remote = flow_pb2.Endpoint(identity=6, labels=["reserved:remote-node"])
        node.host = Peer(node.ipv4, node.ipv6, node, host, remote, node.mac)
        health_remote = flow_pb2.Endpoint(identity=4, labels=["reserved:health"])
        health = flow_pb2.Endpoint(ID=rng.randint(100, 4000), identity=4, labels=["reserved:health"])
        v4, v6 = f"10.244.{i}.{rng.randint(2, 30)}", _v6(f"fd00:10:244:{i}::{rng.randint(2, 48):x}")
        node.health = Peer(v4, v6, node, health, health_remote, _mac(rng))
        nodes.append(node)
    return nodes


def build_topology(rng: random.Random) -> Topology:
    nodes = _nodes(rng)
    used_ids: set[tuple[int, int]] = set()
    used_hosts: set[tuple[int, int]] = set()
    identities = rng.sample(range(10000, 65000), len(_WORKLOADS))
    workloads: dict[str, Workload] = {}
    for (name, ns, kind, replicas, port, proto), identity in zip(_WORKLOADS, identities, strict=True):
        service = flow_pb2.Service(name=_SERVICE_NAMES.get(name, name), namespace=ns) if port else None
        wl = Workload(name, ns, kind, port, proto, identity, service)
        if service is not None:
            wl.cluster_ipv4 = f"10.96.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
            wl.cluster_ipv6 = _v6(f"fd00:10:96::{rng.randint(16, 65535):x}")
        labels = _labels(name, ns)
        template_hash = _safe(rng, 10)
        placements = nodes if kind == "DaemonSet" else [rng.choice(nodes) for _ in range(replicas)]
        for ordinal, node in enumerate(placements):
            if kind == "StatefulSet":
                pod_name = f"{name}-{ordinal}"
            elif kind == "DaemonSet":
                pod_name = f"{name}-{_safe(rng, 5)}"
            else:
                pod_name = f"{name}-{template_hash}-{_safe(rng, 5)}"
            ep_id = rng.randint(50, 4095)
            while (node.index, ep_id) in used_ids:
                ep_id = rng.randint(50, 4095)
            used_ids.add((node.index, ep_id))
            host_part = rng.randint(31, 254)
            while (node.index, host_part) in used_hosts:
                host_part = rng.randint(31, 254)
            used_hosts.add((node.index, host_part))
            remote = flow_pb2.Endpoint(
                identity=identity,
                cluster_name=CLUSTER,
                namespace=ns,
                labels=labels,
                pod_name=pod_name,
                workloads=[flow_pb2.Workload(name=name, kind=kind)],
            )
            local = flow_pb2.Endpoint(ID=ep_id)
            local.MergeFrom(remote)
            ipv4 = f"10.244.{node.index}.{host_part}"
            ipv6 = _v6(f"fd00:10:244:{node.index}::{host_part:x}")
            wl.pods.append(Peer(ipv4, ipv6, node, local, remote, _mac(rng), wl))
        workloads[name] = wl

    world = []
    for host, has_v6 in _WORLD_HOSTS:
        first = rng.choice((3, 18, 34, 52, 54, 104, 151, 185))
        ipv4 = f"{first}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
        ipv6 = _v6(
            f"2600:1f18:{rng.randint(0, 0xFFFF):x}:{rng.randint(0, 0xFFFF):x}::{rng.randint(1, 0xFFF):x}"
        )
        world.append(Peer(ipv4, ipv6 if has_v6 else "", None, WORLD_ENDPOINT, WORLD_ENDPOINT, names=(host,)))

    cnp, ccnp = "CiliumNetworkPolicy", "CiliumClusterwideNetworkPolicy"
    policies = {
        "shop": _policy(rng, "shop-ingress", "shop", cnp),
        "shop-egress": _policy(rng, "shop-egress", "shop", cnp),
        "data": _policy(rng, "data-ingress", "data", cnp),
        "ingress-nginx": _policy(rng, "allow-from-world", "ingress-nginx", cnp),
        "kube-system": _policy(rng, "allow-kube-dns", "", ccnp),
        "monitoring": _policy(rng, "allow-prometheus-scrape", "", ccnp),
        "fqdn": _policy(rng, "payments-egress-fqdn", "shop", cnp),
        "deny-worker": _policy(rng, "deny-order-worker-to-payments", "shop", cnp),
        "deny-metadata": _policy(rng, "deny-cloud-metadata", "", ccnp),
        "netpol": _policy(rng, "postgres-clients", "data", "NetworkPolicy"),
    }
    return Topology(nodes, workloads, world, policies)
