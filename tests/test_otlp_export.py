"""OtlpExporter against real OTLP receivers on loopback: gRPC and HTTP, gzip, TLS, mTLS, retries, shutdown."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from hubble_bridge.errors import ConfigError
from hubble_bridge.sinks.otlp_encode import encode_traces
from hubble_bridge.sinks.otlp_export import OtlpConfig, OtlpExporter
from hubble_bridge.telemetry import (
    LogRecord,
    MetricFamily,
    MetricKind,
    MetricsSnapshot,
    NumberPoint,
    Severity,
    SpanKind,
    SpanRecord,
    make_resource,
)
from tests.certs import Pki, make_pki
from tests.otlp_receiver import OtlpReceiver, ServerTls

RESOURCE = make_resource({"service.name": "frontend", "k8s.namespace.name": "shop"})
PROTOCOLS = ["grpc", "http/protobuf"]


def spans(n: int) -> list[SpanRecord]:
    return [
        SpanRecord(RESOURCE, bytes([i + 1]) * 16, bytes([i + 1]) * 8, b"", f"GET /{i}", SpanKind.CLIENT,
                   1_000 + i, 2_000 + i, {"http.response.status_code": 200})
        for i in range(n)
    ]  # fmt: skip


def snapshot() -> MetricsSnapshot:
    family = MetricFamily(
        "hubble.flows_processed", "flows", "{flow}", MetricKind.COUNTER,
        [NumberPoint((("verdict", "FORWARDED"),), 7), NumberPoint((("verdict", "DROPPED"),), 1)], 10,
    )  # fmt: skip
    return MetricsSnapshot(RESOURCE, 20, [family])


def log_record() -> LogRecord:
    attributes = {"hubble.drop_reason": "POLICY_DENIED"}
    return LogRecord(RESOURCE, 5, Severity.WARN, "dropped: POLICY_DENIED", attributes)  # type: ignore[arg-type]


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as rx:
        yield rx


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def endpoint(rx: OtlpReceiver, protocol: str) -> str:
    return rx.grpc_endpoint if protocol == "grpc" else rx.http_endpoint


def exporter(rx: OtlpReceiver, protocol: str, **config: object) -> OtlpExporter:
    cfg = OtlpConfig(endpoint=endpoint(rx, protocol), protocol=protocol, **config)  # type: ignore[arg-type]
    return OtlpExporter(cfg, backoff_initial_s=0.01, backoff_max_s=0.05)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_all_three_signals_arrive_with_headers(receiver: OtlpReceiver, protocol: str) -> None:
    ex = exporter(receiver, protocol, headers={"X-Tenant": "team-a"})
    try:
        assert ex.export_traces(spans(3))
        assert ex.export_metrics([snapshot()])
        assert ex.export_logs([log_record()])
    finally:
        ex.shutdown()
    assert [s.name for s in receiver.spans()] == ["GET /0", "GET /1", "GET /2"]
    assert sorted(p.as_int for p in receiver.metric_points("hubble.flows_processed")) == [1, 7]
    assert [r.body.string_value for r in receiver.logs()] == ["dropped: POLICY_DENIED"]
    assert {r.transport for r in receiver.received} == {protocol.split("/")[0]}
    for r in receiver.received:
        assert r.headers["x-tenant"] == "team-a"
        assert r.headers["user-agent"].startswith("hubble-otlp/")
    stats = ex.stats()
    assert (stats["traces"].items_sent, stats["metrics"].items_sent, stats["logs"].items_sent) == (3, 2, 1)
    assert stats["traces"].batches_sent == 1 and stats["traces"].items_failed == 0


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_request_message_is_sent_as_well(receiver: OtlpReceiver, protocol: str) -> None:
    """Traces go out as bytes written directly; export_request still takes a built message."""
    ex = exporter(receiver, protocol)
    assert ex.export_request(encode_traces(spans(2)))
    ex.shutdown()
    assert [s.name for s in receiver.spans()] == ["GET /0", "GET /1"]
    assert ex.stats()["traces"].items_sent == 2


def test_empty_batches_send_nothing(receiver: OtlpReceiver) -> None:
    ex = exporter(receiver, "grpc")
    assert ex.export_traces([]) and ex.export_logs([]) and ex.export_metrics([])
    ex.shutdown()
    assert receiver.calls == 0


@pytest.mark.parametrize("compression", ["gzip", "none"])
def test_http_gzip_bodies(receiver: OtlpReceiver, compression: str) -> None:
    ex = exporter(receiver, "http/protobuf", compression=compression)
    assert ex.export_traces(spans(2))
    ex.shutdown()
    [request] = receiver.requests("traces")
    assert request.headers.get("content-encoding") == ("gzip" if compression == "gzip" else None)
    assert request.headers["content-type"] == "application/x-protobuf"
    assert len(receiver.spans()) == 2


def test_grpc_gzip_round_trip(receiver: OtlpReceiver) -> None:
    ex = exporter(receiver, "grpc", compression="gzip")
    assert ex.export_traces(spans(2))
    ex.shutdown()
    assert [s.span_id for s in receiver.spans()] == [b"\x01" * 8, b"\x02" * 8]


def test_http_reuses_one_kept_alive_connection(receiver: OtlpReceiver) -> None:
    ex = exporter(receiver, "http/protobuf")
    for _ in range(3):
        assert ex.export_traces(spans(1))
    ex.shutdown()
    assert len({r.peer for r in receiver.received}) == 1


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_retries_after_unavailable_then_succeeds(receiver: OtlpReceiver, protocol: str) -> None:
    receiver.fail_next(2)  # UNAVAILABLE over gRPC, 503 over HTTP
    ex = exporter(receiver, protocol)
    assert ex.export_traces(spans(2))
    ex.shutdown()
    assert receiver.calls == 3
    assert len(receiver.spans()) == 2
    stats = ex.stats()["traces"]
    assert (stats.retries, stats.items_sent, stats.batches_failed) == (2, 2, 0)


@pytest.mark.parametrize(
    ("protocol", "failure", "expected"),
    [
        ("grpc", {"grpc_code": grpc.StatusCode.INVALID_ARGUMENT}, "INVALID_ARGUMENT"),
        ("grpc", {"grpc_code": grpc.StatusCode.UNAUTHENTICATED}, "UNAUTHENTICATED"),
        ("http/protobuf", {"http_status": 400}, "HTTP 400 Bad Request: receiver told to fail"),
        ("http/protobuf", {"http_status": 401}, "HTTP 401"),
    ],
)
def test_non_retryable_fails_fast(
    receiver: OtlpReceiver, protocol: str, failure: dict[str, object], expected: str
) -> None:
    receiver.fail_next(1, **failure)  # type: ignore[arg-type]
    ex = exporter(receiver, protocol)
    assert not ex.export_traces(spans(2))
    ex.shutdown()
    assert receiver.calls == 1
    stats = ex.stats()["traces"]
    assert (stats.retries, stats.items_failed, stats.batches_failed) == (0, 2, 1)
    assert expected in stats.last_error and "\n" not in stats.last_error


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_retry_hint_beyond_the_deadline_gives_up_at_once(receiver: OtlpReceiver, protocol: str) -> None:
    receiver.fail_next(1, grpc_code=grpc.StatusCode.RESOURCE_EXHAUSTED, http_status=429, retry_after_s=30)
    ex = exporter(receiver, protocol, timeout_s=2.0)
    assert not ex.export_traces(spans(1))
    ex.shutdown()
    assert receiver.calls == 1
    assert "(gave up after 1 attempt)" in ex.stats()["traces"].last_error


def test_grpc_retry_info_hint_is_waited_out(receiver: OtlpReceiver) -> None:
    receiver.fail_next(1, grpc_code=grpc.StatusCode.RESOURCE_EXHAUSTED, retry_after_s=0.05)
    ex = exporter(receiver, "grpc")
    assert ex.export_logs([log_record()])
    ex.shutdown()
    assert receiver.calls == 2 and len(receiver.logs()) == 1


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_partial_success_counts_rejected_items(receiver: OtlpReceiver, protocol: str) -> None:
    receiver.reject_next(1, "span 2 has no name")
    ex = exporter(receiver, protocol)
    assert ex.export_traces(spans(3))
    ex.shutdown()
    stats = ex.stats()["traces"]
    assert (stats.items_sent, stats.items_failed, stats.items_rejected, stats.batches_sent) == (2, 1, 1, 1)
    assert stats.last_error == "traces: server rejected 1 of 3: span 2 has no name"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_stalled_receiver_is_bounded_by_the_deadline(receiver: OtlpReceiver, protocol: str) -> None:
    receiver.stall()
    ex = exporter(receiver, protocol, timeout_s=0.3)
    assert not ex.export_traces(spans(1))
    receiver.release()
    ex.shutdown()
    assert ex.stats()["traces"].batches_failed == 1


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_shutdown_interrupts_a_backoff(receiver: OtlpReceiver, protocol: str) -> None:
    receiver.fail_next(1)
    cfg = OtlpConfig(endpoint=endpoint(receiver, protocol), protocol=protocol, timeout_s=120)  # type: ignore[arg-type]
    ex = OtlpExporter(cfg, backoff_initial_s=60, backoff_max_s=60)
    results: list[bool] = []
    worker = threading.Thread(target=lambda: results.append(ex.export_traces(spans(1))))
    worker.start()
    assert receiver.wait_for(lambda: receiver.calls >= 1)
    ex.shutdown()
    ex.shutdown()  # safe twice
    worker.join(timeout=10)
    assert not worker.is_alive() and results == [False]
    assert receiver.calls == 1
    assert not ex.export_traces(spans(1))  # after shutdown nothing is sent
    assert "shut down" in ex.stats()["traces"].last_error


def test_connection_refused_is_retried_until_the_deadline() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = OtlpConfig(endpoint=f"http://127.0.0.1:{port}", protocol="http/protobuf", timeout_s=0.3)
    ex = OtlpExporter(cfg, backoff_initial_s=0.05, backoff_max_s=0.05)
    assert not ex.export_traces(spans(1))
    ex.shutdown()
    stats = ex.stats()["traces"]
    assert stats.retries >= 1 and "Connection refused" in stats.last_error
    assert stats.last_error.startswith(f"POST http://127.0.0.1:{port}/v1/traces: ")


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("mutual", [False, True])
def test_tls_and_mtls(pki: Pki, protocol: str, mutual: bool) -> None:
    tls = ServerTls(
        Path(pki.server_cert).read_bytes(),
        Path(pki.server_key).read_bytes(),
        Path(pki.ca_file).read_bytes() if mutual else None,
    )
    client = {"cert_file": pki.client_cert, "key_file": pki.client_key} if mutual else {}
    with OtlpReceiver(tls) as rx:
        assert endpoint(rx, protocol).startswith("https://")
        ex = exporter(rx, protocol, ca_file=pki.ca_file, **client)
        assert ex.export_traces(spans(1)), ex.stats()["traces"].last_error
        ex.shutdown()
        assert len(rx.spans()) == 1


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("case", ["wrong CA", "no client certificate"])
def test_tls_failures_deliver_nothing(pki: Pki, protocol: str, case: str) -> None:
    tls = ServerTls(
        Path(pki.server_cert).read_bytes(), Path(pki.server_key).read_bytes(), Path(pki.ca_file).read_bytes()
    )
    ca = pki.other_ca_file if case == "wrong CA" else pki.ca_file
    client = {"cert_file": pki.client_cert, "key_file": pki.client_key} if case == "wrong CA" else {}
    with OtlpReceiver(tls) as rx:
        ex = exporter(rx, protocol, ca_file=ca, timeout_s=0.5, **client)
        assert not ex.export_traces(spans(1))
        ex.shutdown()
        assert rx.calls == 0
        assert "\n" not in ex.stats()["traces"].last_error


def test_invalid_configuration_is_refused_before_anything_is_sent() -> None:
    with pytest.raises(ConfigError, match="insecure is true but https://c:4317 uses https://"):
        OtlpExporter(OtlpConfig(endpoint="https://c:4317", insecure=True))


def test_unreadable_key_is_a_config_error(tmp_path: Path, pki: Pki) -> None:
    bad = tmp_path / "key.pem"
    bad.write_text("not a key")
    cfg = OtlpConfig(endpoint="https://127.0.0.1:1", protocol="http/protobuf", cert_file=pki.client_cert,
                     key_file=str(bad))  # fmt: skip
    with pytest.raises(ConfigError, match="OTLP traces TLS files"):
        OtlpExporter(cfg)


def test_endpoint_credentials_and_query_never_reach_messages() -> None:
    """A password or a token in the endpoint URL is not repeated in errors (which are logged)."""
    config = OtlpConfig(
        endpoint="http://user:s3cr3tpw@127.0.0.1:1/otlp?api_key=t0ken",
        protocol="http/protobuf",
        timeout_s=0.5,
    )
    exporter = OtlpExporter(config)
    try:
        assert exporter.export_logs([log_record()]) is False
        error = exporter.stats()["logs"].last_error
        assert "127.0.0.1:1" in error
        assert "s3cr3tpw" not in error and "t0ken" not in error
    finally:
        exporter.shutdown()


def test_resource_exhausted_without_retry_info_is_final(receiver: OtlpReceiver) -> None:
    """The OTLP specification: RESOURCE_EXHAUSTED is retried only when the server sent RetryInfo."""
    receiver.fail_next(1, grpc_code=grpc.StatusCode.RESOURCE_EXHAUSTED)
    ex = exporter(receiver, "grpc")
    assert not ex.export_traces(spans(1))
    ex.shutdown()
    assert receiver.calls == 1 and ex.stats()["traces"].retries == 0


@pytest.mark.parametrize("status", [400, 401, 404, 413, 500])
def test_http_statuses_outside_the_retryable_set_are_final(receiver: OtlpReceiver, status: int) -> None:
    receiver.fail_next(1, http_status=status)
    ex = exporter(receiver, "http/protobuf")
    assert not ex.export_traces(spans(1))
    ex.shutdown()
    assert receiver.calls == 1 and ex.stats()["traces"].retries == 0


def test_partial_success_is_logged_once_per_interval(
    receiver: OtlpReceiver, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hubble_bridge.sinks.otlp_export as otlp_export

    ex = exporter(receiver, "grpc")
    with caplog.at_level("DEBUG", logger="hubble_bridge.sinks.otlp_export"):
        for n in (1, 2, 1):
            receiver.reject_next(n, f"span {n} refused")
            assert ex.export_traces(spans(3))
        monkeypatch.setattr(otlp_export, "PARTIAL_LOG_INTERVAL_S", 0.0)  # the next interval has begun
        receiver.reject_next(1, "late")
        assert ex.export_traces(spans(3))
    ex.shutdown()
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == [
        "OTLP export: traces: server rejected 1 of 3: span 1 refused",
        "OTLP export: traces: server rejected 1 of 3: late (3 partial successes since the last warning)",
    ]
    assert ex.stats()["traces"].items_rejected == 5


def counter_snapshot(value: int, time_ns: int, start_ns: int = 10) -> MetricsSnapshot:
    family = MetricFamily(
        "hubble.flows_processed", "flows", "{flow}", MetricKind.COUNTER,
        [NumberPoint((("verdict", "FORWARDED"),), value)], start_ns,
    )  # fmt: skip
    return MetricsSnapshot(RESOURCE, time_ns, [family])


def test_delta_after_a_failed_export_covers_both_intervals(receiver: OtlpReceiver) -> None:
    ex = exporter(receiver, "grpc", metrics_temporality="delta")
    assert ex.export_metrics([counter_snapshot(5, 100)])
    receiver.fail_next(1, grpc_code=grpc.StatusCode.INVALID_ARGUMENT)
    assert not ex.export_metrics([counter_snapshot(8, 200)])
    assert ex.export_metrics([counter_snapshot(12, 300)])
    assert ex.export_metrics([counter_snapshot(12, 400)])  # nothing new: no point
    # the source restarted (new start time): its whole count is new
    assert ex.export_metrics([counter_snapshot(2, 500, start_ns=450)])
    ex.shutdown()
    points = [
        (p.start_time_unix_nano, p.time_unix_nano, p.as_int)
        for p in receiver.metric_points("hubble.flows_processed")
    ]
    assert points == [(10, 100, 5), (100, 300, 7), (450, 500, 2)]
