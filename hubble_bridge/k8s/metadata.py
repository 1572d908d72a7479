"""Pod and service metadata from the Kubernetes API, indexed by IP, for endpoints Hubble-style.

Inside a cluster (a service account token and KUBERNETES_SERVICE_HOST), the
pods on this node and every service are listed periodically; each pod IP maps
to its namespace, name, labels ("k8s:key=value", as Cilium writes them) and
workloads, each ClusterIP to its service. Outside a cluster there is no
metadata and nothing is listed.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hubble_bridge.errors import BridgeError

log = logging.getLogger(__name__)
SERVICE_ACCOUNT_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")
# A ReplicaSet created by a Deployment is named "<deployment>-<pod-template-hash>".
_HASH_SUFFIX = re.compile(r"-[a-z0-9]{5,10}$")


@dataclass(frozen=True)
class PodInfo:
    namespace: str
    name: str
    labels: tuple[str, ...]
    workloads: tuple[tuple[str, str], ...]  # (name, kind)


@dataclass(frozen=True)
class ServiceInfo:
    namespace: str
    name: str


def in_cluster() -> bool:
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and SERVICE_ACCOUNT_TOKEN.is_file()


def pod_labels(namespace: str, labels: dict[str, str] | None) -> tuple[str, ...]:
    """Cilium's endpoint labels for a pod: its own, plus the namespace label Cilium adds."""
    own = [f"k8s:{key}={value}" for key, value in sorted((labels or {}).items())]
    return (*own, f"k8s:io.kubernetes.pod.namespace={namespace}")


def pod_workloads(owners: Iterable[Any] | None, labels: dict[str, str] | None) -> tuple[tuple[str, str], ...]:
    """The controllers owning a pod; a Deployment's ReplicaSet is reported as the Deployment."""
    workloads = []
    template_hash = (labels or {}).get("pod-template-hash", "")
    for owner in owners or ():
        if not getattr(owner, "controller", False):
            continue
        name, kind = owner.name, owner.kind
        if kind == "ReplicaSet" and (
            (template_hash and name.endswith("-" + template_hash))
            or (not template_hash and _HASH_SUFFIX.search(name))
        ):
            name, kind = name.rsplit("-", 1)[0], "Deployment"
        workloads.append((name, kind))
    return tuple(workloads)


def index_pods(pods: Iterable[Any]) -> dict[str, PodInfo]:
    """Pod IP -> PodInfo for running pods with their own IPs (host-network pods share the node's)."""
    index: dict[str, PodInfo] = {}
    for pod in pods:
        spec, status, meta = pod.spec, pod.status, pod.metadata
        if status is None or (spec is not None and spec.host_network):
            continue
        if status.phase in ("Succeeded", "Failed"):
            continue
        info = PodInfo(
            meta.namespace,
            meta.name,
            pod_labels(meta.namespace, meta.labels),
            pod_workloads(meta.owner_references, meta.labels),
        )
        ips = [entry.ip for entry in _field(status, "pod_ips", "pod_i_ps")] or [status.pod_ip]
        for ip in ips:
            if ip:
                index[ip] = info
    return index


def index_services(services: Iterable[Any]) -> dict[str, ServiceInfo]:
    """ClusterIP (every family) -> ServiceInfo; headless services have none."""
    index: dict[str, ServiceInfo] = {}
    for service in services:
        spec = service.spec
        if spec is None:
            continue
        info = ServiceInfo(service.metadata.namespace, service.metadata.name)
        for ip in _field(spec, "cluster_ips", "cluster_i_ps") or [spec.cluster_ip]:
            if ip and ip != "None":
                index[ip] = info
    return index


def _field(model: Any, name: str, legacy: str) -> list[Any]:
    # kubernetes-client 37 renamed pod_i_ps / cluster_i_ps to pod_ips / cluster_ips.
    return list(getattr(model, name, None) or getattr(model, legacy, None) or ())


class ClusterMetadata:
    """Pods on `node_name` and all services, listed again every `refresh_s` seconds in the background."""

    def __init__(self, node_name: str, *, refresh_s: float = 30.0, api: Any = None) -> None:
        self.node_name = node_name
        self._refresh_s = refresh_s
        self._api = api
        self._pods: dict[str, PodInfo] = {}
        self._services: dict[str, ServiceInfo] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def from_cluster(cls, node_name: str, refresh_s: float = 30.0) -> ClusterMetadata:
        from kubernetes import client, config

        try:
            config.load_incluster_config()
        except config.ConfigException as exc:
            raise BridgeError(f"kubernetes: in-cluster configuration unusable: {exc}") from None
        return cls(node_name, refresh_s=refresh_s, api=client.CoreV1Api())

    def refresh(self) -> None:
        selector = f"spec.nodeName={self.node_name}"
        pods = self._api.list_pod_for_all_namespaces(field_selector=selector, _request_timeout=30)
        services = self._api.list_service_for_all_namespaces(_request_timeout=30)
        # Swapped whole: readers on other threads see the old index or the new one.
        self._pods = index_pods(pods.items)
        self._services = index_services(services.items)

    def start(self) -> None:
        """First listing now (errors are logged, not raised), then periodically."""
        self._refresh_logged()
        self._thread = threading.Thread(target=self._loop, name="k8s-metadata", daemon=True)
        self._thread.start()

    def _refresh_logged(self) -> None:
        try:
            self.refresh()
        except Exception as exc:  # the API may be briefly away; keep the last good index
            log.warning("kubernetes: listing pods and services failed: %s", exc)

    def _loop(self) -> None:
        while not self._stop.wait(self._refresh_s):
            self._refresh_logged()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def pod(self, ip: str) -> PodInfo | None:
        return self._pods.get(ip)

    def service(self, ip: str) -> ServiceInfo | None:
        return self._services.get(ip)
