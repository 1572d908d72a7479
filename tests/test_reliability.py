"""Reliability with real processes: Relay restarts, backend outages, bounded memory, TLS end to end.

Every test runs `hubble-otlp replay` as the Relay, `hubble-otlp bridge` as users
run it, and a real OTLP receiver; failures are injected into the real peers
(SIGKILL of the relay, UNAVAILABLE answers, stalled calls).
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from hubble_bridge.api import flow_pb2, observer_pb2
from hubble_bridge.mapping.spans import SpanConfig, SpanMapper
from hubble_bridge.sources.files import read_events
from tests.certs import make_pki
from tests.conftest import run_cli
from tests.otlp_receiver import OtlpReceiver, ServerTls, attrs, latest_points
from tests.procs import CliProcess, free_port
from tests.test_bridge_e2e import flows_processed

FLOWS = 3000
FAST = {"OTEL_METRIC_EXPORT_INTERVAL": "300", "OTEL_BSP_SCHEDULE_DELAY": "300"}


@pytest.fixture(scope="module")
def flows_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("flows") / "flows.jsonl"
    assert run_cli("generate", "--count", str(FLOWS), "--seed", "21", "-o", str(out)).returncode == 0
    return out


@pytest.fixture(scope="module")
def responses(flows_file: Path) -> list[observer_pb2.GetFlowsResponse]:
    return list(read_events([flows_file]))


def n_flows(responses: list[observer_pb2.GetFlowsResponse]) -> int:
    return sum(1 for r in responses if r.HasField("flow"))


def self_metric(receiver: OtlpReceiver, name: str, **labels: str) -> float:
    total = 0.0
    for p in latest_points(receiver, f"hubble_otlp.{name}"):
        a = attrs(p.attributes)
        if all(a.get(k) == v for k, v in labels.items()):
            total += p.as_int or p.as_double
    return total


def response_uuids(receiver: OtlpReceiver) -> list[str]:
    return [attrs(s.attributes).get("hubble.flow.uuid", "") for s in receiver.spans()]


def start_relay(flows_file: Path, port: int, *extra: str) -> CliProcess:
    relay = CliProcess("replay", str(flows_file), "--listen", f"127.0.0.1:{port}", *extra)
    relay.wait_for_line(r"serving \d+ events")
    return relay


def test_relay_killed_and_restarted_mid_stream_loses_and_doubles_nothing(
    flows_file: Path, responses: list[observer_pb2.GetFlowsResponse]
) -> None:
    total = n_flows(responses)
    port = free_port()
    relays = [start_relay(flows_file, port, "--rate", "1000")]
    with OtlpReceiver() as receiver:
        bridge = CliProcess(
            "bridge", "--relay", f"127.0.0.1:{port}", "--since", "2000-01-01T00:00:00Z",
            "--otlp-endpoint", receiver.grpc_endpoint, "--otlp-insecure", env=FAST,
        )  # fmt: skip
        try:
            for restart in range(1, 4):
                mark = restart * total // 5
                assert receiver.wait_for(lambda m=mark: flows_processed(receiver) >= m, timeout=60), (
                    bridge.output
                )
                relays[-1].stop(signal.SIGKILL)
                relays.append(start_relay(flows_file, port, "--rate", "1000"))
            assert receiver.wait_for(lambda: flows_processed(receiver) >= total, timeout=60), bridge.output
            assert bridge.stop() == 0, bridge.output
        finally:
            for relay in relays:
                relay.stop(signal.SIGKILL)
        assert flows_processed(receiver) == total  # every flow counted exactly once
        assert self_metric(receiver, "source.reconnects") >= 3
        uuids = [u for u in response_uuids(receiver) if u]
        assert len(uuids) == len(set(uuids))  # no span twice
        expected = {
            r.flow.uuid for r in responses
            if r.flow.Type == flow_pb2.L7 and r.flow.l7.type == flow_pb2.RESPONSE
        }  # fmt: skip
        assert expected <= set(uuids)  # no exchange lost


def test_backend_unavailable_for_a_while_then_everything_arrives(
    flows_file: Path, responses: list[observer_pb2.GetFlowsResponse]
) -> None:
    total = n_flows(responses)
    relay = start_relay(flows_file, free_port(), "--rate", "2000")
    port = relay.wait_for_line(r"on 127\.0\.0\.1:(\d+)").group(1)
    with OtlpReceiver() as receiver:
        receiver.fail_next(6)  # the next 6 export calls, whatever the signal, answer UNAVAILABLE
        bridge = CliProcess(
            "bridge", "--relay", f"127.0.0.1:{port}", "--since", "2000-01-01T00:00:00Z",
            "--otlp-endpoint", receiver.grpc_endpoint, "--otlp-insecure",
            env={**FAST, "OTEL_EXPORTER_OTLP_TIMEOUT": "1500"},
        )  # fmt: skip
        try:
            assert receiver.wait_for(lambda: flows_processed(receiver) == total, timeout=90), bridge.output
            assert receiver.calls > len(receiver.received)  # the outage really happened
            peak_rss_mb = _peak_rss_mb(bridge.proc.pid)
            assert bridge.stop() == 0, bridge.output
        finally:
            relay.stop()
    assert peak_rss_mb < 250  # bounded queues: memory stays small through the outage
    expected = _expected_spans(responses)
    uuids = response_uuids(receiver)
    assert len(uuids) == expected  # nothing dropped in "block" mode: the stream was slowed instead


def test_drop_oldest_policy_counts_every_drop(
    flows_file: Path, responses: list[observer_pb2.GetFlowsResponse], tmp_path: Path
) -> None:
    config = tmp_path / "bridge.yaml"
    config.write_text(
        "export:\n  overflow: drop_oldest\n  export_queue: 1\n  max_batch: 50\n"
        "  flush_interval_s: 0.2\n  metric_interval_s: 0.3\n  retry_max_s: 0.5\n"
        "otlp:\n  timeout_s: 0.5\n"
    )
    relay = start_relay(flows_file, free_port())
    port = relay.wait_for_line(r"on 127\.0\.0\.1:(\d+)").group(1)
    with OtlpReceiver() as receiver:
        receiver.fail_next(40)  # an outage: batches pile up behind the exporter
        bridge = CliProcess(
            "bridge", "--relay", f"127.0.0.1:{port}", "--since", "2000-01-01T00:00:00Z",
            "--config", str(config), "--otlp-endpoint", receiver.grpc_endpoint, "--otlp-insecure",
        )  # fmt: skip
        try:
            assert receiver.wait_for(lambda: flows_processed(receiver) == n_flows(responses), timeout=90), (
                bridge.output
            )
            assert bridge.stop() == 0, bridge.output
        finally:
            relay.stop()
        received = len(receiver.spans())
    totals = bridge.wait_for_line(r"traces: (\d+) exported, (\d+) dropped")
    sent, dropped = int(totals.group(1)), int(totals.group(2))
    assert dropped > 0  # the policy dropped the oldest batches while the backend was down...
    assert sent + dropped == _expected_spans(responses)  # ...and counted every span it dropped
    assert received == sent
    assert flows_processed(receiver) == n_flows(responses)  # export resumed after the outage


def test_tls_and_mtls_to_relay_and_backend(flows_file: Path, tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    relay = CliProcess(
        "replay", str(flows_file), "--listen", "127.0.0.1:0",
        "--tls-server-cert-file", pki.server_cert, "--tls-server-key-file", pki.server_key,
        "--tls-client-ca-files", pki.ca_file,
    )  # fmt: skip
    address = relay.wait_for_line(r"on (127\.0\.0\.1:\d+)").group(1)
    tls = ServerTls(
        cert_chain_pem=Path(pki.server_cert).read_bytes(),
        key_pem=Path(pki.server_key).read_bytes(),
        client_ca_pem=Path(pki.ca_file).read_bytes(),
    )
    client_tls = [
        "--tls-ca-cert-files",
        pki.ca_file,
        "--tls-client-cert-file",
        pki.client_cert,
        "--tls-client-key-file",
        pki.client_key,
        "--tls-server-name",
        "relay.hubble-otlp.test",
    ]
    try:
        # A wrong CA is one clear line, and never a plaintext fallback.
        wrong = run_cli(
            "check",
            "--relay",
            address,
            "--tls-ca-cert-files",
            pki.other_ca_file,
            "--tls-client-cert-file",
            pki.client_cert,
            "--tls-client-key-file",
            pki.client_key,
        )
        assert wrong.returncode != 0 and "Traceback" not in wrong.stderr
        assert "TLS" in wrong.stderr and len(wrong.stderr.strip().splitlines()) == 1, wrong.stderr
        no_tls = run_cli("check", "--relay", address)
        assert no_tls.returncode != 0 and "Traceback" not in no_tls.stderr
        with OtlpReceiver(tls=tls) as receiver:
            bridge = CliProcess(
                "bridge", "--relay", address, "--since", "2000-01-01T00:00:00Z", *client_tls,
                "--otlp-endpoint", receiver.grpc_endpoint, "--otlp-ca", pki.ca_file,
                "--otlp-cert", pki.client_cert, "--otlp-key", pki.client_key, env=FAST,
            )  # fmt: skip
            assert receiver.wait_for(lambda: flows_processed(receiver) > 0, timeout=60), bridge.output
            assert bridge.stop() == 0
    finally:
        relay.stop()


def _expected_spans(responses: list[observer_pb2.GetFlowsResponse]) -> int:
    mapper = SpanMapper(SpanConfig())
    count = sum(len(mapper.process(r)) for r in responses)
    return count + len(mapper.drain())


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc status")
