"""Conformance with Cilium's own Hubble code: filters, label selectors, metric contexts and
options, flows-to-world, and the Prometheus exposition, table by table.

Every case names the Cilium (or Kubernetes / Prometheus client) file whose code or unit test
it mirrors; the cases were written here from reading those files, none copied. Paths are in
github.com/cilium/cilium unless another repository is named. The one deliberate difference
(unknown metric options and families are errors; Hubble skips them) has its own cases last.
"""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf import json_format

from hubble_bridge.api import flow_pb2
from hubble_bridge.errors import ConfigError
from hubble_bridge.filtering.compile import BUILDERS
from hubble_bridge.filtering.labels import translate_selector
from hubble_bridge.filters import FlowFilterSet, InvalidFilterError
from hubble_bridge.mapping.metrics import MetricsConfig
from hubble_bridge.mapping.metrics.registry import FAMILIES, build_families
from hubble_bridge.sinks.prometheus import go_float, prometheus_name, render_prometheus
from hubble_bridge.telemetry import MetricsSnapshot
from tests.test_metrics_support import aggregate, counts, response

F = "pkg/hubble/filters/"
K8S = "pkg/hubble/filters/k8s.go, pkg/hubble/k8s/utils.go"
LABELS = "pkg/hubble/filters/labels_test.go"
CEL = "pkg/hubble/filters/cel_expression_test.go"
SELECTOR = "pkg/k8s/slim/k8s/apis/labels/selector.go (k8s.io/apimachinery pkg/labels/selector.go)"
HTTP = {"event_type": {"type": 129}}


def _http(url: str = "", code: int = 0, method: str = "GET") -> dict[str, Any]:
    record: dict[str, Any] = {"url": url, "method": method}
    if code:
        record["code"] = code
    return {**HTTP, "l7": {"type": "RESPONSE" if code else "REQUEST", "http": record}}


def _cel(*expressions: str) -> dict[str, Any]:
    return {"experimental": {"cel_expression": list(expressions)}}


VERDICTS = "_flow.verdict == Verdict.FORWARDED || _flow.verdict == Verdict.TRANSLATED"
IPS = "_flow.IP.source == '1.1.1.1' || _flow.IP.destination == '8.8.8.8'"
WEB_PORTS = (
    "has(_flow.l4.TCP) && (_flow.l4.TCP.destination_port == uint(80) || "
    "_flow.l4.TCP.destination_port == uint(443))"
)
THIRTY = "[" + ",".join("1" * 30) + "]"


def _ep(ns: str = "", pod: str = "", labels: list[str] | None = None, **more: Any) -> dict[str, Any]:
    return {"namespace": ns, "pod_name": pod, "labels": labels or [], **more}


# (cilium file, filter, flow, matches)
FILTER_CASES: list[tuple[str, dict[str, Any], dict[str, Any], bool]] = [
    # --- pods and services: "[namespace/][name prefix]"
    (K8S, {"source_pod": ["xwing"]}, {"source": _ep("default", "xwing")}, True),
    (K8S, {"source_pod": ["xwing"]}, {"source": _ep("kube-system", "xwing")}, False),
    (K8S, {"source_pod": ["kube-system/coredns-"]}, {"source": _ep("kube-system", "coredns-12345")}, True),
    (K8S, {"source_pod": ["kube-system/coredns-"]}, {"source": _ep("kube-system", "-coredns-1")}, False),
    (K8S, {"destination_pod": ["kube-system/"]}, {"destination": _ep("kube-system", "kube-proxy")}, True),
    (K8S, {"source_pod": ["xwing"]}, {"source": _ep("", "xwing")}, False),
    # "/xwing" is namespace "" and prefix "xwing": it matches endpoints without a namespace only
    # (filterByNamespacedName compares f.ns == eventNs), not "any namespace".
    (K8S, {"source_pod": ["/xwing"]}, {"source": _ep("", "xwing-1")}, True),
    (K8S, {"source_pod": ["/xwing"]}, {"source": _ep("default", "xwing-1")}, False),
    (K8S, {"source_pod": ["/xwing"]}, {"source": _ep("kube-system", "xwing")}, False),
    # strings.Split: past a second slash the text is ignored.
    (K8S, {"source_pod": ["default/xwing/extra"]}, {"source": _ep("default", "xwing-2")}, True),
    (
        K8S,
        {"destination_service": ["default/", "kube-system/kube-"]},
        {"destination_service": {"namespace": "kube-system", "name": "kube-dns"}},
        True,
    ),
    (
        K8S,
        {"source_service": ["deathstar"]},
        {"source_service": {"namespace": "default", "name": "xwing"}},
        False,
    ),
    # --- labels: Hubble's key rewrite, then Kubernetes' grammar and Cilium's LabelArray lookup
    (LABELS, {"source_label": ["label1", "label2"]}, {"source": _ep(labels=["label1=val1"])}, True),
    (LABELS, {"source_label": ["label1", "label2"]}, {"source": _ep(labels=["label3"])}, False),
    (LABELS, {"source_label": ["label1=val1"]}, {"source": _ep(labels=["label1=val1=toomuch"])}, False),
    (LABELS, {"source_label": ["label1=val1"]}, {"source": _ep(labels=[""])}, False),
    (
        LABELS,
        {"source_label": ["label1 in (val1, val2), label3 notin ()"]},
        {"source": _ep(labels=["label1"])},
        False,
    ),
    (
        LABELS,
        {"source_label": ["label1 in (val1, val2), label3 notin ()"]},
        {"source": _ep(labels=["label1=val2", "label2=val1", "label3=val3"])},
        True,
    ),
    # notin () is notin {""}: a key present with an empty value is excluded, an absent key is not.
    (SELECTOR, {"source_label": ["label3 notin ()"]}, {"source": _ep(labels=["label3"])}, False),
    (SELECTOR, {"source_label": ["label3 notin ()"]}, {"source": _ep(labels=["other"])}, True),
    (SELECTOR, {"source_label": ["x in (foo,,baz)"]}, {"source": _ep(labels=["x="])}, True),
    (SELECTOR, {"source_label": ["x in (foo,,baz)"]}, {"source": _ep(labels=["x=bar"])}, False),
    (SELECTOR, {"source_label": ["!k8s:app"]}, {"source": _ep(labels=["container:app=x"])}, True),
    (
        SELECTOR,
        {"source_label": ["  k8s:app  ==  web ,  tier != db  "]},
        {"source": _ep(labels=["k8s:app=web"])},
        True,
    ),
    (
        SELECTOR,
        {"source_label": ["k8s:app=web,tier!=db"]},
        {"source": _ep(labels=["k8s:app=web", "k8s:tier=db"])},
        False,
    ),
    (SELECTOR, {"source_label": ["replicas>2"]}, {"source": _ep(labels=["k8s:replicas=3"])}, True),
    (SELECTOR, {"source_label": ["replicas<2"]}, {"source": _ep(labels=["k8s:replicas=x"])}, False),
    (SELECTOR, {"source_label": ["k8s:app in (in, notin)"]}, {"source": _ep(labels=["k8s:app=notin"])}, True),
    (
        SELECTOR,
        {"source_label": ["app.kubernetes.io/name=web"]},
        {"source": _ep(labels=["k8s:app.kubernetes.io/name=web"])},
        True,
    ),
    (
        LABELS,
        {"source_label": ["k8s:app=bar", "foo", "reserved:host"]},
        {"source": _ep(labels=["k8s.app=bar"])},
        False,
    ),
    (
        LABELS,
        {"source_label": ["k8s:app=bar", "foo", "reserved:host"]},
        {"source": _ep(labels=["reserved:host"])},
        True,
    ),
    (LABELS, {"source_label": ["any:key"]}, {"source": _ep(labels=["reserved:key"])}, True),
    (LABELS, {"source_label": ["any:key"]}, {"source": _ep(labels=["any.key"])}, False),
    (LABELS, {"source_label": [""]}, {"source": _ep(labels=["src1"])}, True),
    (
        F + "labels.go",
        {"node_labels": ["kubernetes.io/hostname=kind-worker"]},
        {"node_labels": ["kubernetes.io/hostname=kind-worker"]},
        True,
    ),
    (F + "labels.go", {"destination_label": ["k8s:app"]}, {"destination": _ep(labels=["k8s:app=db"])}, True),
    # --- regexes: RE2 syntax, MatchString (unanchored) on the decoded request path
    (F + "http.go", {"http_path": [r"^/api/\pL+$"]}, _http("http://svc/api/héllo"), True),
    (F + "http.go", {"http_path": [r"/v1\z"]}, _http("http://svc/api/v1?x=1"), True),
    (F + "http.go", {"http_path": ["(a+)+$"]}, _http("/" + "a" * 40 + "!"), False),
    (F + "http.go", {"http_path": ["/api"]}, _http("not a uri"), False),
    (F + "http.go", {"http_url": [r"^http://svc/api\?x=\d$"]}, _http("http://svc/api?x=1"), True),
    (F + "fqdn.go", {"dns_query": [r"\.cilium\.io\.$"]}, {"l7": {"dns": {"query": "docs.cilium.io."}}}, True),
    (F + "fqdn.go", {"destination_fqdn": ["*.cilium.io"]}, {"destination_names": ["docs.cilium.io"]}, True),
    (F + "fqdn.go", {"destination_fqdn": ["*.cilium.io"]}, {"destination_names": ["cilium.io.evil"]}, False),
    (F + "nodename.go", {"node_name": ["kind-*"]}, {"node_name": "kind-worker"}, True),
    (F + "nodename.go", {"node_name": ["prod/kind-*"]}, {"node_name": "kind-worker"}, False),
    # --- HTTP fields
    (F + "http.go", {"http_status_code": ["4+"]}, _http("/", 404), True),
    (F + "http.go", {"http_status_code": ["404"]}, _http("/"), False),
    (F + "http.go", {"http_method": ["get"]}, _http("/", method="GET"), True),
    (
        F + "httpheader.go",
        {"http_header": [{"key": "X-A", "value": "1"}]},
        {"l7": {"http": {"headers": [{"key": "X-A", "value": "1"}]}}},
        True,
    ),
    # --- CEL: _flow of type flow.Flow in container "flow"; expressions OR-ed
    (CEL, _cel(VERDICTS), {"verdict": "TRANSLATED"}, True),
    (CEL, _cel(VERDICTS), {"verdict": "DROPPED"}, False),
    (CEL, _cel(IPS), {"IP": {"source": "10.0.0.2", "destination": "1.1.1.1"}}, False),
    (CEL, _cel("has(_flow.l4.TCP)"), {"l4": {"UDP": {"destination_port": 53}}}, False),
    (CEL, _cel(WEB_PORTS), {"l4": {"TCP": {"source_port": 20222, "destination_port": 443}}}, True),
    (CEL, _cel("_flow.verdict == Verdict.DROPPED", "has(_flow.l4.TCP)"), {"l4": {"TCP": {}}}, True),
    # An evaluation error (here: the comprehension budget) is "no match", as Hubble's cost limit.
    (CEL, _cel(f"{THIRTY}.all(x, {THIRTY}.all(y, {THIRTY}.all(z, true)))"), {}, False),
    # --- the rest of the FlowFilter fields, one case each from their filter files
    (F + "ip.go", {"source_ip": ["10.0.0.0/24"]}, {"IP": {"source": "10.0.0.7"}}, True),
    (F + "ip.go", {"destination_ip": ["2001:db8::1"]}, {"IP": {"destination": "2001:DB8::1"}}, False),
    (F + "ip.go", {"source_ip_xlated": ["192.168.1.1"]}, {"IP": {"source_xlated": "192.168.1.1"}}, True),
    (F + "port.go", {"destination_port": ["53"]}, {"l4": {"UDP": {"destination_port": 53}}}, True),
    (F + "port.go", {"source_port": ["53"]}, {"l4": {"ICMPv4": {"type": 8}}}, False),
    (F + "protocol.go", {"protocol": ["icmp"]}, {"l4": {"ICMPv6": {"type": 128}}}, True),
    (F + "protocol.go", {"protocol": ["http"]}, {"l7": {"http": {"method": "GET"}}}, True),
    (
        F + "tcp.go",
        {"tcp_flags": [{"SYN": True, "ACK": True}]},
        {"l4": {"TCP": {"flags": {"SYN": True}}}},
        False,
    ),
    (F + "verdict.go", {"verdict": ["DROPPED"]}, {"verdict": "DROPPED"}, True),
    (
        F + "drop_reason_desc.go",
        {"drop_reason_desc": ["POLICY_DENIED"]},
        {"verdict": "DROPPED", "drop_reason_desc": "POLICY_DENIED"},
        True,
    ),
    (F + "reply.go", {"reply": [False]}, {"verdict": "DROPPED"}, True),
    (F + "reply.go", {"reply": [True]}, {"is_reply": True}, True),
    (
        F + "event_type.go",
        {"event_type": [{"type": 1, "match_sub_type": True, "sub_type": 133}]},
        {"event_type": {"type": 1, "sub_type": 133}},
        True,
    ),
    (F + "identity.go", {"source_identity": [2]}, {"source": {"identity": 2}}, True),
    (F + "identity.go", {"destination_identity": [2]}, {"source": {"identity": 2}}, False),
    (
        F + "workload.go",
        {"source_workload": [{"name": "cart"}]},
        {"source": {"workloads": [{"name": "cart", "kind": "Job"}]}},
        True,
    ),
    (
        F + "cluster_name.go",
        {"destination_cluster_name": ["c1"]},
        {"destination": {"cluster_name": "c1"}},
        True,
    ),
    (F + "fqdn.go", {"source_fqdn": ["cilium.io"]}, {"source_names": ["docs.cilium.io"]}, False),
    (
        F + "workload.go",
        {"destination_workload": [{"kind": "Deployment"}]},
        {"destination": {"workloads": [{"name": "db", "kind": "Deployment"}]}},
        True,
    ),
    (F + "cluster_name.go", {"source_cluster_name": ["c1"]}, {"source": {"cluster_name": "c2"}}, False),
    (F + "traffic_direction.go", {"traffic_direction": ["INGRESS"]}, {"traffic_direction": "INGRESS"}, True),
    (
        F + "network_interface.go",
        {"interface": [{"name": "eth0"}]},
        {"interface": {"index": 3, "name": "eth0"}},
        True,
    ),
    (F + "ip_tracing.go", {"ip_version": ["IPv6"]}, {"IP": {"ipVersion": "IPv6"}}, True),
    (
        F + "tracing.go",
        {"trace_id": ["4bf92f3577b34da6a3ce929d0e0e4736"]},
        {"trace_context": {"parent": {"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736"}}},
        True,
    ),
    (F + "ip_trace_id.go", {"ip_trace_id": ["7"]}, {"ip_trace_id": {"trace_id": "7"}}, True),
    (F + "uuid.go", {"uuid": ["u-1"]}, {"uuid": "u-2"}, False),
    (F + "encrypted.go", {"encrypted": [True]}, {"IP": {"encrypted": True}}, True),
]


@pytest.mark.parametrize(("cilium", "ff", "flow", "expected"), FILTER_CASES)
def test_filter_matches_as_hubble(
    cilium: str, ff: dict[str, Any], flow: dict[str, Any], expected: bool
) -> None:
    compiled = FlowFilterSet([json_format.ParseDict(ff, flow_pb2.FlowFilter())])
    assert compiled.matches_flow(json_format.ParseDict(flow, flow_pb2.Flow())) is expected, cilium


def test_every_filter_type_has_a_conformance_case() -> None:
    tested = {key for _, ff, _, _ in FILTER_CASES for key in ff}
    assert set(BUILDERS) | {"experimental"} == tested


# (cilium file, filter, words in the error) — Hubble refuses these when the request is built.
INVALID_FILTERS: list[tuple[str, dict[str, Any], str]] = [
    (F + "http.go", {"http_path": ["(?<=/api)/v1"]}, "RE2 syntax"),
    (F + "http.go", {"http_url": [r"(a)\1"]}, "RE2 syntax"),
    (F + "fqdn.go", {"dns_query": ["a{1001}"]}, "RE2 syntax"),
    (F + "http.go", {"http_path": ["[z-a]"]}, "RE2 syntax"),
    (CEL, {"experimental": {"cel_expression": ["something-invalid"]}}, "undeclared reference"),
    (CEL, {"experimental": {"cel_expression": ["_flow"]}}, 'wanted "bool" result type'),
    (CEL, {"experimental": {"cel_expression": [""]}}, "Syntax error"),
    (CEL, {"experimental": {"cel_expression": ["dyn(true)"]}}, 'got "dyn"'),
    (
        F + "cel_expression.go",
        {"experimental": {"cel_expression": ["true || " * 600 + "true"]}},
        "longer than 4096",
    ),
    (LABELS, {"source_label": ["()"]}, "invalid label key"),
    (LABELS, {"destination_label": ["="]}, "invalid label key"),
    (LABELS + " Test_parseSelector", {"source_label": ["any:k8s:bla"]}, "invalid label key"),
    (SELECTOR, {"source_label": ["app=web,"]}, "expected: identifier after ','"),
    (SELECTOR, {"source_label": ["app in (a b)"]}, "expected: ',' or ')'"),
    (SELECTOR, {"source_label": ["app=-web"]}, "invalid label value"),
    (SELECTOR, {"source_label": ["replicas>two"]}, "must be an integer"),
    (SELECTOR, {"source_label": ["k8s:App.Example/name=x"]}, "invalid label key"),
    (K8S, {"source_pod": [""]}, "must be [namespace/][<name>]"),
    (K8S, {"destination_service": ["/"]}, "must be [namespace/][<name>]"),
]


@pytest.mark.parametrize(("cilium", "ff", "words"), INVALID_FILTERS)
def test_filter_refused_as_hubble(cilium: str, ff: dict[str, Any], words: str) -> None:
    with pytest.raises(InvalidFilterError) as info:
        FlowFilterSet([json_format.ParseDict(ff, flow_pb2.FlowFilter())])
    assert words in str(info.value), cilium
    assert "\n" not in str(info.value)


# pkg/hubble/filters/labelparser_test.go: Hubble's rewrite of the selector text, byte for byte.
TRANSLATIONS = [
    ("foo", "any.foo"),
    ("k8s:foo, !bar", "k8s.foo, !any.bar"),
    ("foo, bar!= buzz", "any.foo, any.bar!= buzz"),
    ("foo notin   (a,b,c)", "any.foo notin   (a,b,c)"),
    ("foo.example.com, bar.example.com=buzz", "any.foo.example.com, any.bar.example.com=buzz"),
    ("x in (foo,,baz),y,z notin ()", "any.x in (foo,,baz),any.y,any.z notin ()"),
    (
        "foo.example.com in (foo, any.bar, k8s:buzz, some.other,, end), "
        "k8s:bar in (a,b,c,  ,d,  e,),!any:test",
        "any.foo.example.com in (foo, any.bar, k8s:buzz, some.other,, end), "
        "k8s.bar in (a,b,c,  ,d,  e,),!any.test",
    ),
    (
        "a=b, foo:bar, !k8s:b, foo in  (a, ,   c, d), !any:buzz, c!= d.e, foo:bar.example.com=any.value, "
        "!any.other, k8s.example.com in (foo.bar, bar.buzz,  a)",
        "any.a=b, foo.bar, !k8s.b, any.foo in  (a, ,   c, d), !any.buzz, any.c!= d.e, "
        "foo.bar.example.com=any.value, !any.any.other, any.k8s.example.com in (foo.bar, bar.buzz,  a)",
    ),
]


@pytest.mark.parametrize(("selector", "translated"), TRANSLATIONS)
def test_selector_rewrite_as_hubble(selector: str, translated: str) -> None:
    assert translate_selector(selector) == translated


# --- metrics: pkg/hubble/metrics/api/context.go
CONTEXT = "pkg/hubble/metrics/api/context.go"
SRC = {"namespace": "shop", "pod_name": "cart-7d9f8b6c5-x2x4z", "labels": ["k8s:app=cart", "reserved:host"],
       "workloads": [{"name": "cart", "kind": "Deployment"}]}  # fmt: skip
DST = {"namespace": "", "pod_name": "", "labels": ["reserved:world"]}


def _drop(**extra: Any) -> Any:
    fields: dict[str, Any] = {
        "verdict": "DROPPED",
        "drop_reason_desc": "POLICY_DENIED",
        "event_type": {"type": 1},
        "IP": {"source": "10.0.0.1", "destination": "1.1.1.1"},
        "l4": {"TCP": {"destination_port": 443, "flags": {"SYN": True}}},
        "source": SRC,
        "destination": DST,
        "destination_names": ["one.one.one.one"],
        "traffic_direction": "EGRESS",
    }
    fields.update(extra)
    return response(**fields)


# (cilium file, drop family options, expected context labels of the one drop series)
CONTEXT_CASES: list[tuple[str, str, tuple[tuple[str, str], ...]]] = [
    (CONTEXT, "sourceContext=identity", (("source", "k8s:app=cart,reserved:host"),)),
    (CONTEXT, "sourceContext=namespace", (("source", "shop"),)),
    (CONTEXT, "sourceContext=pod", (("source", "shop/cart-7d9f8b6c5-x2x4z"),)),
    (CONTEXT, "sourceContext=pod-short", (("source", "shop/cart"),)),
    (CONTEXT, "sourceContext=pod-name", (("source", "cart-7d9f8b6c5-x2x4z"),)),
    (CONTEXT, "destinationContext=dns", (("destination", "one.one.one.one"),)),
    (CONTEXT, "destinationContext=ip", (("destination", "1.1.1.1"),)),
    (CONTEXT, "sourceContext=reserved-identity", (("source", "reserved:host"),)),
    (
        CONTEXT + " (Hubble's metrics docs: namespace/workload-name)",
        "sourceContext=workload",
        (("source", "shop/cart"),),
    ),
    (CONTEXT, "sourceContext=workload-name", (("source", "cart"),)),
    (CONTEXT, "sourceContext=app", (("source", "cart"),)),
    (CONTEXT, "destinationContext=pod|reserved-identity", (("destination", "reserved:world"),)),
    (CONTEXT, "sourceContext=POD-NAME", (("source", "cart-7d9f8b6c5-x2x4z"),)),
    (CONTEXT, "sourceContext=namespace;sourceEgressContext=pod-name", (("source", "cart-7d9f8b6c5-x2x4z"),)),
    (CONTEXT, "sourceContext=namespace;sourceIngressContext=pod-name", (("source", "shop"),)),
    (CONTEXT, "destinationEgressContext=ip", ()),  # no destinationContext: no destination label
    (
        CONTEXT + " (labels list; *_workload_kind from Hubble's metrics docs)",
        "labelsContext=traffic_direction,destination_ip,source_workload_kind,source_workload,source_ip",
        (
            ("source_ip", "10.0.0.1"),
            ("source_workload", "cart"),
            ("source_workload_kind", "Deployment"),
            ("destination_ip", "1.1.1.1"),
            ("traffic_direction", "egress"),
        ),
    ),
    (
        CONTEXT,
        "labelsContext=destination_workload_kind,destination_pod;sourceContext=namespace",
        (("destination_pod", ""), ("destination_workload_kind", ""), ("source", "shop")),
    ),
]


@pytest.mark.parametrize(("cilium", "options", "expected"), CONTEXT_CASES)
def test_context_options_as_hubble(cilium: str, options: str, expected: tuple[tuple[str, str], ...]) -> None:
    agg = aggregate([f"drop:{options}"], _drop())
    ((attrs, value),) = counts(agg, "hubble.drop").items()
    assert (attrs[: len(expected)], value) == (expected, 1), cilium
    assert attrs[len(expected) :] == (("reason", "POLICY_DENIED"), ("protocol", "TCP"))


def test_context_identifiers_and_labels_are_cilium_lists() -> None:
    """Every identifier and label of context.go's parsers (and the docs' workload additions)."""
    identifiers = ["identity", "namespace", "pod", "pod-short", "pod-name", "dns", "ip", "reserved-identity",
                   "workload", "workload-name", "app"]  # fmt: skip
    labels = ["source_ip", "source_pod", "source_namespace", "source_workload", "source_workload_kind",
              "source_app", "destination_ip", "destination_pod", "destination_namespace",
              "destination_workload", "destination_workload_kind", "destination_app",
              "traffic_direction"]  # fmt: skip
    errors: list[str] = []
    build_families(
        [f"drop:sourceContext={'|'.join(identifiers)};labelsContext={','.join(labels)}"], 10, errors
    )
    assert errors == []


# pkg/hubble/metrics/api/context.go getLabelValues(invert=true), used by httpV2: each side is
# computed with its own option on the response (server -> client), then the two swapped; so with
# only one of sourceContext / destinationContext its label is always "" (the unset side's value).
@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ("sourceContext=pod", (("source", ""),)),
        ("destinationContext=pod", (("destination", ""),)),
        ("sourceContext=pod;destinationContext=namespace",
         (("source", "shop"), ("destination", "db/redis-0"))),
        ("labelsContext=source_pod,destination_namespace",
         (("source_pod", "cart-7d9f8b6c5-x2x4z"), ("destination_namespace", "db"))),
    ],
)  # fmt: skip
def test_http_v2_context_swap_as_hubble(options: str, expected: tuple[tuple[str, str], ...]) -> None:
    server = {"namespace": "db", "pod_name": "redis-0"}
    reply = response(
        source=server, destination=SRC, traffic_direction="INGRESS", event_type={"type": 129},
        l7={"type": "RESPONSE", "latency_ns": "1000", "http": {"code": 200, "method": "GET"}},
    )  # fmt: skip
    (attrs,) = counts(aggregate([f"httpV2:{options}"], reply), "hubble.http_requests")
    assert attrs[: len(expected)] == expected


# pkg/hubble/metrics/flows-to-world/handler.go: a flow without an event type returns early.
def test_flows_to_world_skips_flows_without_event_type() -> None:
    counted = _drop(verdict="FORWARDED")
    no_event_type = _drop(verdict="FORWARDED")
    no_event_type.flow.ClearField("event_type")
    agg = aggregate(["flows-to-world"], counted, no_event_type)
    assert counts(agg, "hubble.flows_to_world") == {(("protocol", "TCP"), ("verdict", "FORWARDED")): 1}


# pkg/hubble/metrics/icmp/handler.go labels ICMPv6 family="IPv4" too; kafka/handler.go writes
# error_code with Go's string(int32).
def test_icmp_and_kafka_labels_as_hubble_writes_them() -> None:
    v6 = response(verdict="FORWARDED", event_type={"type": 4}, l4={"ICMPv6": {"type": 128}})
    want = {(("family", "IPv4"), ("type", "EchoRequest")): 1}
    assert counts(aggregate(["icmp"], v6), "hubble.icmp") == want
    kafka = [
        response(
            verdict="FORWARDED", event_type={"type": 129}, traffic_direction="EGRESS",
            l7={"type": "REQUEST", "kafka": {"error_code": code, "api_key": "produce", "topic": "t"}},
        )
        for code in (0, 3, 65, -1)
    ]  # fmt: skip
    got = {attrs[2][1] for attrs in counts(aggregate(["kafka"], *kafka), "hubble.kafka_requests")}
    assert got == {"\x00", "\x03", "A", "\ufffd"}


# Each family's HELP text, byte for byte, from its handler.go in pkg/hubble/metrics/<family>/.
HELP = {
    "dns": {"hubble_dns_queries_total": "Number of DNS queries observed",
            "hubble_dns_responses_total": "Number of DNS queries observed",
            "hubble_dns_response_types_total": "Number of DNS queries observed"},
    "drop": {"hubble_drop_total": "Number of drops"},
    "flow": {"hubble_flows_processed_total": "Total number of flows processed"},
    "flows-to-world": {"hubble_flows_to_world_total": "Total number of flows to reserved:world"},
    "http": {"hubble_http_requests_total": "Count of HTTP requests",
             "hubble_http_responses_total": "Count of HTTP responses",
             "hubble_http_request_duration_seconds": "Quantiles of HTTP request duration in seconds"},
    "httpV2": {"hubble_http_requests_total": "Count of HTTP requests",
               "hubble_http_request_duration_seconds": "Quantiles of HTTP request duration in seconds"},
    "icmp": {"hubble_icmp_total": "Number of ICMP messages"},
    "kafka": {"hubble_kafka_requests_total": "Count of Kafka requests",
              "hubble_kafka_request_duration_seconds": "Quantiles of HTTP request duration in seconds"},
    "policy": {"hubble_policy_verdicts_total": "Total number of Cilium network policy verdicts"},
    "port-distribution": {
        "hubble_port_distribution_total": "Numbers of packets distributed by destination port"
    },
    "tcp": {"hubble_tcp_flags_total": "TCP flag occurrences"},
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(HELP))
def test_help_texts_as_hubble(name: str) -> None:
    errors: list[str] = []
    (family,) = build_families([name], 10, errors)
    assert errors == []
    families = [series.family(1) for series in family.series()]
    assert {prometheus_name(f): f.description for f in families} == HELP[name]


def test_every_hubble_family_has_its_help_texts_checked() -> None:
    # lost-events is Hubble's own family (pkg/hubble/metrics/metrics.go) and is checked elsewhere;
    # sidecar-bytes and service-graph (Tempo's series, tests/test_service_graph.py) are not Hubble's.
    assert set(FAMILIES) - set(HELP) == {"sidecar-bytes", "service-graph"}


# prometheus/common expfmt text_create.go writeFloat and openmetrics_create.go writeOpenMetricsFloat.
LE = [(0.005, "0.005", "0.005"), (0.1, "0.1", "0.1"), (1.0, "1", "1.0"), (2.5, "2.5", "2.5"),
      (10.0, "10", "10.0"), (100000.0, "100000", "100000.0"), (1e6, "1e+06", "1e+06"),
      (1.5e-5, "1.5e-05", "1.5e-05"), (float("inf"), "+Inf", "+Inf")]  # fmt: skip


@pytest.mark.parametrize(("bound", "text", "openmetrics"), LE)
def test_le_written_as_client_golang(bound: float, text: str, openmetrics: str) -> None:
    assert (go_float(bound), go_float(bound, openmetrics=True)) == (text, openmetrics)


def test_histogram_buckets_in_the_exposition_as_hubble_writes_them() -> None:
    reply = response(
        verdict="FORWARDED", event_type={"type": 129}, traffic_direction="INGRESS",
        l7={"type": "RESPONSE", "latency_ns": "2000000", "http": {"code": 200, "method": "GET"}},
    )  # fmt: skip
    agg = aggregate(["httpV2"], reply, http_duration_histograms=True)
    text = render_prometheus([MetricsSnapshot(resource=(), time_ns=2, families=agg.snapshot())])
    lines = [
        line for line in text.splitlines() if line.startswith("hubble_http_request_duration_seconds_bucket{")
    ]
    buckets = [line.split('le="')[1].split('"')[0] for line in lines]
    buckets = buckets[: buckets.index("+Inf") + 1]
    # client_golang's prometheus.DefBuckets as Hubble's handler registers them.
    assert buckets == ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf"]


# The one known difference: Hubble skips unknown options and families; this bridge refuses them.
@pytest.mark.parametrize(
    ("families", "words"),
    [(["flows"], "unknown family 'flows'"), (["dns:qeury"], "unknown option(s) ['qeury']"),
     (["drop:sourceContext=pods"], "unknown context ['pods']")],
)  # fmt: skip
def test_unknown_options_and_families_are_refused_unlike_hubble(families: list[str], words: str) -> None:
    with pytest.raises(ConfigError) as info:
        MetricsConfig(families=families).validate()
    assert words in str(info.value)
