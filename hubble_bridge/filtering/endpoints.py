"""Builders for the endpoint FlowFilter fields: IPs, pods, services, FQDNs, labels,
workloads, cluster names and security identities (source_* and destination_*).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from functools import lru_cache

from hubble_bridge.api import flow_pb2
from hubble_bridge.filtering import patterns
from hubble_bridge.filtering.errors import InvalidFilterError
from hubble_bridge.filtering.fields import Builder, Flow, Predicate, checked, one_of, registrar
from hubble_bridge.filtering.labels import compile_selector

BUILDERS: dict[str, Builder] = {}
_register = registrar(BUILDERS)


def _endpoint(field: str) -> Callable[[Flow], flow_pb2.Endpoint]:
    return (lambda f: f.source) if field.startswith("source") else (lambda f: f.destination)


@lru_cache(maxsize=8192)
def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ValueError("not a valid CIDR prefix") from None


def _exact_address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    address = _address(text)
    if address is None:
        raise ValueError("not a valid IP address")
    return address


@_register("source_ip", "destination_ip", "source_ip_xlated")
def _ips(field: str, values: Sequence[str], _: flow_pb2.FlowFilter) -> Predicate:
    attr = {"source_ip": "source", "destination_ip": "destination"}.get(field, "source_xlated")
    exact: set[str] = set()
    networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for value in values:
        if "/" in value:
            networks.append(checked(field, value, _network))
        else:
            exact |= {value, str(checked(field, value, _exact_address))}

    def match(flow: Flow) -> bool:
        ip = getattr(flow.IP, attr)
        if not ip:
            return False
        if ip in exact:
            return True
        address = _address(ip) if networks else None
        return address is not None and any(address in net for net in networks)

    return match


@_register("source_pod", "destination_pod", "source_service", "destination_service")
def _namespaced(field: str, values: Sequence[str], _: flow_pb2.FlowFilter) -> Predicate:
    wanted = tuple(checked(field, value, patterns.parse_namespaced_name) for value in values)
    if field.endswith("_pod"):
        endpoint = _endpoint(field)

        def names(f: Flow) -> tuple[str, str]:
            ep = endpoint(f)
            return ep.namespace, ep.pod_name
    else:
        attr = "source_service" if field.startswith("source") else "destination_service"

        def names(f: Flow) -> tuple[str, str]:
            svc = getattr(f, attr)
            return svc.namespace, svc.name

    def match(flow: Flow) -> bool:
        namespace, name = names(flow)
        if not namespace and not name:
            return False
        return any(ns == namespace and name.startswith(prefix) for ns, prefix in wanted)

    return match


@_register("source_fqdn", "destination_fqdn")
def _fqdns(field: str, values: Sequence[str], _: flow_pb2.FlowFilter) -> Predicate:
    regex = patterns.anchored_union([checked(field, v, patterns.fqdn_regex) for v in values])
    attr = "source_names" if field.startswith("source") else "destination_names"
    return lambda f: any(regex.fullmatch(name) for name in getattr(f, attr))


@_register("source_label", "destination_label", "node_labels")
def _labels(field: str, values: Sequence[str], _: flow_pb2.FlowFilter) -> Predicate:
    selectors = tuple(checked(field, value, compile_selector) for value in values)
    if field == "node_labels":
        return lambda f: any(selector(f.node_labels) for selector in selectors)
    endpoint = _endpoint(field)
    return lambda f: any(selector(endpoint(f).labels) for selector in selectors)


@_register("source_workload", "destination_workload")
def _workloads(field: str, values: Sequence[flow_pb2.Workload], _: flow_pb2.FlowFilter) -> Predicate:
    wanted = tuple((w.name, w.kind) for w in values)
    endpoint = _endpoint(field)
    return lambda f: any(
        (not name or name == w.name) and (not kind or kind == w.kind)
        for w in endpoint(f).workloads
        for name, kind in wanted
    )


@_register("source_cluster_name", "destination_cluster_name")
def _cluster_names(field: str, values: Sequence[str], _: flow_pb2.FlowFilter) -> Predicate:
    if "" in values:
        raise InvalidFilterError(field, "", "cluster name must not be empty")
    endpoint = _endpoint(field)
    return one_of(values, lambda f: endpoint(f).cluster_name)


@_register("source_identity", "destination_identity")
def _identities(field: str, values: Sequence[int], _: flow_pb2.FlowFilter) -> Predicate:
    wanted = frozenset(values)
    side = "source" if field.startswith("source") else "destination"
    return lambda f: f.HasField(side) and getattr(f, side).identity in wanted
