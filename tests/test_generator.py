"""The flow generator: deterministic, exact, parseable, and shaped like a real Cilium 1.19 cluster."""

from __future__ import annotations

import io
import itertools
import math
import re
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from hubble_bridge.api import flow_pb2, observer_pb2, relay_pb2
from hubble_bridge.errors import BridgeError, ConfigError
from hubble_bridge.flows.codec import event_time_ns, parse_json_line, timestamp_ns, to_json_line
from hubble_bridge.generator import DEFAULT_START_NS, generate_responses, run_generate, write_jsonl
from hubble_bridge.generator import stream as stream_module

GetFlowsResponse = observer_pb2.GetFlowsResponse
TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-01$")
UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
POD_NAMES = {
    "Deployment": re.compile(r"^[a-z-]+-[bcdfghjklmnpqrstvwxz2456789]{10}-[bcdfghjklmnpqrstvwxz2456789]{5}$"),
    "StatefulSet": re.compile(r"^[a-z-]+-\d+$"),
    "DaemonSet": re.compile(r"^[a-z-]+-[bcdfghjklmnpqrstvwxz2456789]{5}$"),
}


@pytest.fixture(scope="module")
def events() -> list[GetFlowsResponse]:
    # Without node outages, whose silenced nodes leave half-seen exchanges; those have their own test.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(stream_module, "RARE_EVERY", 10**12)
        return list(generate_responses(20_000, seed=7))


@pytest.fixture(scope="module")
def flows(events: list[GetFlowsResponse]) -> list[flow_pb2.Flow]:
    return [e.flow for e in events if e.HasField("flow")]


def _jsonl(count: int, seed: int, **kwargs: object) -> bytes:
    out = io.BytesIO()
    assert write_jsonl(out, count, seed, **kwargs) == count
    return out.getvalue()


def _header(flow: flow_pb2.Flow, key: str) -> str:
    values = [h.value for h in flow.l7.http.headers if h.key.lower() == key]
    assert len(values) == 1, f"{key}: {values}"
    return values[0]


def test_same_arguments_give_the_same_bytes_and_another_seed_does_not() -> None:
    first = _jsonl(1500, seed=3)
    assert first == _jsonl(1500, seed=3)
    assert first != _jsonl(1500, seed=4)
    assert first.count(b"\n") == 1500 and first.endswith(b"\n")


def test_a_shorter_run_is_a_prefix_of_a_longer_one() -> None:
    assert _jsonl(2000, seed=9).startswith(_jsonl(150, seed=9))


@pytest.mark.parametrize("count", [0, 1, 7, 99, 100, 1234])
def test_yields_exactly_count_events(count: int) -> None:
    assert sum(1 for _ in generate_responses(count, seed=1)) == count


def test_every_line_parses_back_to_the_same_message() -> None:
    lines = _jsonl(3000, seed=11).splitlines()
    originals = list(generate_responses(3000, seed=11))
    for line, original in zip(lines, originals, strict=True):
        parsed = parse_json_line(line)
        assert parsed == original
        assert to_json_line(parsed) == line


def test_times_start_at_the_fixed_epoch_and_strictly_increase(events: list[GetFlowsResponse]) -> None:
    assert event_time_ns(events[0]) == DEFAULT_START_NS
    assert to_json_line(events[0]).endswith(b'"time":"2026-01-01T00:00:00Z"}')
    times = [event_time_ns(e) for e in events]
    assert all(a < b for a, b in itertools.pairwise(times))
    for e in events:
        if e.HasField("flow"):
            assert timestamp_ns(e.flow.time) == timestamp_ns(e.time)


def test_rate_follows_flows_per_second(events: list[GetFlowsResponse]) -> None:
    span = (event_time_ns(events[-1]) - event_time_ns(events[0])) / 1e9
    assert 8.0 < span < 12.0  # 20 000 events at 2 000/s
    slow = list(generate_responses(2000, seed=7, start_ns=5 * 10**18, flows_per_second=100.0))
    assert event_time_ns(slow[0]) == 5 * 10**18
    assert 16.0 < (event_time_ns(slow[-1]) - event_time_ns(slow[0])) / 1e9 < 24.0


def test_mix_of_event_kinds(flows: list[flow_pb2.Flow]) -> None:
    types = Counter(f.Type for f in flows)
    assert 0.28 < types[flow_pb2.L7] / len(flows) < 0.38
    assert types[flow_pb2.SOCK] > 0
    verdicts = Counter(f.verdict for f in flows)
    for verdict in ("FORWARDED", "DROPPED", "AUDIT", "ERROR", "REDIRECTED", "TRACED", "TRANSLATED"):
        assert verdicts[flow_pb2.Verdict.Value(verdict)] > 0, verdict
    assert verdicts[flow_pb2.FORWARDED] / len(flows) > 0.85
    reasons = {
        f.drop_reason_desc for f in flows if f.verdict == flow_pb2.DROPPED and f.Type == flow_pb2.L3_L4
    }
    assert reasons >= {
        flow_pb2.POLICY_DENIED,
        flow_pb2.POLICY_DENY,
        flow_pb2.CT_MAP_INSERTION_FAILED,
        flow_pb2.STALE_OR_UNROUTABLE_IP,
        flow_pb2.INVALID_SOURCE_IP,
        flow_pb2.SERVICE_BACKEND_NOT_FOUND,
    }
    versions = Counter(f.IP.ipVersion for f in flows)
    assert versions[flow_pb2.IPv6] / len(flows) > 0.05 and versions[flow_pb2.IPv4] / len(flows) > 0.6
    protocols = Counter(f.l4.WhichOneof("protocol") for f in flows)
    assert {"TCP", "UDP", "ICMPv4", "ICMPv6"} <= set(protocols)
    assert any(f.l4.ICMPv6.type == 135 for f in flows if f.l4.HasField("ICMPv6"))
    summaries = {f.Summary for f in flows if f.l4.HasField("TCP") and f.event_type.type == 4}
    for flags in ("SYN", "SYN, ACK", "ACK", "ACK, PSH", "ACK, FIN", "RST"):
        assert f"TCP Flags: {flags}" in summaries
    points = {f.trace_observation_point for f in flows if f.event_type.type == 4}
    for name in ("TO_ENDPOINT", "FROM_ENDPOINT", "TO_OVERLAY", "FROM_OVERLAY", "FROM_NETWORK", "TO_NETWORK"):
        assert flow_pb2.TraceObservationPoint.Value(name) in points, name
    assert {f.trace_reason for f in flows if f.event_type.type == 4} >= {
        flow_pb2.NEW,
        flow_pb2.ESTABLISHED,
        flow_pb2.REPLY,
    }
    kafka = {(f.l7.kafka.api_key, f.l7.type) for f in flows if f.l7.HasField("kafka")}
    assert kafka == {(k, t) for k in ("produce", "fetch") for t in (flow_pb2.REQUEST, flow_pb2.RESPONSE)}


def test_http_exchanges_share_request_id_and_trace(flows: list[flow_pb2.Flow]) -> None:
    by_request: dict[str, list[flow_pb2.Flow]] = defaultdict(list)
    for f in flows:
        if f.l7.HasField("http"):
            by_request[_header(f, "x-request-id")].append(f)
    # Exchanges that began late may end after the last event; judge the complete ones.
    horizon = timestamp_ns(flows[0].time) + 4 * 10**9
    by_request = {k: g for k, g in by_request.items() if timestamp_ns(g[0].time) < horizon}
    assert len(by_request) > 400
    both_sides = 0
    sides: Counter[tuple[int, int]] = Counter()
    statuses: Counter[int] = Counter()
    for request_id, group in by_request.items():
        assert UUID4.match(request_id)
        assert len(group) in (2, 4)
        sides[len(group), group[0].traffic_direction] += 1
        parents = {h.value for f in group for h in f.l7.http.headers if h.key == "Traceparent"}
        assert len(parents) <= 1
        for f in group:
            assert f.event_type.type == 129 and f.Type == flow_pb2.L7
            if parents:
                trace_id = TRACEPARENT.match(next(iter(parents)))
                assert trace_id is not None and f.trace_context.parent.trace_id == trace_id.group(1)
            else:
                assert not f.HasField("trace_context")
            if f.l7.type == flow_pb2.RESPONSE:
                statuses[f.l7.http.code] += 1
                assert f.l7.latency_ns > 0 and f.is_reply.value
                assert f.Summary == (
                    f"{f.l7.http.protocol} {f.l7.http.code} {f.l7.latency_ns // 1_000_000}ms "
                    f"({f.l7.http.method} {f.l7.http.url})"
                )
            else:
                assert f.HasField("is_reply") and not f.is_reply.value and f.l7.http.code == 0
                assert f.Summary == f"{f.l7.http.protocol} {f.l7.http.method} {f.l7.http.url}"
        if len(group) == 4:
            both_sides += 1
            client_side = [f for f in group if f.traffic_direction == flow_pb2.EGRESS]
            server_side = [f for f in group if f.traffic_direction == flow_pb2.INGRESS]
            assert len(client_side) == len(server_side) == 2
            request, response = sorted(client_side, key=lambda f: f.l7.type)
            assert (response.IP.source, response.IP.destination) == (
                request.IP.destination,
                request.IP.source,
            )
            assert response.source.pod_name == request.destination.pod_name
            # Each node knows the endpoint ID of its own pods only.
            server_request = next(f for f in server_side if f.l7.type == flow_pb2.REQUEST)
            assert request.source.ID and server_request.destination.ID
            if request.node_name != server_request.node_name:
                assert request.destination.ID == 0 and server_request.source.ID == 0
            server_latency = next(f.l7.latency_ns for f in server_side if f.l7.type == flow_pb2.RESPONSE)
            assert response.l7.latency_ns > server_latency
    assert both_sides / len(by_request) > 0.6
    assert sides[2, flow_pb2.EGRESS] > 0 and sides[2, flow_pb2.INGRESS] > 0  # only one proxy saw some
    total = sum(statuses.values())
    assert statuses[200] / total > 0.5
    assert {201, 204, 301, 404, 429, 500, 503} <= set(statuses)
    urls = [f.l7.http.url for f in flows if f.l7.HasField("http")]
    assert any(re.search(r"[?&](token|api_key|session_token)=", u) for u in urls)
    assert any(
        h.key == "Authorization" and h.value.startswith("Bearer ") for f in flows for h in f.l7.http.headers
    )
    assert {f.l7.http.protocol for f in flows if f.l7.HasField("http")} == {"HTTP/1.1", "HTTP/2"}


def test_dns_lookups(flows: list[flow_pb2.Flow]) -> None:
    dns = [f for f in flows if f.l7.HasField("dns")]
    responses = [f for f in dns if f.l7.type == flow_pb2.RESPONSE]
    assert len(responses) > 300
    for f in dns:
        assert f.l7.dns.query.endswith(".") and f.l7.dns.observation_source == "proxy"
        assert list(f.l7.dns.qtypes) in (["A"], ["AAAA"])
        port = f.l4.UDP.destination_port if f.l7.type == flow_pb2.REQUEST else f.l4.UDP.source_port
        assert port == 53
        assert f.l7.latency_ns == 0  # Hubble times only HTTP
    rcodes = Counter(f.l7.dns.rcode for f in responses)
    assert 0.06 < rcodes[3] / len(responses) < 0.15
    assert 0 < rcodes[2] / len(responses) < 0.05
    for f in responses:
        if f.l7.dns.rcode:
            assert not f.l7.dns.ips and "RCode: " in f.Summary
        elif f.l7.dns.ips:
            assert f.Summary.startswith(f'DNS Answer "{",".join(f.l7.dns.ips)}"')
            assert f.l7.dns.ttl > 0


def test_event_types_follow_hubble_numbering(flows: list[flow_pb2.Flow]) -> None:
    for f in flows:
        kind, sub = f.event_type.type, f.event_type.sub_type
        assert (kind == 129) == (f.Type == flow_pb2.L7)
        if kind == 4:
            point = f.trace_observation_point
            assert sub == (0 if point == flow_pb2.TO_ENDPOINT else point) and point != 0
            assert f.verdict == flow_pb2.FORWARDED
        elif kind == 1:
            assert f.verdict == flow_pb2.DROPPED and sub == f.drop_reason == f.drop_reason_desc
            assert not f.HasField("is_reply")
        elif kind == 5:
            assert f.trace_observation_point == 0
            if f.verdict == flow_pb2.DROPPED:
                assert f.drop_reason == f.drop_reason_desc in (flow_pb2.POLICY_DENIED, flow_pb2.POLICY_DENY)
                denied = list(f.ingress_denied_by) + list(f.egress_denied_by)
                assert bool(denied) == (f.drop_reason_desc == flow_pb2.POLICY_DENY)
            elif f.verdict in (flow_pb2.FORWARDED, flow_pb2.REDIRECTED):
                assert list(f.ingress_allowed_by) + list(f.egress_allowed_by)
        elif kind == 7:
            assert f.Type == flow_pb2.SOCK and f.sock_xlate_point == sub and f.socket_cookie and f.cgroup_id
        if f.verdict != flow_pb2.DROPPED:
            assert f.drop_reason == 0 and f.drop_reason_desc == 0


def test_tcp_connections_open_with_a_syn(flows: list[flow_pb2.Flow]) -> None:
    first: dict[tuple[str, str, int, int], flow_pb2.Flow] = {}
    for f in flows:
        if f.event_type.type == 4 and f.l4.HasField("TCP"):
            tcp = f.l4.TCP
            forward = (f.IP.source, f.IP.destination, tcp.source_port, tcp.destination_port)
            backward = (f.IP.destination, f.IP.source, tcp.destination_port, tcp.source_port)
            if forward not in first and backward not in first:
                first[forward] = f
    assert len(first) > 200
    for f in first.values():
        assert f.l4.TCP.flags == flow_pb2.TCPFlags(SYN=True)
        assert f.trace_reason == flow_pb2.NEW and not f.is_reply.value


def test_endpoints_look_like_a_cluster(events: list[GetFlowsResponse], flows: list[flow_pb2.Flow]) -> None:
    nodes = {e.node_name for e in events if e.HasField("flow")}
    assert 3 <= len(nodes) <= 5 and all(re.fullmatch(r"prod-eu1/node-[a-e]", n) for n in nodes)
    uuids = [f.uuid for f in flows]
    assert len(set(uuids)) == len(uuids) and all(UUID4.match(u) for u in uuids[:500])
    for event in events:
        if event.HasField("flow"):
            assert event.flow.node_name == event.node_name
            assert event.flow.emitter.name == "Hubble"
    pods = {}
    for f in flows:
        for ep in (f.source, f.destination):
            if ep.pod_name:
                pods[ep.pod_name] = ep
    assert len(pods) > 20
    for name, ep in pods.items():
        (workload,) = ep.workloads
        assert POD_NAMES[workload.kind].match(name) and name.startswith(workload.name)
        assert ep.cluster_name == "prod-eu1" and ep.identity >= 256
        assert "k8s:io.cilium.k8s.policy.cluster=prod-eu1" in ep.labels
        assert f"k8s:io.kubernetes.pod.namespace={ep.namespace}" in ep.labels
        assert list(ep.labels) == sorted(ep.labels)
    world = [f for f in flows if "reserved:world" in f.destination.labels and f.destination_names]
    assert world and all(f.destination.identity == 2 for f in world)
    assert any(f.destination_service.name for f in flows) and any(f.source_service.name for f in flows)


def test_rare_events_pair_and_silence_the_node(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stream_module, "RARE_EVERY", 100)
    events = list(generate_responses(4000, seed=2))
    lost = [e for e in events if e.HasField("lost_events")]
    assert lost and all(e.lost_events.num_events_lost > 0 and e.node_name for e in lost)
    assert {e.lost_events.source for e in lost} == {
        flow_pb2.HUBBLE_RING_BUFFER,
        flow_pb2.PERF_EVENT_RING_BUFFER,
    }
    assert all(
        e.lost_events.HasField("cpu") for e in lost if e.lost_events.source == flow_pb2.PERF_EVENT_RING_BUFFER
    )
    down: set[str] = set()
    transitions = 0
    for e in events:
        if e.HasField("node_status"):
            (node,) = e.node_status.node_names
            if e.node_status.state_change == relay_pb2.NODE_UNAVAILABLE:
                assert node not in down and "connection refused" in e.node_status.message
                down.add(node)
            else:
                assert e.node_status.state_change == relay_pb2.NODE_CONNECTED and node in down
                down.discard(node)
                transitions += 1
        elif e.HasField("flow"):
            assert e.node_name not in down
    assert transitions > 0


def test_tiny_runs_are_all_flows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stream_module, "RARE_EVERY", 1)
    assert all(e.HasField("flow") for e in generate_responses(99, seed=5))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"count": -1}, "count"),
        ({"count": 1.5}, "count"),
        ({"count": 10, "flows_per_second": 0.0}, "flows per second"),
        ({"count": 10, "flows_per_second": math.nan}, "flows per second"),
        ({"count": 10, "start_ns": -5}, "start time"),
    ],
)
def test_bad_arguments_are_config_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        generate_responses(**kwargs)


def test_run_generate_writes_the_file(tmp_path: Path) -> None:
    target = tmp_path / "flows.jsonl"
    assert run_generate(120, 4, target) == 0
    assert target.read_bytes() == _jsonl(120, seed=4)


def test_run_generate_writes_stdout(capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    assert run_generate(25, 6, None) == 0
    out, _ = capsysbinary.readouterr()
    assert out == _jsonl(25, seed=6)


@pytest.mark.parametrize("where", ["missing/flows.jsonl", "."])
def test_run_generate_reports_an_unwritable_output(tmp_path: Path, where: str) -> None:
    target = tmp_path / where
    with pytest.raises(BridgeError, match=re.escape(str(target))) as caught:
        run_generate(10, 0, target)
    assert "\n" not in str(caught.value)
