"""Hubble FlowFilter semantics: per-field tables over hand-built flows, AND/OR/blacklist
combination, errors, and counts over the recorded flows in ../shared/flows."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest
from google.protobuf import json_format

from hubble_bridge.api import flow_pb2, observer_pb2, relay_pb2
from hubble_bridge.errors import BridgeError
from hubble_bridge.filtering.compile import BUILDERS
from hubble_bridge.filters import FlowFilterSet, InvalidFilterError, UnsupportedFilterError, filters_from_json
from hubble_bridge.flows.codec import parse_json_line

FLOWS_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "flows"

HTTP_503 = {
    "Type": "L7",
    "event_type": {"type": 129},
    "l7": {
        "type": "RESPONSE",
        "http": {
            "code": 503,
            "method": "GET",
            "url": "http://svc:8080/api/v1/users%20all?x=1",
            "headers": [{"key": "X-Request-Id", "value": "abc"}],
        },
    },
}
HTTP_REQUEST = {"l7": {"type": "REQUEST", "http": {"method": "POST", "url": "/api/v2/items"}}}
DNS = {"l7": {"dns": {"query": "docs.cilium.io."}}}
TCP = {"l4": {"TCP": {"source_port": 40000, "destination_port": 80, "flags": {"SYN": True, "ACK": True}}}}
POD = {"source": {"namespace": "kube-system", "pod_name": "coredns-5d78c9869d-abcde"}}

# (filter, flow, expected): every FlowFilter field kind, matching and not matching.
CASES: list[tuple[dict[str, Any], dict[str, Any], bool]] = [
    ({}, {}, True),
    ({"source_ip": ["10.0.0.1"]}, {"IP": {"source": "10.0.0.1"}}, True),
    ({"source_ip": ["10.0.0.1"]}, {"IP": {"source": "10.0.0.2"}}, False),
    ({"source_ip": ["10.0.0.1"]}, {}, False),
    ({"source_ip": ["10.0.0.0/24"]}, {"IP": {"source": "10.0.0.77"}}, True),
    ({"source_ip": ["10.0.0.9/24"]}, {"IP": {"source": "10.0.1.1"}}, False),
    ({"destination_ip": ["2001:DB8::1"]}, {"IP": {"destination": "2001:db8::1"}}, True),
    ({"destination_ip": ["2001:db8::/32"]}, {"IP": {"destination": "10.0.0.1"}}, False),
    ({"destination_ip": ["2001:db8::/32"]}, {"IP": {"destination": "2001:db8:1::5"}}, True),
    ({"source_ip_xlated": ["192.168.1.1"]}, {"IP": {"source_xlated": "192.168.1.1"}}, True),
    ({"source_ip_xlated": ["192.168.1.1"]}, {"IP": {"source": "192.168.1.1"}}, False),
    ({"source_pod": ["kube-system/"]}, POD, True),
    ({"source_pod": ["kube-system/coredns"]}, POD, True),
    ({"source_pod": ["kube-system/dns"]}, POD, False),
    ({"source_pod": ["coredns"]}, POD, False),  # a bare name means the "default" namespace
    ({"source_pod": ["xwing"]}, {"source": {"namespace": "default", "pod_name": "xwing-1"}}, True),
    ({"destination_pod": ["default/"]}, {}, False),
    (
        {"destination_service": ["default/api"]},
        {"destination_service": {"namespace": "default", "name": "api-v2"}},
        True,
    ),
    ({"source_service": ["api"]}, {"source_service": {"namespace": "prod", "name": "api"}}, False),
    ({"source_label": ["k8s:app=foo"]}, {"source": {"labels": ["k8s:app=foo"]}}, True),
    ({"source_label": [""]}, {}, True),  # an empty selector selects everything, as in Kubernetes
    ({"source_label": ["app=foo"]}, {"source": {"labels": ["container:app=foo"]}}, True),
    ({"source_label": ["k8s:app=foo"]}, {"source": {"labels": ["container:app=foo"]}}, False),
    ({"source_label": ["reserved:host"]}, {"source": {"labels": ["reserved:host"]}}, True),
    ({"destination_label": ["!k8s:app"]}, {"destination": {"labels": ["reserved:world"]}}, True),
    ({"destination_label": ["!k8s:app"]}, {"destination": {"labels": ["k8s:app=x"]}}, False),
    (
        {"source_label": ["k8s:app=foo, k8s:tier=db"]},
        {"source": {"labels": ["k8s:app=foo", "k8s:tier=web"]}},
        False,
    ),
    (
        {"source_label": ["k8s:app=foo,k8s:tier=db"]},
        {"source": {"labels": ["k8s:app=foo", "k8s:tier=db"]}},
        True,
    ),
    ({"source_label": ["k8s:app=a", "k8s:app=b"]}, {"source": {"labels": ["k8s:app=b"]}}, True),
    ({"source_label": ["k8s:app in (foo, bar)"]}, {"source": {"labels": ["k8s:app=bar"]}}, True),
    ({"source_label": ["app notin (foo)"]}, {"source": {"labels": ["k8s:tier=db"]}}, True),
    ({"source_label": ["app!=foo"]}, {"source": {"labels": ["k8s:app=foo"]}}, False),
    ({"source_label": ["k8s:replicas>2"]}, {"source": {"labels": ["k8s:replicas=3"]}}, True),
    (
        {"source_label": ["k8s:io.kubernetes.pod.namespace=kube-system"]},
        {"source": {"labels": ["k8s:io.kubernetes.pod.namespace=kube-system"]}},
        True,
    ),
    (
        {"node_labels": ["kubernetes.io/hostname=node1"]},
        {"node_labels": ["kubernetes.io/hostname=node1"]},
        True,
    ),
    (
        {"node_labels": ["kubernetes.io/hostname=node1"]},
        {"node_labels": ["kubernetes.io/hostname=n2"]},
        False,
    ),
    ({"destination_fqdn": ["*.cilium.io"]}, {"destination_names": ["docs.cilium.io"]}, True),
    ({"destination_fqdn": ["CILIUM.io."]}, {"destination_names": ["cilium.io"]}, True),
    ({"destination_fqdn": ["cilium.io"]}, {"destination_names": ["www.cilium.io"]}, False),
    ({"source_fqdn": ["*"]}, {}, False),
    (
        {"source_workload": [{"name": "api"}]},
        {"source": {"workloads": [{"name": "api", "kind": "Deployment"}]}},
        True,
    ),
    (
        {"source_workload": [{"kind": "StatefulSet"}]},
        {"source": {"workloads": [{"name": "api", "kind": "Deployment"}]}},
        False,
    ),
    (
        {"destination_workload": [{"name": "api", "kind": "Deployment"}]},
        {"destination": {"workloads": [{"name": "api", "kind": "Deployment"}]}},
        True,
    ),
    ({"source_cluster_name": ["c1"]}, {"source": {"cluster_name": "c1"}}, True),
    ({"destination_cluster_name": ["c1"]}, {"destination": {"cluster_name": "c2"}}, False),
    ({"source_identity": [16781]}, {"source": {"identity": 16781}}, True),
    ({"destination_identity": [0]}, {}, False),  # no endpoint at all
    ({"destination_identity": [0]}, {"destination": {"ID": 5}}, True),
    ({"verdict": ["DROPPED"]}, {"verdict": "DROPPED"}, True),
    ({"verdict": ["DROPPED"]}, {"verdict": "FORWARDED"}, False),
    (
        {"drop_reason_desc": ["POLICY_DENIED"]},
        {"verdict": "DROPPED", "drop_reason_desc": "POLICY_DENIED"},
        True,
    ),
    (
        {"drop_reason_desc": ["POLICY_DENIED"]},
        {"verdict": "AUDIT", "drop_reason_desc": "POLICY_DENIED"},
        False,
    ),
    ({"event_type": [{"type": 129}]}, HTTP_503, True),
    (
        {"event_type": [{"type": 4, "match_sub_type": True, "sub_type": 3}]},
        {"event_type": {"type": 4, "sub_type": 3}},
        True,
    ),
    (
        {"event_type": [{"type": 4, "match_sub_type": True, "sub_type": 3}]},
        {"event_type": {"type": 4}},
        False,
    ),
    ({"event_type": [{"type": 4}]}, {"event_type": {"type": 4, "sub_type": 3}}, True),
    ({"event_type": [{}]}, {"event_type": {"type": 1, "sub_type": 133}}, True),
    ({"event_type": [{}]}, {}, False),
    ({"protocol": ["TCP"]}, TCP, True),
    ({"protocol": ["udp"]}, TCP, False),
    ({"protocol": ["icmp"]}, {"l4": {"ICMPv6": {}}}, True),
    ({"protocol": ["icmpv4"]}, {"l4": {"ICMPv6": {"type": 133}}}, False),
    ({"protocol": ["sctp"]}, {"l4": {"SCTP": {"destination_port": 9}}}, True),
    ({"protocol": ["vrrp"]}, {"l4": {"VRRP": {"vrid": 1}}}, True),
    ({"protocol": ["igmp"]}, {"l4": {"IGMP": {"type": 22}}}, True),
    ({"protocol": ["http"]}, HTTP_503, True),
    ({"protocol": ["dns"]}, HTTP_503, False),
    ({"protocol": ["DNS"]}, DNS, True),
    ({"protocol": ["kafka"]}, {"l7": {"kafka": {"topic": "t"}}}, True),
    ({"destination_port": ["80"]}, TCP, True),
    ({"destination_port": ["80"]}, {"l4": {"UDP": {"destination_port": 80}}}, True),
    ({"destination_port": ["80"]}, {"l4": {"ICMPv4": {"type": 8}}}, False),
    ({"source_port": ["040000"]}, TCP, True),
    ({"source_port": ["80"]}, TCP, False),
    ({"http_status_code": ["5+"]}, HTTP_503, True),
    ({"http_status_code": ["50+"], "event_type": [{"type": 129}]}, HTTP_503, True),
    ({"http_status_code": ["503"]}, HTTP_503, True),
    ({"http_status_code": ["2+", "404"]}, HTTP_503, False),
    ({"http_status_code": ["5+"]}, HTTP_REQUEST, False),  # requests carry no status
    ({"http_method": ["get"]}, HTTP_503, True),
    ({"http_method": ["GET"]}, HTTP_REQUEST, False),
    ({"http_path": [r"^/api/v[0-9]+/users all$"]}, HTTP_503, True),  # decoded path, no query
    ({"http_path": [r"^/api/v2/"]}, HTTP_REQUEST, True),
    ({"http_path": ["users"]}, HTTP_REQUEST, False),
    ({"http_path": ["."]}, {"l7": {"http": {"url": "relative/path"}}}, False),  # not a request URI
    ({"http_url": ["svc:8080"]}, HTTP_503, True),
    ({"http_url": ["x=2"]}, HTTP_503, False),
    ({"http_header": [{"key": "X-Request-Id", "value": "abc"}]}, HTTP_503, True),
    ({"http_header": [{"key": "X-Request-Id", "value": "xyz"}]}, HTTP_503, False),
    ({"dns_query": [r"cilium\.io\.$"]}, DNS, True),
    ({"dns_query": ["cilium"]}, HTTP_503, False),
    ({"traffic_direction": ["INGRESS"]}, {"traffic_direction": "INGRESS"}, True),
    ({"traffic_direction": ["INGRESS"]}, {"traffic_direction": "EGRESS"}, False),
    ({"node_name": ["k8s1"]}, {"node_name": "k8s1"}, True),
    ({"node_name": ["default/k8s*"]}, {"node_name": "k8s2"}, True),
    ({"node_name": ["default/k8s*"]}, {"node_name": "other/k8s2"}, False),
    ({"node_name": ["kind-kind/"]}, {"node_name": "kind-kind/kind-worker"}, True),
    ({"node_name": ["kind-*"]}, {"node_name": "kind-kind/kind-worker"}, True),
    ({"node_name": ["k8s1"]}, {}, False),
    ({"tcp_flags": [{"SYN": True}]}, TCP, True),
    ({"tcp_flags": [{"SYN": True, "FIN": True}]}, TCP, False),
    ({"tcp_flags": [{"FIN": True}, {"ACK": True}]}, TCP, True),
    ({"tcp_flags": [{"SYN": True}]}, {"l4": {"UDP": {"destination_port": 53}}}, False),
    ({"uuid": ["c3a1"]}, {"uuid": "c3a1"}, True),
    ({"uuid": ["c3a1"]}, {"uuid": "ffff"}, False),
    ({"trace_id": ["4bf92f35"]}, {"trace_context": {"parent": {"trace_id": "4bf92f35"}}}, True),
    ({"trace_id": ["4bf92f35"]}, {}, False),
    ({"ip_trace_id": ["42"]}, {"ip_trace_id": {"trace_id": "42"}}, True),
    ({"ip_trace_id": ["0"]}, {}, False),
    ({"ip_version": ["IPv6"]}, {"IP": {"ipVersion": "IPv6"}}, True),
    ({"ip_version": ["IPv6"]}, {"IP": {"ipVersion": "IPv4"}}, False),
    ({"reply": [True]}, {"is_reply": True}, True),
    ({"reply": [False]}, {"is_reply": False}, True),
    ({"reply": [False]}, {"verdict": "DROPPED"}, True),  # unknown on a drop reads as "not a reply"
    ({"reply": [False]}, {"verdict": "FORWARDED"}, False),
    ({"interface": [{"name": "eth0"}]}, {"interface": {"index": 2, "name": "eth0"}}, True),
    ({"interface": [{"index": 3}]}, {"interface": {"index": 2, "name": "eth0"}}, False),
    ({"interface": [{}]}, {}, False),
    ({"encrypted": [True]}, {"IP": {"source": "10.0.0.1", "encrypted": True}}, True),
    ({"encrypted": [True]}, {"IP": {"source": "10.0.0.1"}}, False),
]


def _flow(data: dict[str, Any]) -> flow_pb2.Flow:
    return json_format.ParseDict(data, flow_pb2.Flow())


def _filter(data: dict[str, Any]) -> flow_pb2.FlowFilter:
    return json_format.ParseDict(data, flow_pb2.FlowFilter())


@pytest.mark.parametrize(("ff", "flow", "expected"), CASES)
def test_field_semantics(ff: dict[str, Any], flow: dict[str, Any], expected: bool) -> None:
    assert FlowFilterSet([_filter(ff)]).matches_flow(_flow(flow)) is expected
    # The same filter as a blacklist keeps exactly the flows the whitelist drops.
    assert FlowFilterSet(blacklist=[_filter(ff)]).matches_flow(_flow(flow)) is not expected


def test_every_filter_field_is_evaluated_and_tested() -> None:
    names = {field.name for field in flow_pb2.FlowFilter.DESCRIPTOR.fields} - {"experimental"}
    assert set(BUILDERS) == names
    tested = {key for ff, _, _ in CASES for key in ff}
    assert names - tested == set()


INVALID: list[tuple[dict[str, Any], str, object]] = [
    ({"source_ip": ["10.0.0.256"]}, "source_ip", "10.0.0.256"),
    ({"destination_ip": ["10.0.0.0/33"]}, "destination_ip", "10.0.0.0/33"),
    ({"source_ip_xlated": ["nope"]}, "source_ip_xlated", "nope"),
    ({"source_port": ["http"]}, "source_port", "http"),
    ({"destination_port": ["65536"]}, "destination_port", "65536"),
    ({"destination_port": ["+80"]}, "destination_port", "+80"),
    ({"http_status_code": ["600"]}, "http_status_code", "600"),
    ({"http_status_code": ["5xx"]}, "http_status_code", "5xx"),
    ({"http_path": ["("]}, "http_path", "("),
    ({"http_url": ["["]}, "http_url", "["),
    ({"dns_query": ["*bad"]}, "dns_query", "*bad"),
    ({"destination_fqdn": ["bad#name"]}, "destination_fqdn", "bad#name"),
    ({"destination_fqdn": ["cilium.io.."]}, "destination_fqdn", "cilium.io.."),
    ({"source_fqdn": [" "]}, "source_fqdn", " "),
    ({"node_name": ["a/b/c"]}, "node_name", "a/b/c"),
    ({"node_name": [""]}, "node_name", ""),
    ({"node_name": ["node!"]}, "node_name", "node!"),
    ({"source_label": ["k8s:app in ("]}, "source_label", "k8s:app in ("),
    ({"destination_label": ["k8s:app in (a b)"]}, "destination_label", "k8s:app in (a b)"),
    ({"source_label": [" "]}, "source_label", " "),  # Hubble's rewrite makes it the key "any."
    ({"node_labels": ["=foo"]}, "node_labels", "=foo"),
    ({"source_label": ["app=foo bar"]}, "source_label", "app=foo bar"),
    ({"source_pod": [""]}, "source_pod", ""),
    ({"source_service": ["/"]}, "source_service", "/"),
    ({"source_cluster_name": ["c1", ""]}, "source_cluster_name", ""),
    ({"protocol": ["quic"]}, "protocol", "quic"),
    ({"http_method": ["GET"], "event_type": [{"type": 4}]}, "http_method", None),
    ({"http_header": [{"key": "a"}], "event_type": [{"type": 1}]}, "http_header", None),
]


@pytest.mark.parametrize(("ff", "field", "value"), INVALID)
def test_invalid_values_name_field_and_value(ff: dict[str, Any], field: str, value: object) -> None:
    with pytest.raises(InvalidFilterError) as info:
        FlowFilterSet([_filter({"verdict": ["DROPPED"]}), _filter(ff)])
    exc = info.value
    assert isinstance(exc, BridgeError)
    assert exc.field == field
    message = str(exc)
    assert message.startswith(f'whitelist[1]: filter field "{field}"')
    if value is not None:
        assert f'"{value}"' in message
    assert "\n" not in message


def test_empty_experimental_message_sets_nothing() -> None:
    ff = flow_pb2.FlowFilter()
    ff.experimental.SetInParent()
    assert FlowFilterSet([ff]).matches_flow(_flow({}))


@pytest.mark.parametrize(
    ("wire", "field"),
    [
        (bytes([0xC8, 0x02, 0x05]), "#41"),  # field 41 (varint), newer than this schema
        (bytes([0xBA, 0x01, 0x02, 0x50, 0x01]), "tcp_flags.#10"),  # tcp_flags { 10: 1 }
    ],
)
def test_fields_unknown_to_the_schema_are_unsupported(wire: bytes, field: str) -> None:
    base = flow_pb2.FlowFilter(verdict=[flow_pb2.DROPPED]).SerializeToString()
    ff = flow_pb2.FlowFilter.FromString(base + wire)
    with pytest.raises(UnsupportedFilterError) as info:
        FlowFilterSet([ff])
    assert info.value.field == field


def test_and_within_or_across_minus_blacklist() -> None:
    drop_tcp = _flow({"verdict": "DROPPED", **TCP})
    drop_udp = _flow({"verdict": "DROPPED", "l4": {"UDP": {"destination_port": 53}}})
    fwd_tcp = _flow({"verdict": "FORWARDED", **TCP})
    fwd_udp = _flow({"verdict": "FORWARDED", "l4": {"UDP": {"destination_port": 53}}})
    flows = [drop_tcp, drop_udp, fwd_tcp, fwd_udp]

    def kept(filters: FlowFilterSet) -> list[bool]:
        return [filters.matches_flow(flow) for flow in flows]

    both = _filter({"verdict": ["DROPPED"], "protocol": ["tcp"]})
    assert kept(FlowFilterSet([both])) == [True, False, False, False]
    either_verdict = _filter({"verdict": ["DROPPED", "FORWARDED"], "protocol": ["udp"]})
    assert kept(FlowFilterSet([either_verdict])) == [False, True, False, True]
    assert kept(FlowFilterSet([both, either_verdict])) == [True, True, False, True]
    no_dns = _filter({"destination_port": ["53"]})
    assert kept(FlowFilterSet([both, either_verdict], [no_dns])) == [True, False, False, False]
    assert kept(FlowFilterSet(blacklist=[_filter({"verdict": ["FORWARDED"]})])) == [True, True, False, False]
    assert kept(FlowFilterSet([flow_pb2.FlowFilter()])) == [True] * 4
    assert kept(FlowFilterSet([flow_pb2.FlowFilter()], [flow_pb2.FlowFilter()])) == [False] * 4


def test_is_empty_and_from_request() -> None:
    assert FlowFilterSet().is_empty
    assert not FlowFilterSet([flow_pb2.FlowFilter()]).is_empty
    assert not FlowFilterSet(blacklist=[flow_pb2.FlowFilter()]).is_empty
    request = observer_pb2.GetFlowsRequest(blacklist=[_filter({"verdict": ["DROPPED"]})])
    filters = FlowFilterSet.from_request(request)
    assert not filters.matches_flow(_flow({"verdict": "DROPPED"}))
    assert filters.matches_flow(_flow({"verdict": "FORWARDED"}))


def test_non_flow_events_always_match() -> None:
    filters = FlowFilterSet([_filter({"verdict": ["DROPPED"]})], [_filter({"protocol": ["tcp"]})])
    status = observer_pb2.GetFlowsResponse(
        node_status=relay_pb2.NodeStatusEvent(state_change=relay_pb2.NODE_GONE, node_names=["n1"])
    )
    lost = observer_pb2.GetFlowsResponse(lost_events=flow_pb2.LostEvent(num_events_lost=3))
    assert filters.matches(status)
    assert filters.matches(lost)
    assert filters.matches(observer_pb2.GetFlowsResponse(flow=_flow({"verdict": "DROPPED"})))
    assert not filters.matches(observer_pb2.GetFlowsResponse(flow=_flow({"verdict": "DROPPED", **TCP})))
    assert not filters.matches(observer_pb2.GetFlowsResponse(flow=_flow({"verdict": "FORWARDED"})))


def test_filters_from_json_forms() -> None:
    one = filters_from_json('{"destination_port": ["80"], "verdict": ["DROPPED"]}')
    assert one == [flow_pb2.FlowFilter(destination_port=["80"], verdict=[flow_pb2.DROPPED])]
    assert filters_from_json({"destination_port": ["80"], "verdict": ["DROPPED"]}) == one
    many = filters_from_json(['{"protocol": ["tcp"]}', {"tcp_flags": [{"SYN": True}]}])
    assert many == [
        flow_pb2.FlowFilter(protocol=["tcp"]),
        flow_pb2.FlowFilter(tcp_flags=[flow_pb2.TCPFlags(SYN=True)]),
    ]
    assert filters_from_json(b'[{"ip_trace_id": ["42"]}, {}]') == [
        flow_pb2.FlowFilter(ip_trace_id=[42]),
        flow_pb2.FlowFilter(),
    ]
    assert filters_from_json("[]") == []


@pytest.mark.parametrize(
    ("value", "where", "reason"),
    [
        ('{"verdict": ', "filter JSON", "invalid JSON"),
        ("[{}, 5]", "filter JSON[1]", "expected a JSON object, got int"),
        ([{}, {"sourc_ip": ["1.1.1.1"]}], "filter JSON[1]", 'no field named "sourc_ip"'),
        ({"verdict": ["NOPE"]}, "filter JSON[0]", "NOPE"),
        ({"source_port": 80}, "filter JSON[0]", "source_port"),
    ],
)
def test_filters_from_json_errors(value: Any, where: str, reason: str) -> None:
    with pytest.raises(InvalidFilterError) as info:
        filters_from_json(value)
    message = str(info.value)
    assert message.startswith(f"{where}: ")
    assert reason in message
    assert "\n" not in message


# --- recorded flows ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def recorded() -> list[tuple[dict[str, Any], observer_pb2.GetFlowsResponse]]:
    events = []
    for path in sorted(FLOWS_DIR.glob("*.jsonl")):
        for line in path.read_bytes().splitlines():
            response = parse_json_line(line)
            assert response is not None
            events.append((orjson.loads(line)["flow"], response))
    assert len(events) == 680
    return events


def _http_code(flow: dict[str, Any]) -> int:
    return flow.get("l7", {}).get("http", {}).get("code", 0)


def _url_path(flow: dict[str, Any]) -> str | None:
    url = flow.get("l7", {}).get("http", {}).get("url")
    return urlsplit(url).path if url else None


def _dest_port(flow: dict[str, Any]) -> int | None:
    l4 = flow.get("l4", {})
    return next((l4[p].get("destination_port", 0) for p in ("TCP", "UDP", "SCTP") if p in l4), None)


RECORDED = [
    ({"destination_port": ["9990"]}, lambda f: _dest_port(f) == 9990),
    ({"verdict": ["DROPPED"]}, lambda f: f["verdict"] == "DROPPED"),
    ({"http_status_code": ["5+"]}, lambda f: 500 <= _http_code(f) < 600),
    ({"http_status_code": ["200"]}, lambda f: _http_code(f) == 200),
    ({"protocol": ["dns"]}, lambda f: "dns" in f.get("l7", {})),
    ({"protocol": ["icmp"]}, lambda f: "ICMPv6" in f.get("l4", {}) or "ICMPv4" in f.get("l4", {})),
    (
        {"source_label": ["k8s:app=prometheus"]},
        lambda f: "k8s:app=prometheus" in f["source"].get("labels", []),
    ),
    (
        {"destination_label": ["reserved:world"]},
        lambda f: "reserved:world" in f["destination"].get("labels", []),
    ),
    ({"source_pod": ["istio-system/"]}, lambda f: f["source"].get("namespace") == "istio-system"),
    (
        {"dns_query": [r"\.svc\.cluster\.local\.$"]},
        lambda f: (
            re.search(r"\.svc\.cluster\.local\.$", f.get("l7", {}).get("dns", {}).get("query", ""))
            is not None
        ),
    ),
    ({"http_method": ["get"]}, lambda f: f.get("l7", {}).get("http", {}).get("method") == "GET"),
    ({"http_path": ["^/metrics$"]}, lambda f: _url_path(f) == "/metrics"),
    ({"node_name": ["kind-kind/*"]}, lambda f: f["node_name"].startswith("kind-kind/")),
    (
        {"tcp_flags": [{"SYN": True}]},
        lambda f: f.get("l4", {}).get("TCP", {}).get("flags", {}).get("SYN", False),
    ),
    ({"reply": [True]}, lambda f: f.get("is_reply") is True),
    ({"traffic_direction": ["EGRESS"]}, lambda f: f.get("traffic_direction") == "EGRESS"),
    ({"source_ip": ["10.156.2.0/24"]}, lambda f: f["IP"]["source"].startswith("10.156.2.")),
]


@pytest.mark.parametrize(("ff", "expect"), RECORDED, ids=[str(ff) for ff, _ in RECORDED])
def test_recorded_flow_counts(
    recorded: list[tuple[dict[str, Any], Any]], ff: dict[str, Any], expect: Any
) -> None:
    filters = FlowFilterSet(filters_from_json(ff))
    got = sum(filters.matches(response) for _, response in recorded)
    want = sum(bool(expect(flow)) for flow, _ in recorded)
    assert 0 < want < len(recorded)
    assert got == want


def test_recorded_whitelist_minus_blacklist(recorded: list[tuple[dict[str, Any], Any]]) -> None:
    filters = FlowFilterSet(
        filters_from_json([{"protocol": ["http"]}, {"verdict": ["DROPPED"]}]),
        filters_from_json({"http_status_code": ["5+"]}),
    )
    got = [filters.matches(response) for _, response in recorded]
    want = [
        ("http" in flow.get("l7", {}) or flow["verdict"] == "DROPPED") and not 500 <= _http_code(flow) < 600
        for flow, _ in recorded
    ]
    assert got == want
    assert 0 < sum(got) < len(got)
