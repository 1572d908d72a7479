"""Prometheus exposition (text 0.0.4 and OpenMetrics) and the HttpEndpoint that serves it."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from hubble_bridge.errors import BridgeError, ConfigError
from hubble_bridge.server.address import ListenAddress, parse_listen
from hubble_bridge.sinks.http_server import HttpEndpoint
from hubble_bridge.sinks.prometheus import (
    OPENMETRICS_CONTENT_TYPE,
    TEXT_CONTENT_TYPE,
    metrics_route,
    prometheus_name,
    render_prometheus,
)
from hubble_bridge.telemetry import (
    Exemplar,
    HistogramPoint,
    MetricFamily,
    MetricKind,
    MetricsSnapshot,
    NumberPoint,
    make_resource,
)

TRACE = bytes.fromhex("4bf92f3577b34da6a3ce929d0e0e4736")
SPAN = bytes.fromhex("00f067aa0ba902b7")


def snapshot() -> MetricsSnapshot:
    return MetricsSnapshot(
        make_resource({"service.name": "hubble-otlp", "k8s.cluster.name": "kind"}),
        1_700_000_001_000_000_000,
        [
            MetricFamily(
                "hubble.flows_processed", "Total number of flows processed", "{flow}", MetricKind.COUNTER,
                [
                    NumberPoint((("protocol", "TCP"), ("type", "L3_L4"), ("verdict", "FORWARDED")), 12),
                    NumberPoint((("protocol", "UDP"), ("type", "L7"), ("verdict", "DROPPED")), 3),
                ],
                0,
            ),
            MetricFamily(
                "hubble.http_request_duration", "Quantiles of HTTP request duration in seconds", "s",
                MetricKind.HISTOGRAM,
                [
                    HistogramPoint(
                        (("method", "GET"), ("reporter", "client")), 6, 2.75, [1, 2, 2, 1],
                        [Exemplar(0.05, 1_700_000_000_500_000_000, TRACE, SPAN)],
                    )
                ],
                0,
                (0.005, 0.1, 1.0),
            ),
            MetricFamily(
                "hubble_otlp.queue.depth", 'Waiting \\ per "stage"\nsecond line', "1", MetricKind.GAUGE,
                [NumberPoint((), 4), NumberPoint((("k8s.pod.name", 'we"ird\\pod\nx'),), 0.5)],
                0,
            ),
        ],
    )  # fmt: skip


TEXT = """\
# HELP target_info Target metadata
# TYPE target_info gauge
target_info{k8s_cluster_name="kind",service_name="hubble-otlp"} 1
# HELP hubble_flows_processed_total Total number of flows processed
# TYPE hubble_flows_processed_total counter
hubble_flows_processed_total{protocol="TCP",type="L3_L4",verdict="FORWARDED"} 12
hubble_flows_processed_total{protocol="UDP",type="L7",verdict="DROPPED"} 3
# HELP hubble_http_request_duration_seconds Quantiles of HTTP request duration in seconds
# TYPE hubble_http_request_duration_seconds histogram
hubble_http_request_duration_seconds_bucket{method="GET",reporter="client",le="0.005"} 1
hubble_http_request_duration_seconds_bucket{method="GET",reporter="client",le="0.1"} 3
hubble_http_request_duration_seconds_bucket{method="GET",reporter="client",le="1"} 5
hubble_http_request_duration_seconds_bucket{method="GET",reporter="client",le="+Inf"} 6
hubble_http_request_duration_seconds_sum{method="GET",reporter="client"} 2.75
hubble_http_request_duration_seconds_count{method="GET",reporter="client"} 6
# HELP hubble_otlp_queue_depth Waiting \\\\ per "stage"\\nsecond line
# TYPE hubble_otlp_queue_depth gauge
hubble_otlp_queue_depth 4
hubble_otlp_queue_depth{k8s_pod_name="we\\"ird\\\\pod\\nx"} 0.5
"""

OPENMETRICS = """\
# HELP target Target metadata
# TYPE target info
target_info{k8s_cluster_name="kind",service_name="hubble-otlp"} 1
# HELP hubble_flows_processed Total number of flows processed
# TYPE hubble_flows_processed counter
hubble_flows_processed_total{protocol="TCP",type="L3_L4",verdict="FORWARDED"} 12
hubble_flows_processed_total{protocol="UDP",type="L7",verdict="DROPPED"} 3
# HELP hubble_http_request_duration_seconds Quantiles of HTTP request duration in seconds
# TYPE hubble_http_request_duration_seconds histogram
hubble_http_request_duration_seconds_bucket{method="GET",reporter="client",le="0.005"} 1
hubble_http_request_duration_seconds_bucket{method="GET",reporter="client",le="0.1"} 3 \
# {trace_id="4bf92f3577b34da6a3ce929d0e0e4736",span_id="00f067aa0ba902b7"} 0.05 1700000000.500000000
hubble_http_request_duration_seconds_bucket{method="GET",reporter="client",le="1.0"} 5
hubble_http_request_duration_seconds_bucket{method="GET",reporter="client",le="+Inf"} 6
hubble_http_request_duration_seconds_sum{method="GET",reporter="client"} 2.75
hubble_http_request_duration_seconds_count{method="GET",reporter="client"} 6
# HELP hubble_otlp_queue_depth Waiting \\\\ per \\"stage\\"\\nsecond line
# TYPE hubble_otlp_queue_depth gauge
hubble_otlp_queue_depth 4
hubble_otlp_queue_depth{k8s_pod_name="we\\"ird\\\\pod\\nx"} 0.5
# EOF
"""


def test_text_exposition() -> None:
    assert render_prometheus([snapshot()]) == TEXT


def test_openmetrics_exposition_with_exemplars() -> None:
    assert render_prometheus([snapshot()], openmetrics=True) == OPENMETRICS


def test_families_with_one_name_are_merged_across_snapshots() -> None:
    first = snapshot()
    icmp = NumberPoint((("protocol", "ICMPv4"), ("type", "L3_L4"), ("verdict", "FORWARDED")), 1)
    family = MetricFamily("hubble.flows_processed", "Flows", "{flow}", MetricKind.COUNTER, [icmp], 0)
    second = MetricsSnapshot(first.resource, 0, [family])
    text = render_prometheus([first, second])
    assert text.count("# TYPE hubble_flows_processed_total counter") == 1
    assert text.count("target_info{") == 1  # one resource, one target_info
    lines = text.splitlines()
    start = lines.index("# TYPE hubble_flows_processed_total counter")
    assert (
        lines[start + 3]
        == 'hubble_flows_processed_total{protocol="ICMPv4",type="L3_L4",verdict="FORWARDED"} 1'
    )


@pytest.mark.parametrize(
    ("name", "kind", "unit", "expected"),
    [
        ("hubble.flows_processed", MetricKind.COUNTER, "{flow}", "hubble_flows_processed_total"),
        ("hubble_drop_total", MetricKind.COUNTER, "1", "hubble_drop_total"),
        ("hubble.http_request_duration", MetricKind.HISTOGRAM, "s", "hubble_http_request_duration_seconds"),
        (
            "hubble.dns_duration_seconds",
            MetricKind.HISTOGRAM,
            "s",
            "hubble.dns_duration_seconds".replace(".", "_"),
        ),
        ("hubble_otlp.export.latency", MetricKind.GAUGE, "s", "hubble_otlp_export_latency_seconds"),
        ("hubble.tcp.bytes", MetricKind.COUNTER, "By", "hubble_tcp_bytes_total"),
        ("hubble.icmp", MetricKind.COUNTER, "", "hubble_icmp_total"),
        ("9lives", MetricKind.GAUGE, "", "_9lives"),
        ("a..b-c", MetricKind.GAUGE, "", "a_b_c"),
    ],
)
def test_prometheus_names(name: str, kind: MetricKind, unit: str, expected: str) -> None:
    assert prometheus_name(MetricFamily(name, "", unit, kind, [], 0)) == expected


Served = tuple[HttpEndpoint, str, list[int]]


@pytest.fixture
def endpoint() -> Iterator[Served]:
    scrapes: list[int] = []

    def collect() -> list[MetricsSnapshot]:
        scrapes.append(1)
        return [snapshot()]

    def boom(headers: dict[str, str]) -> tuple[int, str, bytes]:
        raise RuntimeError("handler bug")

    server = HttpEndpoint(
        "127.0.0.1:0",
        {
            "/metrics": metrics_route(collect),
            "/healthz": lambda headers: (200, "text/plain", b"ok\n"),
            "/readyz": lambda headers: (503, "text/plain", f"not ready: {headers.get('x-probe')}\n".encode()),
            "/boom": boom,
        },
    )
    host, port = server.start()
    yield server, f"http://{host}:{port}", scrapes
    server.stop()


def fetch(url: str, method: str = "GET", **headers: str) -> tuple[int, str, bytes]:
    request = urllib.request.Request(url, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers["Content-Type"], err.read()


def test_metrics_are_served_in_the_format_the_scraper_asks_for(
    endpoint: tuple[HttpEndpoint, str, list[int]],
) -> None:
    _, base, scrapes = endpoint
    assert fetch(base + "/metrics") == (200, TEXT_CONTENT_TYPE, TEXT.encode())
    accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
    assert fetch(base + "/metrics", Accept=accept) == (200, OPENMETRICS_CONTENT_TYPE, OPENMETRICS.encode())
    assert len(scrapes) == 2  # collected afresh on every scrape


def test_routes_statuses_and_methods(endpoint: Served) -> None:
    _, base, _ = endpoint
    assert fetch(base + "/healthz?verbose=1") == (200, "text/plain", b"ok\n")
    assert fetch(base + "/readyz", **{"X-Probe": "kubelet"}) == (503, "text/plain", b"not ready: kubelet\n")
    assert fetch(base + "/nope")[0] == 404
    assert fetch(base + "/boom")[0] == 500
    assert fetch(base + "/healthz")[0] == 200  # still serving after a handler failed
    assert fetch(base + "/healthz", method="HEAD") == (200, "text/plain", b"")
    assert fetch(base + "/healthz", method="POST")[0] == 501


def test_stop_is_safe_twice_and_without_start(endpoint: Served) -> None:
    server, base, _ = endpoint
    server.stop()
    server.stop()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(base + "/healthz", timeout=5)
    HttpEndpoint("127.0.0.1:0", {}).stop()


@pytest.mark.parametrize("listen", ["localhost", "host:http", "::1:9965", "h:70000"])
def test_bad_listen_addresses(listen: str) -> None:
    with pytest.raises(ConfigError, match="listen address"):
        HttpEndpoint(listen, {})


def test_listen_forms() -> None:
    assert parse_listen(":9965") == ListenAddress("", 9965)
    assert parse_listen("[::1]:9965") == ListenAddress("::1", 9965)
    assert parse_listen("127.0.0.1:0") == ListenAddress("127.0.0.1", 0)
    with pytest.raises(ConfigError, match="unix sockets are not supported here"):
        HttpEndpoint("unix:///tmp/x.sock", {})


def test_a_port_in_use_is_one_line_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(BridgeError, match=f"cannot listen on 127.0.0.1:{port}: Address already in use"):
            HttpEndpoint(f"127.0.0.1:{port}", {}).start()
