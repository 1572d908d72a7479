"""Kubernetes metadata for sidecar endpoints, from the client's own model objects.

No real Kubernetes API server can run here, so the API is a stand-in (FakeCoreApi) that answers the
two list calls with the `kubernetes` client's real model objects, as the API server would.
"""

from __future__ import annotations

from typing import Any

from kubernetes.client import (
    V1ObjectMeta,
    V1OwnerReference,
    V1Pod,
    V1PodIP,
    V1PodList,
    V1PodSpec,
    V1PodStatus,
    V1Service,
    V1ServiceList,
    V1ServiceSpec,
)

from hubble_bridge.k8s.metadata import ClusterMetadata, index_pods, index_services, pod_workloads
from hubble_bridge.sidecar.endpoints import EndpointResolver


def owner(kind: str, name: str) -> V1OwnerReference:
    return V1OwnerReference(api_version="apps/v1", kind=kind, name=name, uid="u", controller=True)


def pod(
    name: str,
    ips: list[str],
    *,
    labels: dict[str, str] | None = None,
    owners: list[Any] | None = None,
    host_network: bool = False,
    phase: str = "Running",
) -> V1Pod:
    return V1Pod(
        metadata=V1ObjectMeta(name=name, namespace="shop", labels=labels, owner_references=owners),
        spec=V1PodSpec(containers=[], host_network=host_network, node_name="node-1"),
        status=V1PodStatus(
            phase=phase, pod_ip=ips[0] if ips else None, pod_ips=[V1PodIP(ip=ip) for ip in ips]
        ),
    )


def service(name: str, cluster_ips: list[str]) -> V1Service:
    return V1Service(
        metadata=V1ObjectMeta(name=name, namespace="shop"),
        spec=V1ServiceSpec(cluster_ip=cluster_ips[0], cluster_ips=cluster_ips),
    )


PODS = [
    pod(
        "cart-7d9f8b6c5-x2x4z",
        ["10.0.1.5", "fd00::5"],
        labels={"app": "cart", "pod-template-hash": "7d9f8b6c5"},
        owners=[owner("ReplicaSet", "cart-7d9f8b6c5")],
    ),
    pod("redis-0", ["10.0.1.6"], owners=[owner("StatefulSet", "redis")]),
    pod("node-exporter", ["192.0.2.1"], host_network=True),
    pod("job-abc", ["10.0.1.7"], phase="Succeeded"),
]
SERVICES = [service("cart", ["10.96.0.10", "fd00:96::10"]), service("headless", ["None"])]


def test_pods_are_indexed_by_every_ip_with_cilium_labels_and_workloads() -> None:
    index = index_pods(PODS)
    assert sorted(index) == ["10.0.1.5", "10.0.1.6", "fd00::5"]
    cart = index["fd00::5"]
    assert (cart.namespace, cart.name) == ("shop", "cart-7d9f8b6c5-x2x4z")
    assert cart.labels == (
        "k8s:app=cart",
        "k8s:pod-template-hash=7d9f8b6c5",
        "k8s:io.kubernetes.pod.namespace=shop",
    )
    assert cart.workloads == (("cart", "Deployment"),)
    assert index["10.0.1.6"].workloads == (("redis", "StatefulSet"),)


def test_replicasets_without_a_deployment_hash_stay_replicasets() -> None:
    assert pod_workloads([owner("ReplicaSet", "standalone")], {}) == (("standalone", "ReplicaSet"),)


def test_services_by_cluster_ip_and_headless_ones_skipped() -> None:
    index = index_services(SERVICES)
    assert sorted(index) == ["10.96.0.10", "fd00:96::10"]
    assert (index["10.96.0.10"].namespace, index["10.96.0.10"].name) == ("shop", "cart")


class FakeCoreApi:
    """A stand-in for the API server (none can run here): the two list calls ClusterMetadata makes."""

    def __init__(self) -> None:
        self.selectors: list[str] = []

    def list_pod_for_all_namespaces(self, field_selector: str, _request_timeout: int) -> V1PodList:
        self.selectors.append(field_selector)
        return V1PodList(items=PODS)

    def list_service_for_all_namespaces(self, _request_timeout: int) -> V1ServiceList:
        return V1ServiceList(items=SERVICES)


def test_endpoints_get_pod_and_service_metadata_in_a_cluster() -> None:
    api = FakeCoreApi()
    metadata = ClusterMetadata("node-1", api=api)
    metadata.refresh()
    assert api.selectors == ["spec.nodeName=node-1"]
    resolver = EndpointResolver(metadata)
    cart = resolver.describe("10.0.1.5")
    assert (cart.endpoint.namespace, cart.endpoint.pod_name) == ("shop", "cart-7d9f8b6c5-x2x4z")
    assert [(w.name, w.kind) for w in cart.endpoint.workloads] == [("cart", "Deployment")]
    svc = resolver.describe("10.96.0.10")
    assert svc.service is not None and (svc.service.namespace, svc.service.name) == ("shop", "cart")
    # In a cluster an unknown address may be a pod elsewhere: no "reserved:world" guess.
    assert list(resolver.describe("10.0.9.9").endpoint.labels) == []
    assert list(resolver.describe("127.0.0.1").endpoint.labels) == ["reserved:host"]
