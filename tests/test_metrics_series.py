"""Cardinality overflow, histogram buckets, exemplars and the semantic-convention HTTP durations."""

from __future__ import annotations

import pytest

from hubble_bridge.api import observer_pb2
from hubble_bridge.mapping.metrics import MetricsAggregator
from hubble_bridge.mapping.metrics.http_semconv import BUCKETS, protocol_version
from hubble_bridge.mapping.metrics.series import Counter, Histogram
from hubble_bridge.telemetry import MetricKind
from tests.test_metrics_support import aggregate, counts, family, names, response

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


def test_counter_overflow_beyond_the_limit() -> None:
    counter = Counter("c", "", ("k",), limit=2)
    for value in ("a", "b", "a", "c", "d", "c", "b"):
        counter.inc((value,))
    assert counter.overflowed == 3
    points = {p.attributes: p.value for p in counter.family(5).points}
    assert points == {(("k", "a"),): 2, (("k", "b"),): 2, (("otel.metric.overflow", "true"),): 3}


def test_aggregator_reports_overflowed_points() -> None:
    flows = [response(verdict="DROPPED", l4={"UDP": {"destination_port": port}}) for port in range(5)]
    agg = aggregate(["drop", "flow:destinationContext=ip"], *flows, cardinality_limit=1)
    assert counts(agg, "hubble.drop") == {(("reason", "DROP_REASON_UNKNOWN"), ("protocol", "UDP")): 5}
    agg = aggregate(["port-distribution"], cardinality_limit=3)
    for port in range(5):
        agg.process(
            response(
                verdict="FORWARDED",
                is_reply=False,
                l4={"TCP": {"destination_port": port}},
                event_type={"type": 4},
            )
        )
    got = counts(agg, "hubble.port_distribution")
    assert len(got) == 4 and got[(("otel.metric.overflow", "true"),)] == 2
    assert agg.overflowed == 2


@pytest.mark.parametrize(
    ("value", "bucket"),
    [(0.0, 0), (0.005, 0), (0.0051, 1), (1.0, 2), (1.5, 3), (10.0, 3), (10.01, 4)],
)
def test_histogram_bucket_upper_bounds_are_inclusive(value: float, bucket: int) -> None:
    histogram = Histogram("h", "", (), limit=10, bounds=(0.005, 0.5, 1.0, 10.0))
    histogram.observe((), value)
    (point,) = histogram.family(0).points
    expected = [0] * 5
    expected[bucket] = 1
    assert (point.bucket_counts, point.count, point.sum) == (expected, 1, value)


def test_histogram_overflow_and_latest_exemplar_per_bucket() -> None:
    histogram = Histogram("h", "", ("k",), limit=1, bounds=(1.0,))
    histogram.observe(("a",), 0.5, b"\x01" * 16, 10)
    histogram.observe(("a",), 0.7, b"\x02" * 16, 20)
    histogram.observe(("a",), 3.0, b"\x03" * 16, 30)
    histogram.observe(("a",), 0.1)  # no trace: keeps the earlier exemplar
    histogram.observe(("b",), 2.0)
    regular, overflow = histogram.family(0).points
    assert regular.attributes == (("k", "a"),) and regular.bucket_counts == [3, 1]
    assert [(e.value, e.time_ns, e.trace_id) for e in regular.exemplars] == [
        (0.7, 20, b"\x02" * 16),
        (3.0, 30, b"\x03" * 16),
    ]
    assert overflow.attributes == (("otel.metric.overflow", "true"),) and overflow.count == 1
    assert histogram.overflowed == 1


def test_snapshot_is_a_copy() -> None:
    histogram = Histogram("h", "", (), limit=10, bounds=(1.0,))
    histogram.observe((), 0.5)
    before = histogram.family(0)
    histogram.observe((), 0.5)
    assert before.points[0].bucket_counts == [1, 0] and before.points[0].count == 1


def reply(direction: str, code: int, latency_ns: int, **extra: object) -> observer_pb2.GetFlowsResponse:
    fields: dict[str, object] = {
        "verdict": "FORWARDED",
        "IP": {"source": "10.0.0.9", "destination": "10.0.0.1", "ipVersion": "IPv4"},
        "l4": {"TCP": {"source_port": 8080, "destination_port": 51000}},
        "source": {"namespace": "shop", "pod_name": "cart-1", "workloads": [{"name": "cart"}]},
        "destination": {"namespace": "web", "pod_name": "frontend-1"},
        "Type": "L7",
        "event_type": {"type": 129},
        "traffic_direction": direction,
        "is_reply": True,
        "l7": {
            "type": "RESPONSE",
            "latency_ns": str(latency_ns),
            "http": {"code": code, "method": "GET", "url": "http://cart:8080/items", "protocol": "HTTP/1.1"},
        },
    }
    fields.update(extra)
    return response(**fields)


def semconv(*flows: observer_pb2.GetFlowsResponse) -> MetricsAggregator:
    return aggregate([], *flows, http_duration_histograms=True)


def test_http_server_duration_from_ingress_responses() -> None:
    agg = semconv(
        reply("INGRESS", 200, 30_000_000),
        reply("INGRESS", 503, 30_000_000, source_service={"name": "cart", "namespace": "shop"}),
        reply("INGRESS", 404, 6_000_000_000),
    )
    fam = family(agg, "http.server.request.duration")
    assert (fam.kind, fam.unit, fam.bounds) == (MetricKind.HISTOGRAM, "s", BUCKETS)
    common = (("network.protocol.name", "http"), ("network.protocol.version", "1.1"))
    by_attrs = {p.attributes: p for p in fam.points}
    ok = (("http.request.method", "GET"), ("http.response.status_code", 200), *common)
    assert by_attrs[(*ok, ("server.address", "cart"), ("url.scheme", "http"))].bucket_counts[3] == 1  # 30 ms
    err = (("http.request.method", "GET"), ("http.response.status_code", 503), *common)
    assert (*err, ("server.address", "cart"), ("url.scheme", "http"), ("error.type", "503")) in by_attrs
    not_found = (("http.request.method", "GET"), ("http.response.status_code", 404), *common)
    point = by_attrs[
        (*not_found, ("server.address", "cart"), ("url.scheme", "http"))
    ]  # 4xx: no error on server
    assert point.bucket_counts[BUCKETS.index(7.5)] == 1
    assert "http.client.request.duration" not in names(agg)


def test_http_client_duration_from_egress_responses_with_exemplar() -> None:
    agg = semconv(
        reply(
            "EGRESS",
            404,
            1_000_000,
            trace_context={"parent": {"trace_id": TRACE_ID}},
            time="2021-10-04T14:28:40.5Z",
        ),
        reply("EGRESS", 200, 0),  # no latency: not measured
        reply("TRAFFIC_DIRECTION_UNKNOWN", 200, 5),  # neither side: not measured
        reply("EGRESS", 200, 5, l7={"type": "REQUEST", "http": {"method": "GET"}}),
    )
    (point,) = family(agg, "http.client.request.duration").points
    assert point.attributes == (
        ("http.request.method", "GET"),
        ("http.response.status_code", 404),
        ("network.protocol.name", "http"),
        ("network.protocol.version", "1.1"),
        ("server.address", "cart"),
        ("server.port", 8080),
        ("error.type", "404"),
    )
    (exemplar,) = point.exemplars
    assert exemplar.trace_id == bytes.fromhex(TRACE_ID) and exemplar.value == 0.001
    assert exemplar.time_ns == 1_633_357_720_500_000_000
    assert "http.server.request.duration" not in names(agg)


def test_unknown_methods_become_other_and_server_address_falls_back() -> None:
    bare = {"pod_name": "", "namespace": ""}
    agg = semconv(
        reply(
            "EGRESS",
            200,
            5,
            source=bare,
            l7={"type": "RESPONSE", "latency_ns": "5", "http": {"method": "PURGE"}},
        ),
        reply("EGRESS", 200, 5, source=bare, source_names=["api.example.com"]),
    )
    got = {
        dict(p.attributes).get("server.address"): dict(p.attributes)
        for p in family(agg, "http.client.request.duration").points
    }
    assert got["10.0.0.9"]["http.request.method"] == "_OTHER"
    assert got["api.example.com"]["http.request.method"] == "GET"


def test_invalid_trace_ids_give_no_exemplar() -> None:
    bad = ["zz", "00000000000000000000000000000000", "4bf92f35"]
    agg = semconv(*(reply("EGRESS", 200, 5, trace_context={"parent": {"trace_id": t}}) for t in bad))
    (point,) = family(agg, "http.client.request.duration").points
    assert point.count == 3 and point.exemplars == []


def test_hubble_http_exemplars_only_when_enabled() -> None:
    traced = reply("EGRESS", 200, 5, trace_context={"parent": {"trace_id": TRACE_ID}})
    (off,) = family(aggregate(["httpV2"], traced), "hubble.http_request_duration").points
    (on,) = family(aggregate(["httpV2:exemplars=true"], traced), "hubble.http_request_duration").points
    assert off.exemplars == []
    assert [e.trace_id for e in on.exemplars] == [bytes.fromhex(TRACE_ID)]


@pytest.mark.parametrize(
    ("protocol", "version"),
    [
        ("HTTP/1.1", "1.1"),
        ("HTTP/1.0", "1.0"),
        ("HTTP/2", "2"),
        ("HTTP/2.0", "2"),
        ("HTTP/3", "3"),
        ("", ""),
        ("SPDY/3", ""),
    ],
)
def test_protocol_version(protocol: str, version: str) -> None:
    assert protocol_version(protocol) == version
