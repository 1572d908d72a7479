"""The `service-graph` family: Tempo's / the Collector's service-graph series, from flows.

What the series must look like comes from their sources: the metric names, labels and
connection_type values from Grafana Tempo's modules/generator/processor/servicegraphs
(servicegraphs.go: traces_service_graph_request_total, _failed_total, _server_seconds,
_client_seconds with client, server, connection_type) and the OpenTelemetry Collector's
connector/servicegraphconnector (connector.go: the OTLP names traces_service_graph_request_server /
_client with unit "s", defaultLatencyHistogramBuckets; internal/store/edge.go: connection types "",
"messaging_system", "database", "virtual_node"; client_<dim> / server_<dim> dimensions). Grafana's
service graph view (public/app/plugins/datasource/tempo) reads request_total, request_failed_total
and request_server_seconds_{sum,bucket} summed by (client, server).

Flows are built as Cilium's datapath and proxies report them: trace events at from-endpoint and
to-endpoint, policy verdicts and drops on the opening SYN, and access-log records (L7) from the
client's proxy (EGRESS) and the server's (INGRESS).
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import threading
import urllib.parse
import urllib.request
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format
from google.protobuf.wrappers_pb2 import BoolValue

from hubble_bridge.api import flow_pb2, observer_pb2, sidecar_pb2
from hubble_bridge.errors import ConfigError
from hubble_bridge.mapping.metrics import MetricsAggregator, MetricsConfig
from hubble_bridge.mapping.metrics.families.service_graph import SERVICE_GRAPH_BUCKETS, SIDECAR_TYPE_URL
from hubble_bridge.sources.files import read_events
from hubble_bridge.telemetry import MetricFamily
from tests.conftest import REPO, SHARED_FLOWS, run_cli
from tests.otlp_receiver import OtlpReceiver, attrs, latest_points
from tests.procs import CliProcess, free_port

TOTAL = "traces_service_graph_request_total"
FAILED = "traces_service_graph_request_failed_total"
SERVER = "traces_service_graph_request_server"
CLIENT = "traces_service_graph_request_client"
T0 = 1_700_000_000_000_000_000
DASHBOARD = REPO / "deploy" / "grafana" / "dashboards" / "hubble-otlp.json"

CLIENT_EP = flow_pb2.Endpoint(
    namespace="shop", pod_name="frontend-7d4b9-abcde", labels=["k8s:app=frontend"], identity=1001
)
SERVER_EP = flow_pb2.Endpoint(
    namespace="shop", pod_name="cart-5f6c7-fghij", labels=["k8s:app=cart"], identity=1002, cluster_name="c1"
)
DB_EP = flow_pb2.Endpoint(namespace="data", pod_name="postgres-0", labels=["k8s:app=postgres"], identity=1003)
KAFKA_EP = flow_pb2.Endpoint(namespace="data", pod_name="kafka-0", labels=["k8s:app=kafka"], identity=1004)
WORLD_EP = flow_pb2.Endpoint(labels=["reserved:world"], identity=2)
HOST_EP = flow_pb2.Endpoint(labels=["reserved:host"], identity=1)
APISERVER_EP = flow_pb2.Endpoint(labels=["reserved:host", "reserved:kube-apiserver"], identity=7)
CLIENT_IP, SERVER_IP = "10.0.1.10", "10.0.2.20"

# Trace observation points (bpf/lib/trace.h) and monitor event types (pkg/monitor/api).
FROM_ENDPOINT, TO_ENDPOINT, TO_PROXY = 5, 0, 1
TRACE, DROP, POLICY_VERDICT, ACCESS_LOG = 4, 1, 5, 129


def tcp_flow(
    flags: str,
    *,
    at_ns: int = 0,
    point: int | None = FROM_ENDPOINT,
    event: int = TRACE,
    verdict: int = flow_pb2.FORWARDED,
    reply: bool = False,
    src: flow_pb2.Endpoint = CLIENT_EP,
    dst: flow_pb2.Endpoint = SERVER_EP,
    sport: int = 40000,
    dport: int = 8080,
    names: tuple[str, ...] = (),
    drop_reason: int = 0,
) -> flow_pb2.Flow:
    """A TCP packet of the connection CLIENT_IP:sport -> SERVER_IP:dport (swapped when a reply)."""
    tcp_flags = flow_pb2.TCPFlags(**{f: True for f in flags.split("-")})
    source, destination = (dst, src) if reply else (src, dst)
    ips = (SERVER_IP, CLIENT_IP) if reply else (CLIENT_IP, SERVER_IP)
    ports = (dport, sport) if reply else (sport, dport)
    direction = flow_pb2.INGRESS if point == TO_ENDPOINT else flow_pb2.EGRESS
    flow = flow_pb2.Flow(
        verdict=verdict,
        drop_reason_desc=drop_reason,
        IP=flow_pb2.IP(source=ips[0], destination=ips[1], ipVersion=flow_pb2.IPv4),
        l4=flow_pb2.Layer4(
            TCP=flow_pb2.TCP(source_port=ports[0], destination_port=ports[1], flags=tcp_flags)
        ),
        source=source,
        destination=destination,
        destination_names=list(names) if not reply else [],
        source_names=list(names) if reply else [],
        event_type=flow_pb2.CiliumEventType(type=event, sub_type=point or 0),
        traffic_direction=direction,
        is_reply=BoolValue(value=reply),
    )
    flow.time.FromNanoseconds(T0 + at_ns)
    return flow


def udp_flow(at_ns: int, sport: int = 50000, dport: int = 5353, point: int = FROM_ENDPOINT) -> flow_pb2.Flow:
    flow = tcp_flow("SYN", at_ns=at_ns, point=point)
    flow.l4.CopyFrom(flow_pb2.Layer4(UDP=flow_pb2.UDP(source_port=sport, destination_port=dport)))
    return flow


def http_flows(
    *,
    side: int,
    at_ns: int = 0,
    code: int = 200,
    latency_ns: int = 30_000_000,
    trace_id: str = "",
    url: str = "http://cart:8080/api/cart",
    request_verdict: int = flow_pb2.FORWARDED,
    headers: tuple[tuple[str, str], ...] = (),
    protocol: str = "HTTP/1.1",
) -> list[flow_pb2.Flow]:
    """The request and response records one proxy logs: the client's (EGRESS) or the server's (INGRESS)."""
    direction = flow_pb2.EGRESS if side == 0 else flow_pb2.INGRESS
    hdrs = [flow_pb2.HTTPHeader(key=k, value=v) for k, v in headers]
    common = {"event_type": flow_pb2.CiliumEventType(type=ACCESS_LOG), "traffic_direction": direction}
    if trace_id:
        common["trace_context"] = flow_pb2.TraceContext(parent=flow_pb2.TraceParent(trace_id=trace_id))
    request = flow_pb2.Flow(
        verdict=request_verdict,
        IP=flow_pb2.IP(source=CLIENT_IP, destination=SERVER_IP, ipVersion=flow_pb2.IPv4),
        l4=flow_pb2.Layer4(TCP=flow_pb2.TCP(source_port=41000, destination_port=8080)),
        source=CLIENT_EP,
        destination=SERVER_EP,
        l7=flow_pb2.Layer7(
            type=flow_pb2.REQUEST, http=flow_pb2.HTTP(method="GET", url=url, protocol=protocol)
        ),
        is_reply=BoolValue(value=False),
        **common,
    )
    response = flow_pb2.Flow(
        verdict=flow_pb2.FORWARDED,
        IP=flow_pb2.IP(source=SERVER_IP, destination=CLIENT_IP, ipVersion=flow_pb2.IPv4),
        l4=flow_pb2.Layer4(TCP=flow_pb2.TCP(source_port=8080, destination_port=41000)),
        source=SERVER_EP,
        destination=CLIENT_EP,
        l7=flow_pb2.Layer7(
            type=flow_pb2.RESPONSE,
            latency_ns=latency_ns,
            http=flow_pb2.HTTP(method="GET", url=url, protocol=protocol, code=code, headers=hdrs),
        ),
        is_reply=BoolValue(value=True),
        **common,
    )
    request.time.FromNanoseconds(T0 + at_ns)
    response.time.FromNanoseconds(T0 + at_ns + latency_ns)
    return [request, response]


def run(flows: list[flow_pb2.Flow], option: str = "service-graph", limit: int = 2000) -> MetricsAggregator:
    config = MetricsConfig(families=[option], cardinality_limit=limit, http_duration_histograms=False)
    aggregator = MetricsAggregator(config, start_time_ns=T0)
    for flow in flows:
        aggregator.process_flow(flow)
    return aggregator


def families(aggregator: MetricsAggregator) -> dict[str, MetricFamily]:
    return {f.name: f for f in aggregator.snapshot()}


def edges(aggregator: MetricsAggregator, name: str = TOTAL) -> dict[tuple[str, str, str], int]:
    """(client, server, connection_type) -> value (counters) or count (histograms)."""
    family = families(aggregator).get(name)
    out: dict[tuple[str, str, str], int] = {}
    for point in family.points if family else ():
        a = dict(point.attributes)
        out[(a["client"], a["server"], a["connection_type"])] = getattr(point, "count", None) or point.value
    return out


EDGE = ("frontend", "cart", "")


# ---- names, units and labels --------------------------------------------------------------------


def test_series_names_units_and_labels_are_the_connectors_and_tempos() -> None:
    from hubble_bridge.sinks.prometheus import prometheus_name

    fams = families(run([tcp_flow("SYN"), *http_flows(side=1)]))
    assert set(fams) == {TOTAL, SERVER}  # no failure, no client-side latency: no such series yet
    fams = families(run([*http_flows(side=1), *http_flows(side=0, at_ns=10**9, code=503)]))
    assert set(fams) == {TOTAL, FAILED, SERVER, CLIENT}
    # connector.go: the histograms are named without the unit, unit "s"; Tempo's Prometheus names add it.
    assert {n: prometheus_name(f) for n, f in fams.items()} == {
        TOTAL: "traces_service_graph_request_total",
        FAILED: "traces_service_graph_request_failed_total",
        SERVER: "traces_service_graph_request_server_seconds",
        CLIENT: "traces_service_graph_request_client_seconds",
    }
    assert (fams[SERVER].unit, fams[CLIENT].unit) == ("s", "s")
    assert fams[SERVER].bounds == SERVICE_GRAPH_BUCKETS
    # connector.go defaultLatencyHistogramBuckets, in seconds.
    assert SERVICE_GRAPH_BUCKETS == (
        0.002,
        0.004,
        0.006,
        0.008,
        0.01,
        0.05,
        0.1,
        0.2,
        0.4,
        0.8,
        1,
        1.4,
        2,
        5,
        10,
        15,
    )
    for family in fams.values():
        for point in family.points:
            assert [k for k, _ in point.attributes] == ["client", "server", "connection_type"]


def test_dimensions_take_the_connectors_client_and_server_form() -> None:
    agg = run(http_flows(side=1), "service-graph:dimensions=namespace,cluster,protocol")
    (point,) = families(agg)[TOTAL].points
    assert dict(point.attributes) == {
        "client": "frontend",
        "server": "cart",
        "connection_type": "",
        "client_namespace": "shop",
        "server_namespace": "shop",
        "client_cluster": "",
        "server_cluster": "c1",
        "client_protocol": "HTTP",
        "server_protocol": "HTTP",
    }


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("service-graph:sourceContext=namespace", "takes no context options"),
        ("service-graph:dimensions=pod", "dimensions='pod'"),
        ("service-graph:dimensions=namespace,namespace", "distinct names"),
        ("service-graph:window=0", "window='0'"),
        ("service-graph:window=soon", "window='soon'"),
        ("service-graph:colour=blue", "unknown option(s) ['colour']"),
    ],
)
def test_bad_options_are_clear_errors(option: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        MetricsConfig(families=[option]).validate()
    assert message in str(raised.value)
    assert "service-graph" in str(raised.value)


# ---- L4 ------------------------------------------------------------------------------------------


def test_a_tcp_connection_seen_at_both_ends_counts_once() -> None:
    flows = [
        tcp_flow("SYN", point=FROM_ENDPOINT),  # the client's node
        tcp_flow("SYN", point=None, event=POLICY_VERDICT),  # the server's ingress policy
        tcp_flow("SYN", at_ns=300_000, point=TO_ENDPOINT),  # the server's node
        tcp_flow("SYN-ACK", at_ns=400_000, point=FROM_ENDPOINT, reply=True),
        tcp_flow("SYN-ACK", at_ns=500_000, point=TO_ENDPOINT, reply=True),
        tcp_flow("ACK", at_ns=600_000),
        tcp_flow("FIN-ACK", at_ns=900_000),
        tcp_flow("RST", at_ns=950_000, reply=True),  # a reset after SYN-ACK is not a refusal
    ]
    agg = run(flows)
    assert edges(agg) == {EDGE: 1}
    assert edges(agg, FAILED) == {}
    # Another connection (another source port) is another request.
    assert edges(run([*flows, tcp_flow("SYN", at_ns=10**6, sport=40001)])) == {EDGE: 2}


def test_a_denied_connection_is_one_failed_request_however_often_it_retries() -> None:
    # Cilium's denied SYN: traced leaving the client, then a DROPPED policy verdict and a drop event
    # at the server's node; the client retransmits after 1 s and 3 s (as the generator's drops.py).
    flows = []
    for at in (0, 10**9, 3 * 10**9):
        flows += [
            tcp_flow("SYN", at_ns=at),
            tcp_flow("SYN", at_ns=at + 1000, point=None, event=POLICY_VERDICT, verdict=flow_pb2.DROPPED),
            tcp_flow(
                "SYN", at_ns=at + 2000, point=None, event=DROP, verdict=flow_pb2.DROPPED, drop_reason=133
            ),
        ]
    agg = run(flows)
    assert edges(agg) == {EDGE: 1}
    assert edges(agg, FAILED) == {EDGE: 1}
    # Without the drops the same connection is fine: the failure comes from them.
    assert edges(run([f for f in flows if f.verdict != flow_pb2.DROPPED]), FAILED) == {}


def test_a_reset_answering_the_syn_fails_the_connection() -> None:
    agg = run([tcp_flow("SYN"), tcp_flow("RST-ACK", at_ns=50_000, reply=True)])
    assert (edges(agg), edges(agg, FAILED)) == ({EDGE: 1}, {EDGE: 1})


def test_the_same_syn_after_the_window_is_a_new_connection() -> None:
    flows = [tcp_flow("SYN"), tcp_flow("SYN", at_ns=11 * 10**9)]
    assert edges(run(flows)) == {EDGE: 2}
    assert edges(run(flows, "service-graph:window=20")) == {EDGE: 1}


def test_the_matching_store_forgets_what_the_window_has_passed() -> None:
    # A connection a second for ten minutes: only the last window's connections are remembered.
    agg = run([tcp_flow("SYN", at_ns=i * 10**9, sport=1024 + i) for i in range(600)])
    assert edges(agg) == {EDGE: 600}
    (family,) = [p for p in agg._processors if getattr(p, "name", "") == "service-graph"]
    assert len(family._pending) <= 12


def test_udp_counts_a_conversation_per_window_and_skips_what_the_proxy_takes() -> None:
    flows = [
        udp_flow(0),
        udp_flow(10**8),
        udp_flow(2 * 10**8),
        udp_flow(12 * 10**9),
        udp_flow(0, sport=50001),
    ]
    assert edges(run(flows)) == {EDGE: 3}
    assert edges(run([udp_flow(0, point=TO_PROXY)])) == {}


def test_redirected_flows_are_left_to_the_proxy_records() -> None:
    flows = [tcp_flow("SYN", point=None, event=POLICY_VERDICT, verdict=flow_pb2.REDIRECTED)]
    assert edges(run(flows)) == {}


def test_sidecar_connect_latency_goes_to_the_client_histogram() -> None:
    def sidecar(event: int, flags: str, latency_ns: int, reply: bool = False) -> flow_pb2.Flow:
        flow = tcp_flow(flags, point=3, reply=reply)
        ext = sidecar_pb2.SidecarFlow(event=event, connect_latency_ns=latency_ns)
        flow.extensions.type_url = SIDECAR_TYPE_URL
        flow.extensions.value = ext.SerializeToString()
        return flow

    ext = sidecar_pb2.SidecarFlow
    ok = run([sidecar(ext.EVENT_TCP_CONNECT, "SYN", 3_000_000), sidecar(ext.EVENT_TCP_ACCEPT, "SYN", 0)])
    assert edges(ok) == {EDGE: 1} and edges(ok, FAILED) == {}
    (point,) = families(ok)[CLIENT].points
    assert point.bucket_counts[SERVICE_GRAPH_BUCKETS.index(0.004)] == 1 and point.sum == pytest.approx(0.003)
    timed_out = run([sidecar(ext.EVENT_TCP_CONNECT_FAILED, "SYN", 1_000_000)])
    assert (edges(timed_out), edges(timed_out, FAILED)) == ({EDGE: 1}, {EDGE: 1})
    # A refused connect is the server's RST, a reply, with no SYN flow before it (sidecar/convert.py).
    refused = run([sidecar(ext.EVENT_TCP_CONNECT_FAILED, "RST", 200_000, reply=True)])
    assert (edges(refused), edges(refused, FAILED)) == ({EDGE: 1}, {EDGE: 1})
    assert sum(p.count for p in families(refused)[CLIENT].points) == 1


# ---- L7 ------------------------------------------------------------------------------------------


def test_an_http_exchange_seen_by_both_proxies_counts_once_with_each_sides_latency() -> None:
    # The client's proxy measures 45 ms, the server's 30 ms: each goes to its own histogram.
    flows = [*http_flows(side=0, latency_ns=45_000_000), *http_flows(side=1, at_ns=2_000_000)]
    agg = run(flows)
    assert edges(agg) == {EDGE: 1}
    (server,) = families(agg)[SERVER].points
    (client,) = families(agg)[CLIENT].points
    assert server.bucket_counts[SERVICE_GRAPH_BUCKETS.index(0.05)] == 1 and server.sum == pytest.approx(0.03)
    assert client.bucket_counts[SERVICE_GRAPH_BUCKETS.index(0.05)] == 1 and client.sum == pytest.approx(0.045)
    assert server.count == client.count == 1
    # Two identical requests, each seen at both ends, are two requests; trace ids keep them apart too.
    assert edges(run([*flows, *http_flows(side=0, at_ns=10**8), *http_flows(side=1, at_ns=10**8)])) == {
        EDGE: 2
    }
    traced = [
        *http_flows(side=0, trace_id="a" * 32),
        *http_flows(side=0, trace_id="b" * 32),
        *http_flows(side=1, trace_id="b" * 32),
        *http_flows(side=1, trace_id="a" * 32),
    ]
    assert edges(run(traced)) == {EDGE: 2}
    # A health check every 5 s seen only by the server's proxy for a minute, then only by the
    # client's: only the server's sightings within the window (50 s, 55 s) can be the client's first
    # two; the older ones were other exchanges. 12 + 13 - 2.
    server_only = [f for i in range(12) for f in http_flows(side=1, at_ns=i * 5 * 10**9)]
    client_only = [f for i in range(12, 25) for f in http_flows(side=0, at_ns=i * 5 * 10**9)]
    assert edges(run(server_only + client_only)) == {EDGE: 23}


def test_http_failures_are_5xx_grpc_errors_and_refusals() -> None:
    assert edges(run(http_flows(side=1, code=503)), FAILED) == {EDGE: 1}
    both_ends = [*http_flows(side=0, code=503), *http_flows(side=1, code=503)]
    assert edges(run(both_ends), FAILED) == {EDGE: 1}
    assert edges(run(http_flows(side=1, code=404)), FAILED) == {}
    grpc = (("content-type", "application/grpc"), ("grpc-status", "14"))
    agg = run(http_flows(side=1, headers=grpc, protocol="HTTP/2"), "service-graph:dimensions=protocol")
    assert [dict(p.attributes)["client_protocol"] for p in families(agg)[FAILED].points] == ["gRPC"]
    ok = (("content-type", "application/grpc"), ("grpc-status", "0"))
    assert edges(run(http_flows(side=1, headers=ok, protocol="HTTP/2")), FAILED) == {}
    # An L7 rule refuses the request at the server: its proxy logs the request DROPPED and its own
    # 403 answer; the client's proxy sees the 403. One request, failed.
    refused = [
        *http_flows(side=1, code=403, request_verdict=flow_pb2.DROPPED, latency_ns=100_000),
        http_flows(side=0, code=403)[1],
    ]
    agg = run(refused)
    assert (edges(agg), edges(agg, FAILED)) == ({EDGE: 1}, {EDGE: 1})


def test_dns_and_kafka_exchanges() -> None:
    def l7(record: flow_pb2.Layer7, server: flow_pb2.Endpoint, port: int, udp: bool = False) -> flow_pb2.Flow:
        ports = flow_pb2.UDP(source_port=port, destination_port=43000) if udp else None
        l4 = flow_pb2.Layer4(UDP=ports) if udp else flow_pb2.Layer4(TCP=flow_pb2.TCP(source_port=port))
        flow = flow_pb2.Flow(
            IP=flow_pb2.IP(source=SERVER_IP, destination=CLIENT_IP),
            l4=l4,
            source=server,
            destination=CLIENT_EP,
            l7=record,
            event_type=flow_pb2.CiliumEventType(type=ACCESS_LOG),
            traffic_direction=flow_pb2.EGRESS,
        )
        flow.time.FromNanoseconds(T0)
        return flow

    coredns = flow_pb2.Endpoint(
        namespace="kube-system", pod_name="coredns-1", labels=["k8s:k8s-app=kube-dns"]
    )
    answers = [
        l7(
            flow_pb2.Layer7(type=flow_pb2.RESPONSE, dns=flow_pb2.DNS(query=f"q{rcode}.", rcode=rcode)),
            coredns,
            53,
            True,
        )
        for rcode in (0, 3, 2, 5)
    ]
    agg = run(answers)
    # NXDOMAIN is an answer; SERVFAIL and REFUSED are failures.
    assert (edges(agg), edges(agg, FAILED)) == (
        {("frontend", "kube-dns", ""): 4},
        {("frontend", "kube-dns", ""): 2},
    )
    kafka = [
        l7(
            flow_pb2.Layer7(type=flow_pb2.RESPONSE, kafka=flow_pb2.Kafka(correlation_id=i, error_code=e)),
            KAFKA_EP,
            9092,
        )
        for i, e in ((1, 0), (2, 0), (3, 6))
    ]
    agg = run(kafka)
    edge = ("frontend", "kafka", "messaging_system")
    assert (edges(agg), edges(agg, FAILED)) == ({edge: 3}, {edge: 1})


def test_a_dns_query_traced_before_the_dns_proxy_is_one_request() -> None:
    # Cilium traces the query leaving the pod, then redirects it to the DNS proxy, which logs the
    # answer (as the generator's l34.dns_packets and dns.dns_lookup): one lookup, one request.
    coredns = flow_pb2.Endpoint(
        namespace="kube-system", pod_name="coredns-1", labels=["k8s:k8s-app=kube-dns"]
    )
    packet = udp_flow(0, sport=43000, dport=53)
    packet.destination.CopyFrom(coredns)
    to_proxy = udp_flow(4000, sport=43000, dport=53, point=TO_PROXY)
    to_proxy.destination.CopyFrom(coredns)
    answer = flow_pb2.Flow(
        IP=flow_pb2.IP(source=SERVER_IP, destination=CLIENT_IP),
        l4=flow_pb2.Layer4(UDP=flow_pb2.UDP(source_port=53, destination_port=43000)),
        source=coredns,
        destination=CLIENT_EP,
        l7=flow_pb2.Layer7(
            type=flow_pb2.RESPONSE, latency_ns=3_000_000, dns=flow_pb2.DNS(query="cart.shop.svc.", rcode=2)
        ),
        event_type=flow_pb2.CiliumEventType(type=ACCESS_LOG),
        traffic_direction=flow_pb2.EGRESS,
    )
    answer.time.FromNanoseconds(T0 + 3_000_000)
    agg = run([packet, to_proxy, answer])
    edge = ("frontend", "kube-dns", "")
    assert (edges(agg), edges(agg, FAILED), edges(agg, CLIENT)) == ({edge: 1}, {edge: 1}, {edge: 1})
    # Another query (another source port) is another request.
    other = flow_pb2.Flow()
    other.CopyFrom(answer)
    other.l4.UDP.destination_port = 43001
    assert edges(run([packet, to_proxy, answer, other])) == {edge: 2}


# ---- nodes ---------------------------------------------------------------------------------------


def test_nodes_are_named_as_users_know_them() -> None:
    flows = [
        tcp_flow("SYN", dst=WORLD_EP, names=("api.stripe.com",), dport=443, sport=1),
        tcp_flow("SYN", dst=WORLD_EP, dport=443, sport=2),
        tcp_flow("SYN", src=WORLD_EP, dst=CLIENT_EP, dport=443, sport=3),
        tcp_flow("SYN", dst=APISERVER_EP, dport=6443, sport=4),
        tcp_flow("SYN", src=HOST_EP, dport=8080, sport=5),
        tcp_flow("SYN", dst=DB_EP, dport=5432, sport=6),
        tcp_flow("SYN", dst=KAFKA_EP, dport=9092, sport=7),
    ]
    assert edges(run(flows)) == {
        ("frontend", "api.stripe.com", "virtual_node"): 1,
        ("frontend", "world", "virtual_node"): 1,
        ("world", "frontend", "virtual_node"): 1,
        ("frontend", "kube-apiserver", ""): 1,
        ("host", "cart", ""): 1,
        ("frontend", "postgres", "database"): 1,
        ("frontend", "kafka", "messaging_system"): 1,
    }


def test_the_cardinality_limit_bounds_the_family_and_counts_overflow() -> None:
    flows = [tcp_flow("SYN", dst=WORLD_EP, names=(f"h{i}.example",), sport=i) for i in range(1, 6)]
    agg = run(flows, limit=2)
    total = families(agg)[TOTAL]
    assert len(total.points) == 3  # two edges and the overflow series
    assert dict(total.points[-1].attributes) == {"otel.metric.overflow": "true"}
    assert total.points[-1].value == 3
    assert agg.overflowed == 3


# ---- recorded flows ------------------------------------------------------------------------------


def recorded(name: str) -> list[flow_pb2.Flow]:
    return [e.flow for e in read_events([SHARED_FLOWS / name]) if e.HasField("flow")]


def test_recorded_policy_denied_syn_is_a_failed_edge() -> None:
    # kind-drops-2.jsonl: xwing's SYN to the deathstar pod, POLICY_DENIED (field-masked: no labels,
    # so the pod name is the node name, as for spans); the ICMPv6 drop is no edge.
    agg = run(recorded("kind-drops-2.jsonl"))
    edge = ("xwing", "deathstar-7848d6c4d5-th9v2", "")
    assert (edges(agg), edges(agg, FAILED)) == ({edge: 1}, {edge: 1})


def test_recorded_http_gives_the_edges_a_reader_draws() -> None:
    flows = recorded("gke-istio-http-348.jsonl")
    # What a reader draws: one request per response record, client the response's destination.
    want: Counter[tuple[str, str]] = Counter()
    failed: Counter[tuple[str, str]] = Counter()
    for f in flows:
        if f.l7.type == flow_pb2.RESPONSE:
            pair = (f.destination.pod_name.split("-")[0], f.source.pod_name or f.IP.source)
            want[pair] += 1
            failed[pair] += f.l7.http.code >= 500
    assert sum(want.values()) == 173 and sum(failed.values()) == 151
    agg = run(flows)
    got = edges(agg)
    got_failed = edges(agg, FAILED)
    assert sum(got.values()) == 173 and sum(got_failed.values()) == 151
    # Pods keep their pod name (no app label in this recording), external IPs are `world`.
    assert (
        got[("ratings", "productpage-v1-6b746f74dc-ffh56", "")]
        == want[("ratings", "productpage-v1-6b746f74dc-ffh56")]
        == 34
    )
    assert got_failed[("ratings", "productpage-v1-6b746f74dc-ffh56", "")] == 32
    world = sum(n for (_, server), n in want.items() if server.startswith("10.128."))
    assert got[("prometheus", "world", "virtual_node")] == world - 10  # 10.128.0.5 is reserved:host
    assert got[("prometheus", "host", "")] == 10
    # Each response's latency went to the client histogram: these records are the client's proxy's.
    assert sum(p.count for p in families(agg)[CLIENT].points) == 173
    assert SERVER not in families(agg)


def test_recorded_dns_counts_each_answer_once() -> None:
    flows = recorded("gke-istio-dns-330.jsonl")
    answers = [f for f in flows if f.l7.type == flow_pb2.RESPONSE]
    agg = run(flows)
    assert sum(edges(agg).values()) == len(answers) == 165
    failing = sum(f.l7.dns.rcode not in (0, 3) for f in answers)
    assert sum(edges(agg, FAILED).values()) == failing
    # These records carry no latency_ns: it is the time from the proxy's request record to its
    # response record (the query over TCP from node-local-dns, one source port per query).
    asked: dict[tuple[str, int, str], int] = {}
    waited = []
    for f in flows:
        at = f.time.ToNanoseconds()
        if f.l7.type == flow_pb2.REQUEST:
            asked[(f.IP.source, f.l4.TCP.source_port, f.l7.dns.query)] = at
        else:
            waited.append(at - asked.pop((f.IP.destination, f.l4.TCP.destination_port, f.l7.dns.query)))
    assert not any(f.l7.latency_ns for f in flows) and len(waited) == 165
    (client,) = families(agg)[CLIENT].points
    assert client.count == 165 and client.sum == pytest.approx(sum(waited) / 1e9)
    assert client.bucket_counts == [
        sum(1 for w in waited if lo < w / 1e9 <= hi)
        for lo, hi in zip((-1, *SERVICE_GRAPH_BUCKETS), (*SERVICE_GRAPH_BUCKETS, float("inf")), strict=True)
    ]


# ---- end to end: replay -> bridge -> OTLP receiver and a real Prometheus -------------------------


def generated_scenario(path: Path) -> dict[tuple[str, str, str], tuple[int, int]]:
    """Traffic with known edges, as replay input; returns (total, failed) per edge."""
    flows: list[flow_pb2.Flow] = []
    for i in range(5):  # five connections, each seen at both ends
        at = i * 10**8
        flows += [
            tcp_flow("SYN", at_ns=at, sport=30000 + i),
            tcp_flow("SYN", at_ns=at + 1000, point=TO_ENDPOINT, sport=30000 + i),
        ]
        flows += [tcp_flow("SYN-ACK", at_ns=at + 2000, point=TO_ENDPOINT, reply=True, sport=30000 + i)]
    for at in (0, 10**9):  # a denied connection to the database, retried once
        flows += [
            tcp_flow("SYN", at_ns=at, dst=DB_EP, dport=5432, sport=31000),
            tcp_flow(
                "SYN",
                at_ns=at + 1,
                point=None,
                event=POLICY_VERDICT,
                verdict=flow_pb2.DROPPED,
                dst=DB_EP,
                dport=5432,
                sport=31000,
            ),
        ]
    for i in range(4):  # four HTTP exchanges seen by both proxies, one of them a 503
        at = 2 * 10**9 + i * 10**8
        code = 503 if i == 3 else 200
        flows += http_flows(side=0, at_ns=at, latency_ns=45_000_000, code=code, trace_id=f"{i + 1:032x}")
        flows += http_flows(side=1, at_ns=at, latency_ns=30_000_000, code=code, trace_id=f"{i + 1:032x}")
    with path.open("w") as out:
        for i, flow in enumerate(flows):
            flow.uuid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"service-graph/{i}"))  # Hubble's, for deduping
            response = observer_pb2.GetFlowsResponse(flow=flow, node_name="kind/kind-worker", time=flow.time)
            out.write(
                json.dumps(json_format.MessageToDict(response, preserving_proto_field_name=True)) + "\n"
            )
    return {("frontend", "cart", ""): (9, 1), ("frontend", "postgres", "database"): (1, 1)}


def prometheus_query(port: int, query: str) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{port}/api/v1/query?query={urllib.parse.quote(query)}"
    with urllib.request.urlopen(url, timeout=2) as response:
        return json.load(response)["data"]["result"]


def test_replay_bridge_otlp_and_prometheus_show_the_edges(tmp_path: Path) -> None:
    prometheus = shutil.which("prometheus")
    if prometheus is None:
        pytest.fail("prometheus is not installed: run scripts/setup.sh --test (Debian package prometheus)")
    generated = tmp_path / "scenario.jsonl"
    expected = generated_scenario(generated)
    drops = SHARED_FLOWS / "kind-drops-2.jsonl"
    expected[("xwing", "deathstar-7848d6c4d5-th9v2", "")] = (1, 1)
    files = [generated, drops]
    n_flows = sum(1 for e in read_events(files) if e.HasField("flow"))
    socket_path = tmp_path / "relay.sock"
    metrics_port, prom_port = free_port(), free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n"
        f"scrape_configs:\n  - job_name: hubble-otlp\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{metrics_port}']\n"
    )
    with (
        CliProcess("replay", *map(str, files), "--listen", f"unix://{socket_path}") as relay,
        OtlpReceiver() as receiver,
    ):
        relay.wait_for_line(r"serving \d+ events")
        bridge = CliProcess(
            "bridge", "--relay", f"unix://{socket_path}", "--since", "2000-01-01T00:00:00Z",
            "--otlp-endpoint", receiver.grpc_endpoint, "--otlp-protocol", "grpc", "--otlp-insecure",
            "--metric", "flow", "--metric", "service-graph:dimensions=namespace",
            "--metrics-listen", f"127.0.0.1:{metrics_port}",
            env={"OTEL_METRIC_EXPORT_INTERVAL": "300"},
        )  # fmt: skip
        prom = subprocess.Popen(
            [prometheus, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
             f"--web.listen-address=127.0.0.1:{prom_port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:

            def processed() -> int:
                return int(sum(p.as_int for p in latest_points(receiver, "hubble.flows_processed")))

            assert receiver.wait_for(lambda: processed() == n_flows, timeout=60), bridge.output
            assert receiver.wait_for(lambda: bool(latest_points(receiver, CLIENT)), timeout=30)
            # OTLP: the connector's names and attributes.
            got = {}
            for point in latest_points(receiver, TOTAL):
                a = attrs(point.attributes)
                got[(a["client"], a["server"], a["connection_type"])] = point.as_int
            failed = {}
            for point in latest_points(receiver, FAILED):
                a = attrs(point.attributes)
                failed[(a["client"], a["server"], a["connection_type"])] = point.as_int
            assert {k: (v, failed.get(k, 0)) for k, v in got.items()} == expected
            (server,) = latest_points(receiver, SERVER)
            assert list(server.explicit_bounds) == list(SERVICE_GRAPH_BUCKETS)
            assert server.count == 4 and server.bucket_counts[SERVICE_GRAPH_BUCKETS.index(0.05)] == 4
            # Prometheus: Tempo's names, as Grafana's service graph queries them.
            query = "sum by (client, server, connection_type) (traces_service_graph_request_total)"
            poll = threading.Event()
            result: list[dict[str, Any]] = []
            for _ in range(120):  # Prometheus has no push notification: poll its API, bounded
                try:
                    result = prometheus_query(prom_port, query)
                except OSError:
                    result = []
                if len(result) == len(expected):
                    break
                poll.wait(0.5)
            scraped = {
                (r["metric"]["client"], r["metric"]["server"], r["metric"].get("connection_type", "")): int(
                    float(r["value"][1])
                )
                for r in result
            }
            assert scraped == {k: v[0] for k, v in expected.items()}
            buckets = prometheus_query(
                prom_port, 'traces_service_graph_request_server_seconds_bucket{client="frontend",le="0.05"}'
            )
            assert [int(float(r["value"][1])) for r in buckets] == [4]
            labels = prometheus_query(prom_port, "traces_service_graph_request_failed_total")
            assert {r["metric"]["client_namespace"] for r in labels} == {"shop", "default"}
            # The dashboard's node graph queries give Grafana's node-graph frames: nodes by id, edges
            # with id, source and target (increase() needs two scrapes: poll until there are).
            dashboard = json.loads(DASHBOARD.read_text())
            (graph,) = [p for p in dashboard["panels"] if p["type"] == "nodeGraph"]
            frames: dict[str, list[dict[str, Any]]] = {}
            for target in graph["targets"]:
                expr = target["expr"].replace("$__range", "5m")
                for _ in range(120):
                    frames[target["refId"]] = prometheus_query(prom_port, expr)
                    if len(frames[target["refId"]]) >= len(expected):
                        break
                    poll.wait(0.5)
            drawn = {
                (r["metric"]["source"], r["metric"]["target"], r["metric"]["id"]) for r in frames["edges"]
            }
            assert drawn == {(c, s, f"{c}->{s}") for c, s, _ in expected}
            nodes = {r["metric"]["id"] for r in frames["nodes"]}
            assert nodes == {n for c, s, _ in expected for n in (c, s)}
        finally:
            prom.terminate()
            prom.wait(20)
            assert bridge.stop(signal.SIGTERM) == 0, bridge.output
            assert "Traceback" not in bridge.output
        assert relay.stop() == 0


def test_cli_accepts_the_family_with_hubbles_metric_syntax(tmp_path: Path) -> None:
    result = run_cli(
        "bridge",
        "--relay",
        "localhost:4245",
        "--metric",
        "service-graph:dimensions=cluster",
        "--print-config",
    )
    assert result.returncode == 0, result.stderr
    assert "service-graph:dimensions=cluster" in result.stdout
    bad = run_cli(
        "bridge", "--relay", "localhost:4245", "--metric", "service-graph:dimensions=pod", "--print-config"
    )
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert "dimensions='pod'" in bad.stderr
