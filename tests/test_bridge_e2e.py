"""End to end with real processes and real protocols.

`hubble-otlp replay` serves generated and recorded flows over Hubble's gRPC API,
`hubble-otlp bridge` reads them as it reads Hubble Relay and exports to a real
OTLP receiver (the collector services of opentelemetry-proto) over gRPC and
over HTTP/protobuf; a real Prometheus scrapes the bridge's /metrics.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import threading
import urllib.parse
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

from hubble_bridge.api import flow_pb2, observer_pb2
from hubble_bridge.flows.codec import timestamp_ns
from hubble_bridge.mapping.logs import LogConfig, flow_log
from hubble_bridge.mapping.metrics import MetricsAggregator, MetricsConfig
from hubble_bridge.mapping.semconv import HUBBLE_FLOW_UUID, HUBBLE_L7_UNANSWERED
from hubble_bridge.sources.files import read_events
from tests.conftest import SHARED_FLOWS, run_cli
from tests.otlp_receiver import OtlpReceiver, attrs, latest_points
from tests.procs import CliProcess, free_port

GENERATED = 3000
FAST_METRICS = {"OTEL_METRIC_EXPORT_INTERVAL": "300"}
# Spans and logs are held until shutdown, so their arrival proves SIGTERM flushes what is pending.
HOLD_SPANS = {"OTEL_BSP_SCHEDULE_DELAY": "600000"}


@pytest.fixture(scope="module")
def flow_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    out = tmp_path_factory.mktemp("flows") / "generated.jsonl"
    result = run_cli("generate", "--count", str(GENERATED), "--seed", "11", "--output", str(out))
    assert result.returncode == 0, result.stderr
    return [out, *sorted(SHARED_FLOWS.glob("*.jsonl"))]


@pytest.fixture(scope="module")
def events(flow_files: list[Path]) -> list[observer_pb2.GetFlowsResponse]:
    return list(read_events(flow_files))


@pytest.fixture
def relay(flow_files: list[Path], tmp_path: Path):  # type: ignore[no-untyped-def]
    socket_path = tmp_path / "relay.sock"
    with CliProcess("replay", *map(str, flow_files), "--listen", f"unix://{socket_path}") as proc:
        proc.wait_for_line(r"serving \d+ events")
        yield f"unix://{socket_path}"
        assert proc.stop() == 0


def flows_processed(receiver: OtlpReceiver) -> int:
    return int(sum(p.as_int for p in latest_points(receiver, "hubble.flows_processed")))


def run_bridge_until_all_seen(
    relay: str, receiver_endpoint: str, protocol: str, n_flows: int, receiver: OtlpReceiver
) -> CliProcess:
    bridge = CliProcess(
        "bridge",
        "--relay",
        relay,
        "--since",
        "2000-01-01T00:00:00Z",
        "--otlp-endpoint",
        receiver_endpoint,
        "--otlp-protocol",
        protocol,
        "--otlp-insecure",
        "--otlp-header",
        "x-tenant=e2e",
        env={**FAST_METRICS, **HOLD_SPANS},
    )
    seen = receiver.wait_for(lambda: flows_processed(receiver) == n_flows, timeout=60)
    assert seen, f"bridge exported {flows_processed(receiver)} of {n_flows} flows\n{bridge.output}"
    return bridge


def test_grpc_end_to_end(relay: str, events: list[observer_pb2.GetFlowsResponse]) -> None:
    flows = [e.flow for e in events if e.HasField("flow")]
    with OtlpReceiver() as receiver:
        bridge = run_bridge_until_all_seen(relay, receiver.grpc_endpoint, "grpc", len(flows), receiver)
        assert bridge.stop(signal.SIGTERM) == 0, bridge.output
        assert "Traceback" not in bridge.output
        _check_spans(receiver, flows)
        _check_metrics(receiver, events, flows)
        _check_logs(receiver, flows)
        _check_no_secrets(receiver, flows)
        assert all(r.headers.get("x-tenant") == "e2e" for r in receiver.received)


def test_http_protobuf_end_to_end(relay: str, events: list[observer_pb2.GetFlowsResponse]) -> None:
    flows = [e.flow for e in events if e.HasField("flow")]
    with OtlpReceiver() as receiver:
        bridge = run_bridge_until_all_seen(
            relay, receiver.http_endpoint, "http/protobuf", len(flows), receiver
        )
        assert bridge.stop(signal.SIGTERM) == 0, bridge.output
        assert {r.transport for r in receiver.received} == {"http"}
        _check_spans(receiver, flows)
        _check_logs(receiver, flows)
        _check_no_secrets(receiver, flows)


def _check_spans(receiver: OtlpReceiver, flows: list[flow_pb2.Flow]) -> None:
    spans = receiver.spans()
    responses = {
        f.uuid: f for f in flows
        if f.Type == flow_pb2.L7 and f.l7.type == flow_pb2.RESPONSE and f.l7.WhichOneof("record")
    }  # fmt: skip
    answered = [s for s in spans if not attrs(s.attributes).get(HUBBLE_L7_UNANSWERED)]
    n_responses = sum(
        1
        for f in flows
        if f.Type == flow_pb2.L7 and f.l7.type == flow_pb2.RESPONSE and f.l7.WhichOneof("record")
    )
    assert len(answered) == n_responses  # one span per L7 exchange, none lost, none doubled
    by_uuid = {attrs(s.attributes).get(HUBBLE_FLOW_UUID): s for s in answered}
    checked = 0
    for uuid, flow in responses.items():
        if not uuid or flow.l7.latency_ns == 0:
            continue
        span = by_uuid[uuid]
        assert span.end_time_unix_nano - span.start_time_unix_nano == flow.l7.latency_ns
        assert span.end_time_unix_nano == timestamp_ns(flow.time)
        if flow.trace_context.parent.trace_id:
            assert span.trace_id.hex() == flow.trace_context.parent.trace_id
        checked += 1
    assert checked > 100  # every response with a uuid and a latency was checked above
    assert all(s.end_time_unix_nano > s.start_time_unix_nano for s in answered)
    # A client/server pair observed at both ends: SERVER is the child of CLIENT, in one trace.
    by_id = {s.span_id: s for s in spans}
    servers_with_client_parent = [
        s for s in spans
        if s.kind == 2 and s.parent_span_id in by_id and by_id[s.parent_span_id].kind == 3
    ]  # fmt: skip
    assert len(servers_with_client_parent) > 50
    for server in servers_with_client_parent:
        assert by_id[server.parent_span_id].trace_id == server.trace_id
    assert {s.name for s in spans} >= {"GET", "POST", "DNS A"}
    assert any(s.status.code == 2 for s in spans)  # 5xx / NXDOMAIN spans are errors


def _check_metrics(receiver: OtlpReceiver, events: list, flows: list[flow_pb2.Flow]) -> None:
    # Independent plain counts for two families...
    drops = Counter(
        flow_pb2.DropReason.Name(f.drop_reason_desc) for f in flows if f.verdict == flow_pb2.DROPPED
    )
    exported_drops = Counter()
    for p in latest_points(receiver, "hubble.drop"):
        exported_drops[attrs(p.attributes)["reason"]] += p.as_int
    assert exported_drops == drops
    # ...and every family point by point equal to the mapping run in this process: nothing lost over the wire.
    expected = MetricsAggregator(MetricsConfig(), start_time_ns=0)
    for event in events:
        expected.process(event)
    families = expected.snapshot()
    assert len(families) >= 10
    for family in families:
        exported = latest_points(receiver, family.name)
        assert exported, f"{family.name} was not exported"
        if family.kind == 3:
            want = {p.attributes: p.count for p in family.points}
            got = {tuple(attrs(p.attributes).items()): p.count for p in exported}
        else:
            want = {p.attributes: p.value for p in family.points}
            got = {tuple(attrs(p.attributes).items()): (p.as_int or p.as_double) for p in exported}
        assert {tuple(sorted(k)): v for k, v in got.items()} == {
            tuple(sorted(k)): v for k, v in want.items()
        }, family.name


def _check_logs(receiver: OtlpReceiver, flows: list[flow_pb2.Flow]) -> None:
    config = LogConfig()
    wrapped = [observer_pb2.GetFlowsResponse(flow=f) for f in flows]
    expected = [r for r in (flow_log(w, config) for w in wrapped) if r is not None]
    logs = receiver.logs()
    flow_logs = [lr for lr in logs if lr.event_name.startswith(("hubble.flow", "hubble.policy"))]
    assert len(flow_logs) == len(expected) > 0
    bodies = [lr.body.string_value for lr in logs]
    # the two drops recorded on kind (../shared/flows/kind-drops-2.jsonl)
    assert any("fe80::64d8:8aff:fe72:fc14" in b and "DROPPED" in b for b in bodies)
    assert any("default/xwing:44916" in b and "default/deathstar-7848d6c4d5-th9v2:80" in b for b in bodies)
    reasons = Counter(attrs(lr.attributes).get("hubble.drop.reason") for lr in flow_logs)
    assert reasons["POLICY_DENIED"] >= 1 and reasons["INVALID_SOURCE_IP"] >= 1


def _check_no_secrets(receiver: OtlpReceiver, flows: list[flow_pb2.Flow]) -> None:
    secrets: set[str] = set()
    for f in flows:
        for h in f.l7.http.headers:
            if h.key.lower() in ("authorization", "cookie", "x-api-key") and len(h.value) > 8:
                secrets.add(h.value.split()[-1])
        query = urllib.parse.urlsplit(f.l7.http.url).query
        for _key, value in urllib.parse.parse_qsl(query):
            if len(value) >= 6:
                secrets.add(value)
    assert secrets, "the generated flows should carry secrets to redact"
    blob = b"".join(r.request.SerializeToString() for r in receiver.received)
    leaked = sorted(s for s in secrets if s.encode() in blob)
    assert not leaked


def test_prometheus_scrapes_the_bridge(relay: str, events: list, tmp_path: Path) -> None:
    prometheus = shutil.which("prometheus")
    if prometheus is None:
        pytest.fail("prometheus is not installed: run scripts/setup.sh --test (Debian package prometheus)")
    n_flows = sum(1 for e in events if e.HasField("flow"))
    metrics_port, prom_port, health_port = free_port(), free_port(), free_port()
    bridge = CliProcess(
        "bridge", "--relay", relay, "--since", "2000-01-01T00:00:00Z", "--no-otlp",
        "--metrics-listen", f"127.0.0.1:{metrics_port}", "--health-listen", f"127.0.0.1:{health_port}",
    )  # fmt: skip
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n"
        f"scrape_configs:\n  - job_name: hubble-otlp\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{metrics_port}']\n"
    )
    prom = subprocess.Popen(
        [
            prometheus,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        query = urllib.parse.quote("sum(hubble_flows_processed_total)")
        url = f"http://127.0.0.1:{prom_port}/api/v1/query?query={query}"
        value = None
        poll = threading.Event()
        for _ in range(120):  # Prometheus has no push notification: poll its API, bounded
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    result = json.load(response)["data"]["result"]
                value = int(float(result[0]["value"][1])) if result else None
            except OSError:
                value = None
            if value == n_flows:
                break
            poll.wait(0.5)
        assert value == n_flows, bridge.output
        for path, body in (("/healthz", b"ok\n"), ("/readyz", b"ready\n")):
            with urllib.request.urlopen(f"http://127.0.0.1:{health_port}{path}", timeout=5) as response:
                assert (response.status, response.read()) == (200, body)
    finally:
        prom.terminate()
        prom.wait(20)
        assert bridge.stop() == 0


def test_every_recorded_flow_converts_without_error(tmp_path: Path) -> None:
    out = tmp_path / "otlp.jsonl"
    result = run_cli("convert", *map(str, sorted(SHARED_FLOWS.glob("*.jsonl"))), "--output", str(out))
    assert result.returncode == 0, result.stderr
    assert "converted 680 events" in result.stderr and "0 invalid line(s)" in result.stderr
    kinds = Counter(next(iter(json.loads(line))) for line in out.read_text().splitlines())
    assert kinds["resourceSpans"] >= 1 and kinds["resourceMetrics"] >= 1 and kinds["resourceLogs"] >= 1
