"""Log records for drops, denials and audits: recorded flows in, exact records out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hubble_bridge.api import observer_pb2
from hubble_bridge.errors import ConfigError
from hubble_bridge.flows.codec import parse_event_dict, parse_json_line
from hubble_bridge.generator import generate_responses
from hubble_bridge.mapping import logs
from hubble_bridge.mapping.limits import AttributeLimits
from hubble_bridge.mapping.logs import (
    EVENT_FLOW,
    EVENT_FLOW_AUDIT,
    EVENT_FLOW_DROPPED,
    EVENT_FLOW_ERROR,
    EVENT_LOST_EVENTS,
    EVENT_NODE_STATUS,
    EVENT_POLICY_DENIED,
    LogConfig,
    event_log,
    flow_log,
    flow_log_of,
    lost_events_log,
    node_status_log,
)
from hubble_bridge.mapping.redact import RedactConfig
from hubble_bridge.mapping.summary import compact_summary
from hubble_bridge.telemetry import Severity

FLOWS = Path(__file__).resolve().parents[1].parent / "shared" / "flows"
T0 = "2024-05-06T07:08:09.123456789Z"
T0_NS = 1714979289123456789


def _events(name: str) -> list[observer_pb2.GetFlowsResponse]:
    events = [parse_json_line(line) for line in (FLOWS / name).read_bytes().splitlines()]
    assert all(e is not None for e in events)
    return events  # type: ignore[return-value]


def _flow(**fields: Any) -> observer_pb2.GetFlowsResponse:
    """A response around a flow given in Hubble's JSON form (the shape `hubble observe -o json` prints)."""
    flow = {"time": T0, "node_name": "node-1", **fields}
    response = parse_event_dict({"flow": flow, "node_name": "node-1", "time": T0})
    assert response is not None
    return response


XWING = {
    "ID": 12,
    "identity": 1234,
    "namespace": "default",
    "pod_name": "xwing",
    "labels": ["k8s:app=xwing", "k8s:io.kubernetes.pod.namespace=default"],
}
DEATHSTAR = {
    "ID": 34,
    "identity": 5678,
    "namespace": "empire",
    "pod_name": "deathstar-7848d6c4d5-th9v2",
    "labels": ["k8s:app=deathstar"],
    "workloads": [{"name": "deathstar", "kind": "Deployment"}],
}
SYN = {"TCP": {"source_port": 44916, "destination_port": 80, "flags": {"SYN": True}}}
IPV4 = {"source": "10.244.1.60", "destination": "10.244.1.5", "ipVersion": "IPv4"}


def test_recorded_drops_give_exact_records() -> None:
    icmp, tcp = (flow_log(e, LogConfig()) for e in _events("kind-drops-2.jsonl"))
    assert icmp is not None and tcp is not None

    assert icmp.body == (
        "Aug 21 12:12:13.517: fe80::64d8:8aff:fe72:fc14 (unknown) <> ff02::2 (unknown) "
        "Invalid source ip DROPPED (ICMPv6 RouterSolicitation)"
    )
    assert icmp.event_name == EVENT_FLOW_DROPPED
    assert icmp.severity is Severity.WARN
    assert icmp.time_ns == 1692619933517394084
    assert icmp.attributes == {
        "source.address": "fe80::64d8:8aff:fe72:fc14",
        "destination.address": "ff02::2",
        "network.type": "ipv6",
        "network.transport": "ipv6-icmp",
        "hubble.icmp.type": 133,
        "hubble.icmp.code": 0,
        "hubble.verdict": "DROPPED",
        "hubble.drop.reason": "INVALID_SOURCE_IP",
        "hubble.drop.reason_code": 132,
        "hubble.node.name": "kind-kind/kind-worker",
    }
    assert icmp.trace_id == b""

    assert tcp.body == (
        "Aug 21 12:12:18.510: default/xwing:44916 (unknown) <> "
        "default/deathstar-7848d6c4d5-th9v2:80 (unknown) Policy denied DROPPED (TCP Flags: SYN)"
    )
    assert tcp.event_name == EVENT_FLOW_DROPPED
    assert tcp.severity is Severity.WARN
    assert tcp.time_ns == 1692619938510175415
    assert tcp.attributes == {
        "source.address": "10.244.1.60",
        "destination.address": "10.244.1.5",
        "network.type": "ipv4",
        "network.transport": "tcp",
        "source.port": 44916,
        "destination.port": 80,
        "hubble.verdict": "DROPPED",
        "hubble.drop.reason": "POLICY_DENIED",
        "hubble.drop.reason_code": 133,
        "hubble.node.name": "kind-kind/kind-worker",
        "hubble.source.namespace": "default",
        "hubble.source.pod": "xwing",
        "hubble.source.workload": "xwing",
        "hubble.destination.namespace": "default",
        "hubble.destination.pod": "deathstar-7848d6c4d5-th9v2",
        "hubble.destination.workload": "deathstar-7848d6c4d5-th9v2",
    }
    # No direction: observed at the source, which is a pod; the cluster comes from "cluster/node".
    assert dict(tcp.resource) == {
        "service.name": "xwing",
        "service.namespace": "default",
        "k8s.namespace.name": "default",
        "k8s.pod.name": "xwing",
        "k8s.node.name": "kind-worker",
        "k8s.cluster.name": "kind-kind",
    }


def _policy_deny(**overrides: Any) -> observer_pb2.GetFlowsResponse:
    # Shaped like a real Cilium 1.18 policy-verdict drop (see hubble-api.md section 7).
    fields = {
        "uuid": "5b3a4c7e-0d61-4c44-9c8e-3f7f3b9f8a01",
        "verdict": "DROPPED",
        "drop_reason": 181,
        "IP": IPV4,
        "l4": SYN,
        "source": XWING,
        "destination": DEATHSTAR,
        "Type": "L3_L4",
        "event_type": {"type": 5},
        "traffic_direction": "EGRESS",
        "policy_match_type": 1,
        "drop_reason_desc": "POLICY_DENY",
        "is_reply": False,
        "Summary": "TCP Flags: SYN",
        "egress_denied_by": [
            {
                "name": "deny-tg-to-echo",
                "namespace": "net-lab",
                "revision": "6",
                "kind": "CiliumNetworkPolicy",
            },
            {"name": "cluster-deny", "kind": "CiliumClusterwideNetworkPolicy"},
        ],
        "trace_context": {"parent": {"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736"}},
        **overrides,
    }
    return _flow(**fields)


def test_policy_verdict_denial() -> None:
    record = flow_log(_policy_deny(), LogConfig())
    assert record is not None
    assert record.event_name == EVENT_POLICY_DENIED
    assert record.severity is Severity.WARN
    assert record.time_ns == T0_NS
    assert record.body == (
        "May  6 07:08:09.123: default/xwing:44916 (ID:1234) -> "
        "empire/deathstar-7848d6c4d5-th9v2:80 (ID:5678) policy-verdict:L3-Only EGRESS DENIED (TCP Flags: SYN)"
    )
    attrs = record.attributes
    assert attrs["hubble.policy.names"] == ["net-lab/deny-tg-to-echo", "cluster-deny"]
    assert attrs["hubble.policy.match_type"] == "L3-Only"
    assert attrs["hubble.drop.reason"] == "POLICY_DENY"
    assert attrs["hubble.drop.reason_code"] == 181
    assert attrs["hubble.traffic_direction"] == "EGRESS"
    assert attrs["hubble.event_type"] == "policy-verdict"
    assert attrs["hubble.is_reply"] is False
    assert attrs["hubble.flow.uuid"] == "5b3a4c7e-0d61-4c44-9c8e-3f7f3b9f8a01"
    assert attrs["hubble.source.identity"] == 1234
    assert attrs["hubble.source.labels"] == XWING["labels"]
    assert attrs["hubble.destination.workload"] == "deathstar"
    assert record.trace_id == bytes.fromhex("4bf92f3577b34da6a3ce929d0e0e4736")
    # EGRESS: observed where it left, the source pod.
    assert dict(record.resource)["k8s.pod.name"] == "xwing"


def test_policy_denial_does_not_depend_on_the_verdict_list() -> None:
    only_audits = LogConfig(verdicts=frozenset({"AUDIT"}))
    record = flow_log(_policy_deny(), only_audits)
    assert record is not None and record.event_name == EVENT_POLICY_DENIED
    # A denied-by list denies even when the verdict field says otherwise.
    forwarded = _policy_deny(verdict="FORWARDED", drop_reason=0, drop_reason_desc="DROP_REASON_UNKNOWN")
    assert (r := flow_log(forwarded, only_audits)) is not None and r.event_name == EVENT_POLICY_DENIED
    # Switched off, a denying flow is just a drop; with no matching verdict, nothing.
    record = flow_log(_policy_deny(), LogConfig(policy_denials=False))
    assert record is not None and record.event_name == EVENT_FLOW_DROPPED
    assert flow_log(_policy_deny(), LogConfig(policy_denials=False, verdicts=frozenset())) is None


def test_audit_record() -> None:
    audited = _policy_deny(
        verdict="AUDIT",
        drop_reason=0,
        drop_reason_desc="DROP_REASON_UNKNOWN",
        traffic_direction="INGRESS",
        policy_match_type=2,
        egress_denied_by=[],
        ingress_allowed_by=[{"name": "allow-web", "namespace": "empire"}],
    )
    record = flow_log(audited, LogConfig())
    assert record is not None
    assert record.event_name == EVENT_FLOW_AUDIT
    assert record.severity is Severity.INFO
    assert record.body.endswith("policy-verdict:L3-L4 INGRESS AUDITED (TCP Flags: SYN)")
    assert record.attributes["hubble.policy.names"] == ["empire/allow-web"]
    assert "hubble.drop.reason" not in record.attributes
    # INGRESS: observed where it arrived, the destination.
    assert dict(record.resource)["service.name"] == "deathstar"
    assert dict(record.resource)["k8s.deployment.name"] == "deathstar"


def test_error_record_and_trace_point() -> None:
    errored = _flow(
        verdict="ERROR",
        IP=IPV4,
        l4={"UDP": {"source_port": 5353, "destination_port": 53}},
        source=XWING,
        destination={"identity": 2, "labels": ["reserved:world"]},
        destination_names=["dns.google"],
        event_type={"type": 4, "sub_type": 3},
        trace_observation_point="TO_STACK",
        is_reply=True,
        trace_context={"parent": {"trace_id": "not-hex-at-all-but-32-chars-long"}},
    )
    record = flow_log(errored, LogConfig())
    assert record is not None
    assert record.event_name == EVENT_FLOW_ERROR
    assert record.severity is Severity.ERROR
    # A reply: Hubble flips the endpoints and the arrow; world shows its DNS name and reserved identity.
    assert record.body == (
        "May  6 07:08:09.123: dns.google:53 (world) <- default/xwing:5353 (ID:1234) to-stack ERROR (UDP)"
    )
    assert record.attributes["hubble.trace_observation_point"] == "TO_STACK"
    assert record.attributes["hubble.event_type"] == "trace"
    assert record.attributes["hubble.destination.workload"] == "world"
    assert record.attributes["network.transport"] == "udp"
    assert record.trace_id == b""


def test_forwarded_flows_only_with_all_flows() -> None:
    forwarded = _flow(
        verdict="FORWARDED",
        IP=IPV4,
        l4=SYN,
        source=XWING,
        destination=DEATHSTAR,
        event_type={"type": 4},
        is_reply=False,
    )
    assert flow_log(forwarded, LogConfig()) is None
    record = flow_log(forwarded, LogConfig(all_flows=True))
    assert record is not None
    assert record.event_name == EVENT_FLOW
    assert record.severity is Severity.INFO
    assert (
        " -> empire/deathstar-7848d6c4d5-th9v2:80 (ID:5678) to-endpoint FORWARDED (TCP Flags: SYN)"
        in record.body
    )
    # Any verdict can be listed; unlisted ones get the generic event.
    record = flow_log(forwarded, LogConfig(verdicts=frozenset({"forwarded"})))
    assert record is not None and record.event_name == EVENT_FLOW


def test_recorded_http_flows() -> None:
    events = _events("gke-istio-http-348.jsonl")
    assert [flow_log(e, LogConfig()) for e in events] == [None] * len(events)
    records = [flow_log(e, LogConfig(all_flows=True)) for e in events]
    assert all(r is not None and r.event_name == EVENT_FLOW for r in records)
    assert records[0] is not None and records[0].body == (
        "Oct  4 14:28:38.735: istio-system/prometheus-6655946b9f-6xcpf:48532 (ID:16781) -> "
        "10.128.0.4:9990 (world) http-request FORWARDED (HTTP/1.1 GET http://10.128.0.4:9990/metrics)"
    )
    bodies = [r.body for r in records if r is not None]
    assert sum(" http-request FORWARDED (HTTP/1.1 " in b for b in bodies) == 175
    assert sum(" http-response FORWARDED (HTTP/1.1 " in b for b in bodies) == 173


def test_body_redacts_urls() -> None:
    url = "http://admin:hunter2@api.empire:8080/v1/exhaust-port?token=s3cret&page=2"
    denied_request = _flow(
        verdict="DROPPED",
        IP=IPV4,
        l4=SYN,
        source=XWING,
        destination=DEATHSTAR,
        Type="L7",
        event_type={"type": 129},
        traffic_direction="INGRESS",
        is_reply=False,
        l7={"type": "REQUEST", "http": {"method": "POST", "url": url, "protocol": "HTTP/1.1"}},
        Summary=f"HTTP/1.1 POST {url}",
    )
    record = flow_log(denied_request, LogConfig(redact=RedactConfig(keep_query_params=("page",))))
    assert record is not None
    assert record.body.endswith(
        "http-request DROPPED (HTTP/1.1 POST http://REDACTED:REDACTED@api.empire:8080/v1/exhaust-port"
        "?token=REDACTED&page=2)"
    )
    # Without a recorded Summary the derived one is redacted the same way.
    denied_request.flow.ClearField("Summary")
    record = flow_log(denied_request, LogConfig())
    assert record is not None and "hunter2" not in record.body and "s3cret" not in record.body
    assert "exhaust-port?token=REDACTED&page=REDACTED)" in record.body


def test_lost_events_record() -> None:
    response = parse_event_dict(
        {
            "lost_events": {"source": "PERF_EVENT_RING_BUFFER", "num_events_lost": "42", "cpu": 3},
            "node_name": "prod/worker-2",
            "time": T0,
        }
    )
    assert response is not None
    record = lost_events_log(response, LogConfig())
    assert record == event_log(response, LogConfig())
    assert record.body == "EVENTS LOST: PERF_EVENT_RING_BUFFER CPU(3) 42"
    assert record.event_name == EVENT_LOST_EVENTS
    assert record.severity is Severity.WARN
    assert record.time_ns == T0_NS
    assert record.attributes == {
        "hubble.lost_events.source": "PERF_EVENT_RING_BUFFER",
        "hubble.lost_events.count": 42,
        "hubble.lost_events.cpu": 3,
        "hubble.node.name": "prod/worker-2",
    }
    assert dict(record.resource) == {
        "service.name": "hubble",
        "k8s.node.name": "worker-2",
        "k8s.cluster.name": "prod",
    }


@pytest.mark.parametrize(
    ("state", "message", "severity", "text"),
    [
        ("NODE_CONNECTED", "", Severity.INFO, "Receiving flows from 2 nodes: kind-worker, kind-worker2"),
        ("NODE_UNAVAILABLE", "", Severity.WARN, "2 nodes are unavailable: kind-worker, kind-worker2"),
        (
            "NODE_ERROR",
            'dial "x": refused',
            Severity.WARN,
            'Error "dial \\"x\\": refused" on 2 nodes: kind-worker, kind-worker2',
        ),
        ("NODE_GONE", "", Severity.INFO, "2 nodes removed from cluster: kind-worker, kind-worker2"),
    ],
)
def test_node_status_record(state: str, message: str, severity: Severity, text: str) -> None:
    status = {"state_change": state, "node_names": ["kind-worker", "kind-worker2"], "message": message}
    response = parse_event_dict({"node_status": status, "node_name": "relay-0", "time": T0})
    assert response is not None
    record = node_status_log(response, LogConfig(cluster_name="kind"))
    assert record.body == f"May  6 07:08:09.123 [relay-0]: {text}"
    assert record.event_name == EVENT_NODE_STATUS
    assert record.severity is severity
    assert record.attributes["hubble.node_status.state"] == state
    assert record.attributes["hubble.node_status.node_names"] == ["kind-worker", "kind-worker2"]
    assert record.attributes.get("hubble.node_status.message", "") == message
    assert dict(record.resource)["k8s.cluster.name"] == "kind"


def test_many_node_names_are_cut_off() -> None:
    names = [f"worker-{i:02d}" for i in range(100)]
    response = parse_event_dict({"node_status": {"state_change": "NODE_UNAVAILABLE", "node_names": names}})
    assert response is not None
    record = node_status_log(response, LogConfig())
    assert record.body.endswith(
        ": 100 nodes are unavailable: worker-00, worker-01, worker-02, worker-03 (and 96 more)"
    )
    assert record.attributes["hubble.node_status.node_names"] == names[:64]


def test_attribute_values_are_bounded() -> None:
    labels = [f"k8s:l{i}=v" for i in range(200)]
    huge = _flow(
        verdict="DROPPED",
        IP=IPV4,
        l4=SYN,
        drop_reason_desc="POLICY_DENIED",
        source={"namespace": "ns", "pod_name": "p" * 10_000, "labels": labels},
        destination={"labels": ["k8s:app=ünïcödé" * 1000]},
    )
    record = flow_log(huge, LogConfig(limits=AttributeLimits(max_value_length=4096, max_list_items=64)))
    assert record is not None
    assert record.attributes["hubble.source.pod"] == "p" * 4096
    assert len(record.attributes["hubble.source.labels"]) == 64
    label = record.attributes["hubble.destination.labels"][0]
    assert len(label.encode()) <= 4096 and label.startswith("k8s:app=ünïcödé")
    assert len(record.body.encode()) <= 4096


def test_compact_summary_matches_every_recorded_summary() -> None:
    # The derived summary (used when a field mask drops `Summary`) is Cilium's own wording.
    for name in ("gke-istio-http-348.jsonl", "gke-istio-dns-330.jsonl"):
        for event in _events(name):
            expected = compact_summary(event)
            event.flow.ClearField("Summary")
            assert compact_summary(event) == expected


def test_hostnames_follow_hubble() -> None:
    v6 = _flow(
        verdict="DROPPED",
        IP={"source": "fd00::1", "destination": "fd00::2", "ipVersion": "IPv6"},
        l4=SYN,
        destination_service={"name": "echo", "namespace": "net-lab"},
        event_type={"type": 1, "sub_type": 133},
        auth_type="SPIRE",
    )
    assert compact_summary(v6) == (
        "May  6 07:08:09.123: [fd00::1]:44916 (unknown) <> net-lab/echo:80 (unknown) "
        "Policy denied DROPPED (TCP Flags: SYN; SPIRE)"
    )


def test_non_flow_events_and_bad_config() -> None:
    assert flow_log(observer_pb2.GetFlowsResponse(), LogConfig()) is None
    assert event_log(observer_pb2.GetFlowsResponse(), LogConfig()) is None
    LogConfig().validate()
    with pytest.raises(ConfigError, match=r"unknown verdict 'DENIED'.*FORWARDED"):
        LogConfig(verdicts=frozenset({"DROPPED", "DENIED"})).validate()
    with pytest.raises(ConfigError, match="max_list_items"):
        LogConfig(limits=AttributeLimits(max_list_items=0)).validate()


def test_only_flows_make_flow_records_and_flow_log_of_matches() -> None:
    # A response without a flow reads as an empty Flow (verdict 0): selecting everything still gives nothing.
    everything = LogConfig(verdicts=frozenset({"VERDICT_UNKNOWN", "DROPPED"}), all_flows=True)
    lost = parse_event_dict({"lost_events": {"source": "PERF_EVENT_RING_BUFFER", "num_events_lost": "3"}})
    assert lost is not None
    for response in (observer_pb2.GetFlowsResponse(), lost):
        assert flow_log(response, everything) is None
    for config in (LogConfig(), everything):
        for response in [*_events("kind-drops-2.jsonl"), *_events("gke-istio-http-348.jsonl")[:20]]:
            assert flow_log_of(response.flow, response, config) == flow_log(response, config)


def test_endpoint_cache_starting_over_changes_no_record(monkeypatch: pytest.MonkeyPatch) -> None:
    events = [e for e in generate_responses(400, seed=2) if e.WhichOneof("response_types") == "flow"]
    limits = AttributeLimits(max_value_length=24, max_attributes=20, max_list_items=2)
    cached = LogConfig(all_flows=True, limits=limits)
    expected = [flow_log(e, cached) for e in events]
    # A fresh configuration per event: nothing found in any cache.
    assert [flow_log(e, LogConfig(all_flows=True, limits=limits)) for e in events] == expected
    monkeypatch.setattr(logs, "_ENDPOINT_CACHE_SIZE", 3)
    monkeypatch.setattr(logs, "_NODES_PER_ENDPOINT", 1)
    tiny = LogConfig(all_flows=True, limits=limits)
    assert [flow_log(e, tiny) for e in events] == expected
    assert len(tiny._endpoints) <= 3


def test_one_endpoint_seen_on_two_nodes_has_two_resources() -> None:
    config = LogConfig()
    on_a, on_b, on_a_again = (
        flow_log(_flow(verdict="DROPPED", source=XWING, traffic_direction="EGRESS", node_name=node), config)
        for node in ("east/node-a", "west/node-b", "east/node-a")
    )
    assert on_a is not None and on_b is not None and on_a_again is not None
    nodes = [dict(r.resource)["k8s.node.name"] for r in (on_a, on_b, on_a_again)]
    clusters = [dict(r.resource)["k8s.cluster.name"] for r in (on_a, on_b, on_a_again)]
    assert nodes == ["node-a", "node-b", "node-a"] and clusters == ["east", "west", "east"]
    assert on_a.attributes == on_a_again.attributes
    assert on_b.attributes == {**on_a.attributes, "hubble.node.name": "west/node-b"}
