"""Endpoints for IPs seen by the sidecar: pods and services from Kubernetes, this host, the world.

Like Cilium: this host's own addresses carry "reserved:host"; without cluster
metadata every other address is "reserved:world". In a cluster, pod IPs on this
node get their pod's namespace, name, labels and workloads, ClusterIPs their
service; other addresses stay unlabelled (they may be pods on other nodes).
"""

from __future__ import annotations

import ipaddress
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from hubble_bridge.api import flow_pb2
from hubble_bridge.k8s.metadata import ClusterMetadata

HOST_LABELS = ("reserved:host",)
WORLD_LABELS = ("reserved:world",)
_LOCAL_REFRESH_S = 30.0


def local_addresses(
    fib_trie: Path = Path("/proc/net/fib_trie"), if_inet6: Path = Path("/proc/net/if_inet6")
) -> set[str]:
    """This network namespace's own IPv4 and IPv6 addresses."""
    found: set[str] = set()
    try:
        last = ""
        for line in fib_trie.read_text().splitlines():
            text = line.strip()
            if text.startswith("|--"):
                last = text[3:].strip()
            elif text.startswith("/32 host LOCAL") and last:
                found.add(last)
    except OSError:
        pass
    try:
        for line in if_inet6.read_text().splitlines():
            raw = line.split()[0] if line.split() else ""
            if len(raw) == 32:
                found.add(str(ipaddress.IPv6Address(bytes.fromhex(raw))))
    except (OSError, ValueError):
        pass
    return found


@dataclass
class Described:
    endpoint: flow_pb2.Endpoint
    service: flow_pb2.Service | None
    local: bool


@dataclass
class EndpointResolver:
    metadata: ClusterMetadata | None = None
    _local: set[str] = field(default_factory=set)
    _local_at: float = -_LOCAL_REFRESH_S
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def is_local(self, ip: str) -> bool:
        now = time.monotonic()
        with self._lock:
            if now - self._local_at >= _LOCAL_REFRESH_S:
                self._local = local_addresses()
                self._local_at = now
            local = self._local
        try:
            return ip in local or ipaddress.ip_address(ip).is_loopback
        except ValueError:
            return False

    def describe(self, ip: str) -> Described:
        endpoint = flow_pb2.Endpoint()
        service = None
        local = self.is_local(ip)
        pod = self.metadata.pod(ip) if self.metadata is not None else None
        if pod is not None:
            endpoint.namespace = pod.namespace
            endpoint.pod_name = pod.name
            endpoint.labels.extend(pod.labels)
            for name, kind in pod.workloads:
                endpoint.workloads.add(name=name, kind=kind)
        elif local:
            endpoint.labels.extend(HOST_LABELS)
        elif self.metadata is None:
            endpoint.labels.extend(WORLD_LABELS)
        if self.metadata is not None:
            found = self.metadata.service(ip)
            if found is not None:
                service = flow_pb2.Service(name=found.name, namespace=found.namespace)
        return Described(endpoint, service, local)
