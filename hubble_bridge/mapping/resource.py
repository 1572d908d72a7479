"""Hubble endpoints to OpenTelemetry resources (service.name, k8s.*).

service.name falls back along one chain, shared with `workload_name`:

1. the first workload's name (Endpoint.workloads, Cilium >= 1.11),
2. the `app`, then `app.kubernetes.io/name`, then `k8s-app` label (any label source),
3. the pod name,
4. the reserved identity from a `reserved:` label ("world", "host", "kube-apiserver", ...),
5. "unknown".

The cluster is Endpoint.cluster_name, else the "cluster/" prefix of the node name
(Hubble writes "cluster/node" when the cluster name is not "default"), else the
configured one.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache

from hubble_bridge.api import flow_pb2
from hubble_bridge.mapping import semconv
from hubble_bridge.mapping.limits import limit_str
from hubble_bridge.telemetry import Resource, make_resource

UNKNOWN_SERVICE = "unknown"
# Label keys naming an application, in order of preference.
_APP_LABEL_KEYS = ("app", "app.kubernetes.io/name", "k8s-app")
_RESERVED_PREFIX = "reserved:"
# Workload kinds with a k8s.<kind>.name resource attribute in the semantic conventions.
_WORKLOAD_KINDS = frozenset({"deployment", "statefulset", "daemonset", "replicaset", "job", "cronjob"})
_WORKLOAD_KEYS = {kind: semconv.K8S_WORKLOAD_NAME_TEMPLATE.format(kind=kind) for kind in _WORKLOAD_KINDS}
# Distinct (endpoint, node) pairs in a large cluster; beyond this the least recently used go.
CACHE_SIZE = 8192


def endpoint_resource(
    endpoint: flow_pb2.Endpoint, node_name: str, cluster_name: str = "", max_value_length: int = 0
) -> Resource:
    """The resource of a workload seen on `node_name` ("node" or "cluster/node").

    Values are cut to `max_value_length` UTF-8 bytes (0: uncut), as AttributeLimits cuts attributes.
    Cached (bounded LRU): the serialized endpoint is the key, so any identifying
    field that changes (pod, labels, workloads, identity) gives a fresh entry.
    """
    return _cached_resource(endpoint.SerializeToString(), node_name, cluster_name, max_value_length)


def workload_name(endpoint: flow_pb2.Endpoint) -> str:
    """The endpoint's service name by the fallback chain in the module docstring."""
    for workload in endpoint.workloads:
        if workload.name:
            return workload.name
    labels = endpoint.labels
    app = _app_label(labels)
    if app:
        return app
    if endpoint.pod_name:
        return endpoint.pod_name
    for label in labels:
        if label.startswith(_RESERVED_PREFIX) and len(label) > len(_RESERVED_PREFIX):
            return label[len(_RESERVED_PREFIX) :]
    return UNKNOWN_SERVICE


def split_node_name(node_name: str) -> tuple[str, str]:
    """("cluster", "node") from Hubble's "cluster/node" form; cluster is "" without a slash."""
    cluster, sep, node = node_name.rpartition("/")
    return (cluster, node) if sep else ("", node_name)


def _app_label(labels: Iterable[str]) -> str:
    found: dict[str, str] = {}
    for label in labels:
        # "k8s:app=foo": the key ends at the first "=", and its source prefix at the last colon before it.
        source_key, eq, value = label.partition("=")
        key = source_key.rpartition(":")[2]
        if eq and value and key in _APP_LABEL_KEYS:
            found.setdefault(key, value)
    for key in _APP_LABEL_KEYS:
        if key in found:
            return found[key]
    return ""


@lru_cache(maxsize=CACHE_SIZE)
def _cached_resource(serialized: bytes, node_name: str, cluster_name: str, max_value_length: int) -> Resource:
    endpoint = flow_pb2.Endpoint.FromString(serialized)
    node_cluster, node = split_node_name(node_name)
    attributes = {
        semconv.SERVICE_NAME: workload_name(endpoint),
        semconv.SERVICE_NAMESPACE: endpoint.namespace,
        semconv.K8S_NAMESPACE_NAME: endpoint.namespace,
        semconv.K8S_POD_NAME: endpoint.pod_name,
        semconv.K8S_NODE_NAME: node,
        semconv.K8S_CLUSTER_NAME: endpoint.cluster_name or node_cluster or cluster_name,
    }
    for workload in endpoint.workloads:
        key = _WORKLOAD_KEYS.get(workload.kind.lower())
        if key and workload.name:
            attributes.setdefault(key, workload.name)
    if max_value_length:
        attributes = {k: limit_str(v, max_value_length) for k, v in attributes.items()}
    return make_resource(attributes)
