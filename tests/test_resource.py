"""Endpoint -> resource: the service.name fallback chain, k8s.* keys, cluster and node names."""

from __future__ import annotations

import pytest

from hubble_bridge.api import flow_pb2
from hubble_bridge.flows.codec import parse_json_line
from hubble_bridge.mapping.resource import endpoint_resource, split_node_name, workload_name
from tests.conftest import SHARED_FLOWS

NODE = "node-1"


def ep(**fields: object) -> flow_pb2.Endpoint:
    return flow_pb2.Endpoint(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("endpoint", "expected"),
    [
        (
            ep(
                pod_name="api-7d4-x",
                labels=["k8s:app=ignored"],
                workloads=[flow_pb2.Workload(name="api", kind="Deployment")],
            ),
            "api",
        ),
        (
            ep(pod_name="p", labels=["k8s:k8s-app=kdns", "k8s:app.kubernetes.io/name=named", "k8s:app=web"]),
            "web",
        ),
        (ep(pod_name="p", labels=["k8s:k8s-app=kdns", "k8s:app.kubernetes.io/name=named"]), "named"),
        (ep(pod_name="p", labels=["k8s:k8s-app=kube-dns"]), "kube-dns"),
        # The namespace's own k8s-app label is not the pod's.
        (ep(pod_name="coredns-1", labels=["k8s:io.cilium.k8s.namespace.labels.k8s-app=istio"]), "coredns-1"),
        (ep(labels=["reserved:world"]), "world"),
        (ep(labels=["reserved:host", "reserved:kube-apiserver"]), "host"),
        (ep(identity=0), "unknown"),
        (ep(labels=["k8s:app="]), "unknown"),  # an empty value names nothing
    ],
)
def test_service_name_fallback_chain(endpoint: flow_pb2.Endpoint, expected: str) -> None:
    assert workload_name(endpoint) == expected
    assert dict(endpoint_resource(endpoint, NODE))["service.name"] == expected


def test_kubernetes_attributes_and_workload_kinds() -> None:
    endpoint = ep(
        namespace="shop",
        pod_name="cart-0",
        workloads=[
            flow_pb2.Workload(name="cart", kind="StatefulSet"),
            flow_pb2.Workload(name="nightly", kind="CronJob"),
            flow_pb2.Workload(name="x", kind="Rollout"),  # no k8s.rollout.name in the conventions
        ],
    )
    assert dict(endpoint_resource(endpoint, "prod/node-7")) == {
        "service.name": "cart",
        "service.namespace": "shop",
        "k8s.namespace.name": "shop",
        "k8s.pod.name": "cart-0",
        "k8s.statefulset.name": "cart",
        "k8s.cronjob.name": "nightly",
        "k8s.node.name": "node-7",
        "k8s.cluster.name": "prod",
    }


@pytest.mark.parametrize(
    ("cluster_field", "node_name", "configured", "expected"),
    [
        ("east", "west/node-1", "conf", "east"),  # Endpoint.cluster_name wins
        ("", "west/node-1", "conf", "west"),  # then the "cluster/" prefix of the node name
        ("", "node-1", "conf", "conf"),  # then the configured name
        ("", "node-1", "", None),  # else no k8s.cluster.name at all
    ],
)
def test_cluster_name_precedence(
    cluster_field: str, node_name: str, configured: str, expected: str | None
) -> None:
    resource = dict(endpoint_resource(ep(cluster_name=cluster_field, pod_name="p"), node_name, configured))
    assert resource.get("k8s.cluster.name") == expected
    assert resource["k8s.node.name"] == "node-1"


def test_split_node_name() -> None:
    assert split_node_name("c/n") == ("c", "n")
    assert split_node_name("n") == ("", "n")
    assert split_node_name("") == ("", "")


def test_cache_returns_equal_resource_and_tells_endpoints_apart() -> None:
    a = ep(pod_name="a", namespace="ns", identity=5)
    first = endpoint_resource(a, NODE)
    assert endpoint_resource(ep(pod_name="a", namespace="ns", identity=5), NODE) is first
    assert dict(endpoint_resource(ep(pod_name="b", namespace="ns", identity=5), NODE))["k8s.pod.name"] == "b"
    # Same pod, labels changed (identity unknown): the key covers every field, not just ID/identity.
    relabelled = ep(pod_name="a", namespace="ns", identity=5, labels=["k8s:app=new"])
    assert dict(endpoint_resource(relabelled, NODE))["service.name"] == "new"
    assert dict(endpoint_resource(a, "other-node"))["k8s.node.name"] == "other-node"


def test_real_flow_endpoints() -> None:
    line = (SHARED_FLOWS / "gke-istio-http-348.jsonl").read_text().splitlines()[0]
    response = parse_json_line(line)
    assert response is not None
    flow = response.flow
    source = dict(endpoint_resource(flow.source, flow.node_name))
    assert source["service.name"] == "prometheus"  # from k8s:app=prometheus
    assert source["k8s.namespace.name"] == "istio-system"
    assert source["k8s.pod.name"] == "prometheus-6655946b9f-6xcpf"
    assert source["k8s.node.name"] == "gke-ilya-otel-demo-2-ilya-otel-demo-2-dac8cc20-hr0z"
    assert "k8s.cluster.name" not in source
    assert dict(endpoint_resource(flow.destination, flow.node_name))["service.name"] == "world"
