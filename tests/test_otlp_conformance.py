"""The specification's exporter settings, end to end: a `hubble-otlp bridge` process, configured only
through OTEL_* (and proxy) variables, exporting to the tests' OTLP receiver, decoded with
opentelemetry-proto. Each test is a row of the table in docs/configuration.md.

Specification: opentelemetry.io, "SDK environment variables", "OTLP Exporter Configuration",
"Metrics exporter" (temporality preference), the metrics SDK's base-2 exponential histogram
aggregation (max_size 160, max_scale 20).
"""

from __future__ import annotations

import itertools
import math
import os
import signal
import subprocess
import sys
import urllib.request
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.metrics.v1 import metrics_pb2

from hubble_bridge.sinks.otlp_wire import SCOPE_NAME
from tests.certs import make_pki
from tests.conftest import run_cli
from tests.otlp_receiver import OtlpReceiver, ServerTls, attrs
from tests.procs import REPO, CliProcess, free_port

DELTA = metrics_pb2.AGGREGATION_TEMPORALITY_DELTA
CUMULATIVE = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
FAST = {"OTEL_METRIC_EXPORT_INTERVAL": "200", "OTEL_BSP_SCHEDULE_DELAY": "200"}
EXPONENTIAL = {
    "OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION": "base2_exponential_bucket_histogram"
}
SELF = "hubble_otlp."
DURATION = "hubble.http_request_duration"


@pytest.fixture(scope="module")
def halves(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[str], list[str]]:
    """Generated flows (HTTP with latencies among them) in two halves, to be written one after the other."""
    out = tmp_path_factory.mktemp("flows") / "generated.jsonl"
    result = run_cli("generate", "--count", "1500", "--seed", "15", "--output", str(out))
    assert result.returncode == 0, result.stderr
    lines = out.read_text().splitlines(keepends=True)
    return lines[:700], lines[700:]


def metrics_of(receiver: OtlpReceiver) -> Iterator[Any]:
    for received in receiver.requests("metrics"):
        for rm in received.request.resource_metrics:
            for sm in rm.scope_metrics:
                assert sm.scope.name == SCOPE_NAME
                yield from sm.metrics


def series_key(point: Any) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted((k, str(v)) for k, v in attrs(point.attributes).items()))


def exp_counts(point: Any, scale: int) -> dict[int, int]:
    """An exponential point's positive buckets at a coarser `scale`: index i -> i >> (point.scale - scale)."""
    out: dict[int, int] = defaultdict(int)
    for i, count in enumerate(point.positive.bucket_counts):
        out[(point.positive.offset + i) >> (point.scale - scale)] += count
    return out


def totals(receiver: OtlpReceiver) -> dict[tuple[str, tuple[Any, ...]], dict[str, Any]]:
    """What a backend holds per series after every request: the newest cumulative point, or the sum of
    every delta point. Exponential buckets are re-aggregated at the lowest scale seen (independently of
    the bridge's code)."""
    out: dict[tuple[str, tuple[Any, ...]], dict[str, Any]] = {}
    for metric in metrics_of(receiver):
        kind = metric.WhichOneof("data")
        if kind == "gauge" or metric.name.startswith(SELF):
            continue
        data = getattr(metric, kind)
        for p in data.data_points:
            key = (metric.name, series_key(p))
            have = out.get(key)
            if data.aggregation_temporality == CUMULATIVE or have is None:
                have = out[key] = {
                    "value": 0,
                    "count": 0,
                    "sum": 0.0,
                    "buckets": None,
                    "zero": 0,
                    "scale": 99,
                }
            if kind == "sum":
                have["value"] += p.as_int
            elif kind == "histogram":
                have["count"] += p.count
                have["sum"] += p.sum
                have["buckets"] = [
                    a + b
                    for a, b in zip(
                        have["buckets"] or [0] * len(p.bucket_counts), p.bucket_counts, strict=True
                    )
                ]
            else:
                have["count"] += p.count
                have["sum"] += p.sum
                have["zero"] += p.zero_count
                scale = min(have["scale"], p.scale)
                merged: dict[int, int] = defaultdict(int)
                for i, c in (have["buckets"] or {}).items():
                    merged[i >> (have["scale"] - scale)] += c
                for i, c in exp_counts(p, scale).items():
                    merged[i] += c
                have["buckets"], have["scale"] = dict(merged), scale
    return out


def rounded(series: dict[Any, dict[str, Any]]) -> dict[Any, dict[str, Any]]:
    """Sums of float observations added in another order differ in the last bits."""
    return {key: {**t, "sum": round(t["sum"], 9)} for key, t in series.items()}


def flows_total(receiver: OtlpReceiver) -> int:
    return sum(t["value"] for (name, _), t in totals(receiver).items() if name == "hubble.flows_processed")


def run_two_intervals(
    tmp_path: Path, halves: tuple[list[str], list[str]], env: dict[str, str], metrics_listen: str = ""
) -> tuple[OtlpReceiver, str]:
    """The bridge follows a file written in two halves, so at least two metric intervals carry data."""
    flows = tmp_path / "flows.jsonl"
    flows.write_text("".join(halves[0]))
    extra = ["--metrics-listen", metrics_listen] if metrics_listen else []
    receiver = OtlpReceiver().start()
    scraped = ""
    try:
        bridge = CliProcess(
            "bridge", "--file", str(flows), "--follow", "--otlp-endpoint", receiver.grpc_endpoint,
            "--otlp-insecure", *extra, env={**FAST, **env},
        )  # fmt: skip
        with bridge:
            first = len(halves[0])
            assert receiver.wait_for(lambda: flows_total(receiver) == first, 60), bridge.output
            with flows.open("a") as f:
                f.write("".join(halves[1]))
            everything = first + len(halves[1])
            assert receiver.wait_for(lambda: flows_total(receiver) == everything, 60), bridge.output
            if metrics_listen:
                scraped = (
                    urllib.request.urlopen(f"http://{metrics_listen}/metrics", timeout=10).read().decode()
                )
            assert bridge.stop(signal.SIGTERM) == 0, bridge.output
            assert "Traceback" not in bridge.output
    finally:
        receiver.stop()
    return receiver, scraped


def test_delta_totals_equal_the_cumulative_run(tmp_path: Path, halves: tuple[list[str], list[str]]) -> None:
    (tmp_path / "c").mkdir()
    (tmp_path / "d").mkdir()
    cumulative, _ = run_two_intervals(tmp_path / "c", halves, {})
    env = {"OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE": "DELTA"}  # the value is case-insensitive
    delta, _ = run_two_intervals(tmp_path / "d", halves, env)
    expected, got = rounded(totals(cumulative)), rounded(totals(delta))
    assert expected == got
    assert any(name == DURATION for name, _ in expected), "the flows must exercise a histogram"
    kinds = {
        m.name: getattr(m, m.WhichOneof("data")).aggregation_temporality
        for m in metrics_of(delta)
        if m.WhichOneof("data") != "gauge"
    }
    assert kinds and all(t == DELTA for t in kinds.values()), kinds  # self-metrics (observed counters) too
    assert_disjoint_windows(delta)


def assert_disjoint_windows(receiver: OtlpReceiver) -> None:
    """Each delta point covers its own interval: it starts no earlier than the series' previous one ended."""
    windows: dict[Any, list[tuple[int, int]]] = defaultdict(list)
    for metric in metrics_of(receiver):
        if metric.WhichOneof("data") in ("sum", "histogram"):
            for p in getattr(metric, metric.WhichOneof("data")).data_points:
                windows[(metric.name, series_key(p))].append((p.start_time_unix_nano, p.time_unix_nano))
    assert any(len(w) > 1 for w in windows.values())
    for w in windows.values():
        assert all(start < end for start, end in w)
        assert all(later[0] >= earlier[1] for earlier, later in itertools.pairwise(w)), w


def test_delta_across_a_restart_counts_nothing_twice(
    tmp_path: Path, halves: tuple[list[str], list[str]]
) -> None:
    """Two bridge processes one after the other (each half a file): the second one's deltas start at its
    own start, after the first one's last point, and the totals equal one cumulative run over both."""
    (tmp_path / "c").mkdir()
    cumulative, _ = run_two_intervals(tmp_path / "c", halves, {})
    with OtlpReceiver() as delta:
        env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": delta.grpc_endpoint,
            "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE": "delta",
        }
        for i, half in enumerate(halves):
            part = tmp_path / f"part{i}.jsonl"
            part.write_text("".join(half))
            _bridge_ok(part, env)
        assert rounded(totals(delta)) == rounded(totals(cumulative))
        assert len(delta.requests("metrics")) >= 2
        assert_disjoint_windows(delta)


def test_lowmemory_keeps_observed_counters_cumulative(
    tmp_path: Path, halves: tuple[list[str], list[str]]
) -> None:
    receiver, _ = run_two_intervals(
        tmp_path, halves, {"OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE": "lowmemory"}
    )
    kinds = {
        m.name: getattr(m, m.WhichOneof("data")).aggregation_temporality
        for m in metrics_of(receiver)
        if m.WhichOneof("data") == "sum"
    }
    assert kinds["hubble.flows_processed"] == DELTA
    assert kinds["hubble_otlp.flows.received"] == CUMULATIVE


def test_exponential_histograms_delta_and_prometheus_unchanged(
    tmp_path: Path, halves: tuple[list[str], list[str]]
) -> None:
    (tmp_path / "c").mkdir()
    (tmp_path / "e").mkdir()
    explicit, _ = run_two_intervals(tmp_path / "c", halves, {})
    listen = f"127.0.0.1:{free_port()}"
    env = {**EXPONENTIAL, "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE": "delta"}
    exponential, scraped = run_two_intervals(tmp_path / "e", halves, env, metrics_listen=listen)
    want, got = totals(explicit), totals(exponential)
    histograms = [k for k in want if want[k]["buckets"] is not None]
    assert histograms
    for key in histograms:
        bounds = next(
            m.histogram.data_points[0].explicit_bounds for m in metrics_of(explicit) if m.name == key[0]
        )
        w, g = want[key], got[key]
        assert (g["count"], round(g["sum"], 6)) == (w["count"], round(w["sum"], 6)), key
        assert g["zero"] + sum(g["buckets"].values()) == g["count"]
        # Independent check of the buckets: at every explicit bound b, the observations <= b (known
        # exactly) lie between the exponential buckets wholly below b and those starting below b.
        base = 2.0 ** (2.0 ** -g["scale"])
        below = 0
        for i, bound in enumerate(bounds):
            below += w["buckets"][i]
            surely = g["zero"] + sum(c for j, c in g["buckets"].items() if base ** (j + 1) <= bound)
            maybe = g["zero"] + sum(c for j, c in g["buckets"].items() if base**j < bound)
            assert surely <= below <= maybe, (key, bound)
    for metric in metrics_of(exponential):
        if metric.name == DURATION:
            assert metric.WhichOneof("data") == "exponential_histogram"
            for p in metric.exponential_histogram.data_points:
                assert p.scale <= 20 and len(p.positive.bucket_counts) <= 160
    # Prometheus stays cumulative with explicit buckets, whatever OTLP gets.
    assert "hubble_http_request_duration_seconds_bucket{" in scraped and 'le="0.005"' in scraped
    processed = sum(
        float(line.rsplit(" ", 1)[1])
        for line in scraped.splitlines()
        if line.startswith("hubble_flows_processed_total{")
    )
    assert processed == sum(map(len, halves))


def test_exponential_buckets_of_known_values() -> None:
    """The first buckets at scale 20 hold what the specification's definition puts there."""
    from hubble_bridge.mapping.metrics.expo import ExponentialAccumulator, bucket_index

    # Bucket i holds 2**(i / 2**scale) < v <= 2**((i + 1) / 2**scale); powers of two end a bucket exactly.
    for value in (1.0, 2.0, 0.5, 1e-9, 3.0, 1234.5678, 2.0**-1074, 2.0**1023):
        for scale in (20, 3, 0, -2):
            position = math.log2(value) * 2.0**scale  # exact for powers of two
            index = bucket_index(value, scale)
            assert index < position + 1e-6 and position <= index + 1 + 1e-6, (value, scale)
            if position == int(position):  # a bucket boundary: the value is the upper bound of the one below
                assert index == position - 1, (value, scale)
    acc = ExponentialAccumulator()
    for v in (0.001, 0.01, 0.1, 1.0, 10.0, 0.0, 5e-3):
        acc.record(v)
    buckets = acc.buckets()
    assert len(buckets.positive) <= 160 and sum(buckets.positive) == 6 and buckets.zero_count == 1
    # 0.001 .. 10 spans 2**13.3: 160 buckets fit it from scale 3 (8 per doubling) down
    assert buckets.scale == 3


def _bridge_once(
    receiver: OtlpReceiver, flows: Path, env: dict[str, str], protocol: str = "grpc"
) -> subprocess.CompletedProcess[str]:
    endpoint = receiver.grpc_endpoint if protocol == "grpc" else receiver.http_endpoint
    # The test run's own proxy variables must not reach the bridge: only the ones a test sets.
    clean = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    return subprocess.run(
        [sys.executable, "-m", "hubble_bridge.cli", "bridge", "--file", str(flows),
         "--otlp-endpoint", endpoint, "--otlp-protocol", protocol],
        capture_output=True, text=True, timeout=120, cwd=REPO, env={**clean, **env},
    )  # fmt: skip


@pytest.fixture
def flows(tmp_path: Path, halves: tuple[list[str], list[str]]) -> Path:
    path = tmp_path / "flows.jsonl"
    path.write_text("".join(halves[0]))
    return path


def test_signal_exporters_console_prometheus_and_otlp_per_signal(flows: Path) -> None:
    """Traces to the console only, metrics over OTLP and to a Prometheus endpoint, logs to both."""
    port = free_port()
    with OtlpReceiver() as receiver:
        env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.grpc_endpoint,
            "OTEL_TRACES_EXPORTER": "console",
            "OTEL_METRICS_EXPORTER": "otlp,prometheus",
            "OTEL_LOGS_EXPORTER": "otlp, console",
            "OTEL_EXPORTER_PROMETHEUS_HOST": "127.0.0.1",
            "OTEL_EXPORTER_PROMETHEUS_PORT": str(port),
        }
        with CliProcess("bridge", "--file", str(flows), "--follow", env=env) as bridge:
            bridge.wait_for_line(r'^\{"resourceSpans"')
            bridge.wait_for_line(r'^\{"resourceLogs"')
            assert receiver.wait_for(
                lambda: bool(receiver.requests("metrics") and receiver.requests("logs")), 60
            )
            scraped = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
            assert "hubble_flows_processed_total{" in scraped
            assert bridge.stop() == 0
        assert not receiver.requests("traces")
        assert not any(line.startswith('{"resourceMetrics"') for line in bridge.lines)


def test_signal_exporter_none_turns_the_signal_off(flows: Path) -> None:
    with OtlpReceiver() as receiver:
        result = _bridge_once(receiver, flows, {"OTEL_TRACES_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "otlp"})
        assert result.returncode == 0, result.stderr
        assert not receiver.requests("traces")
        assert receiver.requests("logs") and receiver.requests("metrics")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"OTEL_LOGS_EXPORTER": "prometheus"},
            "OTEL_LOGS_EXPORTER: 'prometheus' is not an exporter the bridge has (use otlp, console, none)",
        ),
        ({"OTEL_METRICS_EXPORTER": "none,otlp"}, "OTEL_METRICS_EXPORTER: none cannot be combined"),
        (
            {"OTEL_METRICS_EXPORTER": "prometheus", "OTEL_EXPORTER_PROMETHEUS_PORT": "http"},
            "expected a port number",
        ),
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER: 'zipkin' is not an exporter"),
        (
            {"OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE": "sometimes"},
            "otlp.metrics_temporality: 'sometimes' is not one of cumulative, delta, lowmemory",
        ),
        (
            {"OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION": "summary"},
            "histogram_aggregation 'summary' is not one of",
        ),
    ],
)
def test_bad_values_are_refused_clearly(flows: Path, env: dict[str, str], message: str) -> None:
    with OtlpReceiver() as receiver:
        result = _bridge_once(receiver, flows, env)
    assert result.returncode != 0
    assert message in result.stderr and "Traceback" not in result.stderr


# -- proxies -------------------------------------------------------------------------------------


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """tests/proxy.py as its own process: (its host:port, its request log)."""
    log = tmp_path / "proxy.log"
    log.touch()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.proxy", str(log)], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        port = proc.stdout.readline().split()[-1]
        yield f"127.0.0.1:{port}", log
    finally:
        proc.terminate()
        proc.wait(10)


def test_http_proxy_forwards_otlp_http(flows: Path, proxy: tuple[str, Path]) -> None:
    address, log = proxy
    with OtlpReceiver() as receiver:
        env = {
            "HTTP_PROXY": f"http://user:s%40cret@{address}",
            "NO_PROXY": "example.com,10.0.0.0/8",
        }
        result = _bridge_once(receiver, flows, env, protocol="http/protobuf")
        assert result.returncode == 0, result.stderr
        assert receiver.requests("metrics") and receiver.requests("traces")
        port = receiver.http_endpoint.rsplit(":", 1)[1]
    lines = log.read_text().splitlines()
    assert f"POST http://127.0.0.1:{port}/v1/metrics HTTP/1.1 proxy-auth" in lines
    assert "s%40cret" not in result.stderr and "cret" not in result.stderr


def test_https_proxy_tunnels_with_connect(flows: Path, proxy: tuple[str, Path], tmp_path: Path) -> None:
    address, log = proxy
    pki = make_pki(tmp_path)
    tls = ServerTls(Path(pki.server_cert).read_bytes(), Path(pki.server_key).read_bytes())
    with OtlpReceiver(tls) as receiver:
        env = {
            "https_proxy": f"http://{address}",
            "OTEL_EXPORTER_OTLP_CERTIFICATE": pki.ca_file,
        }
        result = _bridge_once(receiver, flows, env, protocol="http/protobuf")
        assert result.returncode == 0, result.stderr
        assert receiver.requests("metrics")
        port = receiver.http_endpoint.rsplit(":", 1)[1]
    assert f"CONNECT 127.0.0.1:{port} HTTP/1.0" in log.read_text().splitlines()[0]


@pytest.mark.parametrize("no_proxy", ["127.0.0.0/8", "127.0.0.1", "*", "10.1.2.3,127.0.0.1:{port}"])
def test_no_proxy_bypasses_the_proxy(flows: Path, proxy: tuple[str, Path], no_proxy: str) -> None:
    address, log = proxy
    with OtlpReceiver() as receiver:
        port = receiver.http_endpoint.rsplit(":", 1)[1]
        env = {"HTTP_PROXY": f"http://{address}", "no_proxy": no_proxy.format(port=port)}
        result = _bridge_once(receiver, flows, env, protocol="http/protobuf")
        assert result.returncode == 0, result.stderr
        assert receiver.requests("metrics")
    assert log.read_text() == ""


def test_grpc_honours_its_proxy_variables(flows: Path, proxy: tuple[str, Path]) -> None:
    """grpcio itself reads grpc_proxy / https_proxy / http_proxy and no_grpc_proxy / no_proxy."""
    address, log = proxy
    with OtlpReceiver() as receiver:
        result = _bridge_once(
            receiver,
            flows,
            {"http_proxy": f"http://{address}", "OTEL_EXPORTER_OTLP_INSECURE": "true"},
        )
        assert result.returncode == 0, result.stderr
        assert receiver.requests("metrics")
        port = receiver.grpc_endpoint.rsplit(":", 1)[1]
        assert f"CONNECT 127.0.0.1:{port}" in log.read_text()
        log.write_text("")
        env = {"http_proxy": f"http://{address}", "no_proxy": "127.0.0.0/8"}
        result = _bridge_once(receiver, flows, env)
        assert result.returncode == 0, result.stderr
    assert log.read_text() == ""


def test_bypass_rules_match_requests() -> None:
    from hubble_bridge.sinks.otlp_transport import bypass_proxy, proxy_for

    assert bypass_proxy("a.example.com", 443, "example.com")
    assert bypass_proxy("a.example.com", 443, ".example.com")
    assert bypass_proxy("example.com", 443, ".example.com")
    assert not bypass_proxy("badexample.com", 443, "example.com")
    assert bypass_proxy("10.2.3.4", 4318, "10.0.0.0/8")
    assert not bypass_proxy("11.2.3.4", 4318, "10.0.0.0/8")
    assert bypass_proxy("::1", 4318, "::1/128")
    assert bypass_proxy("collector", 4318, "collector:4318")
    assert not bypass_proxy("collector", 4317, "collector:4318")
    assert bypass_proxy("anything", None, "*")
    assert not bypass_proxy("collector", 4318, "")
    # lower case wins; HTTP_PROXY is not trusted inside a CGI request
    found = proxy_for(
        "http://c:4318/v1/traces", {"HTTP_PROXY": "http://upper:1", "http_proxy": "http://lower:2"}
    )
    assert found is not None and found.hostname == "lower"
    assert proxy_for("http://c:4318/v1/traces", {"HTTP_PROXY": "http://p:1", "REQUEST_METHOD": "GET"}) is None
    assert proxy_for("https://c:4318/v1/traces", {"HTTP_PROXY": "http://p:1"}) is None


# -- the OTLP exporter variables, one row each, set only through the environment ---------------------


def _bridge_env(flows: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`hubble-otlp bridge --file FLOWS`, everything else from `env` (and no proxy of the test run's)."""
    clean = {
        k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy") and not k.startswith("OTEL_")
    }
    return subprocess.run(
        [sys.executable, "-m", "hubble_bridge.cli", "bridge", "--file", str(flows)],
        capture_output=True, text=True, timeout=120, cwd=REPO, env={**clean, **env},
    )  # fmt: skip


def _bridge_ok(flows: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    result = _bridge_env(flows, env)
    assert result.returncode == 0, result.stderr
    return result


def _transports(receiver: OtlpReceiver) -> dict[str, set[str]]:
    return {
        signal: {r.transport for r in receiver.requests(signal)} for signal in ("traces", "metrics", "logs")
    }


def test_endpoint_and_protocol(flows: Path) -> None:
    with OtlpReceiver() as a:
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": a.http_endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}
        _bridge_ok(flows, env)
        assert _transports(a) == {"traces": {"http"}, "metrics": {"http"}, "logs": {"http"}}


def test_per_signal_endpoint_and_protocol(flows: Path) -> None:
    with OtlpReceiver() as a, OtlpReceiver() as b, OtlpReceiver() as c:
        env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": a.grpc_endpoint,
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": b.grpc_endpoint,
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": c.http_endpoint + "/v1/metrics",  # used as is
            "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": "http/protobuf",
        }
        _bridge_ok(flows, env)
        assert _transports(a) == {"traces": set(), "metrics": set(), "logs": {"grpc"}}
        assert _transports(b) == {"traces": {"grpc"}, "metrics": set(), "logs": set()}
        assert _transports(c) == {"traces": set(), "metrics": {"http"}, "logs": set()}


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_headers_and_per_signal_headers_replace(flows: Path, protocol: str) -> None:
    with OtlpReceiver() as a:
        env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": a.grpc_endpoint if protocol == "grpc" else a.http_endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
            "OTEL_EXPORTER_OTLP_HEADERS": "x-tenant=team%20a,x-general=1",
            "OTEL_EXPORTER_OTLP_TRACES_HEADERS": "x-traces=2",
        }
        result = _bridge_ok(flows, env)
        for r in a.received:
            if r.signal == "traces":
                assert r.headers.get("x-traces") == "2" and "x-general" not in r.headers
            else:
                assert (r.headers.get("x-tenant"), r.headers.get("x-general")) == ("team a", "1")
        assert "team" not in result.stderr  # header values are secrets


def test_compression_and_per_signal_compression(flows: Path) -> None:
    with OtlpReceiver() as a:
        env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": a.http_endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip",
            "OTEL_EXPORTER_OTLP_LOGS_COMPRESSION": "none",
        }
        _bridge_ok(flows, env)
        encodings = {(r.signal, r.headers.get("content-encoding")) for r in a.received}
        assert encodings == {("traces", "gzip"), ("metrics", "gzip"), ("logs", None)}


def test_insecure_bare_host_port(flows: Path) -> None:
    with OtlpReceiver() as a:
        bare = a.grpc_endpoint.removeprefix("http://")
        result = _bridge_env(
            flows, {"OTEL_EXPORTER_OTLP_ENDPOINT": bare, "OTEL_EXPORTER_OTLP_INSECURE": "true"}
        )
        assert result.returncode == 0, result.stderr
        assert a.requests("metrics")
        a.received.clear()
        per_signal = {f"OTEL_EXPORTER_OTLP_{s}_INSECURE": "true" for s in ("TRACES", "METRICS", "LOGS")}
        result = _bridge_env(flows, {"OTEL_EXPORTER_OTLP_ENDPOINT": bare, **per_signal})
        assert result.returncode == 0, result.stderr
        assert all(a.requests(signal) for signal in ("traces", "metrics", "logs"))
        # without it, a bare host:port means TLS, which this plaintext receiver cannot speak
        a.received.clear()
        env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": bare,
            "OTEL_EXPORTER_OTLP_TIMEOUT": "500",
            "OTEL_BSP_SCHEDULE_DELAY": "50",
        }
        failing = CliProcess("bridge", "--file", str(flows), env=env)
        with failing:
            failing.wait_for_line(r"OTLP export: .*(UNAVAILABLE|SSL|handshake)")
            failing.stop()
        assert not a.received


@pytest.mark.parametrize("per_signal", [False, True])
@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_certificates_for_mtls(flows: Path, tmp_path: Path, per_signal: bool, protocol: str) -> None:
    pki = make_pki(tmp_path)
    tls = ServerTls(
        Path(pki.server_cert).read_bytes(), Path(pki.server_key).read_bytes(), Path(pki.ca_file).read_bytes()
    )
    with OtlpReceiver(tls) as a:
        files = {
            "CERTIFICATE": pki.ca_file,
            "CLIENT_CERTIFICATE": pki.client_cert,
            "CLIENT_KEY": pki.client_key,
        }
        prefixes = (
            ["OTEL_EXPORTER_OTLP_" + s + "_" for s in ("TRACES", "METRICS", "LOGS")]
            if per_signal
            else ["OTEL_EXPORTER_OTLP_"]
        )
        env = {prefix + name: path for prefix in prefixes for name, path in files.items()}
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = a.grpc_endpoint if protocol == "grpc" else a.http_endpoint
        env["OTEL_EXPORTER_OTLP_PROTOCOL"] = protocol
        _bridge_ok(flows, env)
        assert all(a.requests(signal) for signal in ("traces", "metrics", "logs"))


@pytest.mark.parametrize(
    ("variable", "signal"),
    [
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "metrics"),
        ("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "metrics"),
        ("OTEL_METRIC_EXPORT_TIMEOUT", "metrics"),
        ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "traces"),
        ("OTEL_BSP_EXPORT_TIMEOUT", "traces"),
        ("OTEL_BLRP_EXPORT_TIMEOUT", "logs"),
    ],
)
def test_timeouts_bound_an_export(flows: Path, variable: str, signal: str) -> None:
    with OtlpReceiver() as a:
        a.stall()
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": a.grpc_endpoint, variable: "300"}
        others = [other for other in ("traces", "metrics", "logs") if other != signal]
        env.update({f"OTEL_{other.upper()}_EXPORTER": "none" for other in others})
        bridge = CliProcess("bridge", "--file", str(flows), env=env)
        with bridge:
            bridge.wait_for_line(rf"OTLP export: {signal}.*(DEADLINE_EXCEEDED|deadline)")
            a.release()
            bridge.stop()


def test_log_schedule_delay_shortens_the_shared_flush(flows: Path) -> None:
    """Spans are held for ten minutes; the log processor's 100 ms holds for both, so both arrive now."""
    with OtlpReceiver() as a:
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": a.grpc_endpoint, "OTEL_BSP_SCHEDULE_DELAY": "600000",
               "OTEL_BLRP_SCHEDULE_DELAY": "100"}  # fmt: skip
        with CliProcess("bridge", "--file", str(flows), "--follow", env=env) as bridge:
            arrived = a.wait_for(lambda: bool(a.requests("logs") and a.requests("traces")), 60)
            assert arrived, bridge.output
            assert bridge.proc.poll() is None  # still running: not the flush at shutdown
            bridge.stop()


def test_service_name_and_resource_attributes(flows: Path) -> None:
    with OtlpReceiver() as a:
        env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": a.grpc_endpoint,
            "OTEL_SERVICE_NAME": "bridge-eu1",
            "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=test,service.name=ignored",
        }
        _bridge_ok(flows, env)
        own = [
            attrs(rm.resource.attributes)
            for r in a.requests("metrics")
            for rm in r.request.resource_metrics
            if any(m.name.startswith(SELF) for sm in rm.scope_metrics for m in sm.metrics)
        ]
        assert own and all(
            r["service.name"] == "bridge-eu1" and r["deployment.environment"] == "test" for r in own
        )


def test_batch_sizes(flows: Path) -> None:
    with OtlpReceiver() as a:
        env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": a.grpc_endpoint,
            "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "40",
            "OTEL_BLRP_MAX_EXPORT_BATCH_SIZE": "25",
        }
        _bridge_ok(flows, env)
        spans = [
            sum(len(ss.spans) for rs in r.request.resource_spans for ss in rs.scope_spans)
            for r in a.requests("traces")
        ]
        logs = [
            sum(len(sl.log_records) for rl in r.request.resource_logs for sl in rl.scope_logs)
            for r in a.requests("logs")
        ]
        assert max(spans) <= 25 and len(spans) > 1 and max(logs) <= 25


@pytest.mark.parametrize(
    ("no_proxy", "proxied"), [(".localhost", False), ("localhost", False), ("calhost", True)]
)
def test_no_proxy_matches_names_by_domain(
    flows: Path, proxy: tuple[str, Path], no_proxy: str, proxied: bool
) -> None:
    """`.localhost` and `localhost` cover localhost; `calhost` is a string suffix, not a domain one."""
    address, log = proxy
    with OtlpReceiver() as receiver:
        endpoint = receiver.http_endpoint.replace("127.0.0.1", "localhost")
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
               "HTTP_PROXY": f"http://{address}", "NO_PROXY": no_proxy}  # fmt: skip
        _bridge_ok(flows, env)
        assert receiver.requests("metrics")
    assert ("POST http://localhost:" in log.read_text()) is proxied
