"""The metric families on real recorded flows (../shared/flows), checked against plain counts of the JSON."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from hubble_bridge.flows.codec import parse_json_line
from hubble_bridge.mapping.metrics import MetricsAggregator, MetricsConfig
from tests.conftest import SHARED_FLOWS, flow_files
from tests.test_metrics_support import counts, family

HTTP_FILE = SHARED_FLOWS / "gke-istio-http-348.jsonl"
DNS_FILE = SHARED_FLOWS / "gke-istio-dns-330.jsonl"
DROPS_FILE = SHARED_FLOWS / "kind-drops-2.jsonl"


def raw_flows(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line)["flow"] for line in path.read_bytes().splitlines() if line.strip()]


def run(paths: list[Path], families: list[str] | None = None) -> MetricsAggregator:
    config = MetricsConfig() if families is None else MetricsConfig(families=families)
    aggregator = MetricsAggregator(config, start_time_ns=1)
    for path in paths:
        for line in path.read_bytes().splitlines():
            message = parse_json_line(line)
            if message is not None:
                aggregator.process(message)
    return aggregator


@pytest.fixture(scope="module")
def everything() -> MetricsAggregator:
    return run(flow_files())


def test_flows_processed_sums_to_the_number_of_flows(everything: MetricsAggregator) -> None:
    total = sum(len(raw_flows(path)) for path in flow_files())
    assert total == 680
    assert sum(counts(everything, "hubble.flows_processed").values()) == total
    assert everything.overflowed == 0


def test_http_v1_requests_by_method_equal_request_flows() -> None:
    plain = Counter(
        f["l7"]["http"]["method"]
        for f in raw_flows(HTTP_FILE)
        if f["l7"]["type"] == "REQUEST" and "http" in f["l7"]
    )
    assert sum(plain.values()) == 175
    got = Counter[str]()
    for attrs, value in counts(run([HTTP_FILE], ["http"]), "hubble.http_requests").items():
        got[dict(attrs)["method"]] += int(value)
    assert got == plain


def test_http_v2_requests_by_method_and_status_equal_response_flows(everything: MetricsAggregator) -> None:
    responses = [f for f in raw_flows(HTTP_FILE) if f["l7"]["type"] == "RESPONSE"]
    plain = Counter((f["l7"]["http"]["method"], str(f["l7"]["http"]["code"])) for f in responses)
    assert sum(plain.values()) == 173 and {code for _, code in plain} >= {"200", "503"}
    got = Counter[tuple[str, str]]()
    for attrs, value in counts(everything, "hubble.http_requests").items():
        labels = dict(attrs)
        got[labels["method"], labels["status"]] += int(value)
    assert got == plain
    latency_s = sum(int(f["l7"].get("latency_ns", 0)) for f in responses) / 1e9
    points = family(everything, "hubble.http_request_duration").points
    assert sum(p.count for p in points) == 173
    assert sum(p.sum for p in points) == pytest.approx(latency_s)


def test_semconv_client_durations_cover_egress_responses_with_latency(everything: MetricsAggregator) -> None:
    measured = [
        f
        for f in raw_flows(HTTP_FILE)
        if f["l7"]["type"] == "RESPONSE"
        and f.get("traffic_direction") == "EGRESS"
        and int(f["l7"].get("latency_ns", 0))
    ]
    points = family(everything, "http.client.request.duration").points
    assert sum(p.count for p in points) == len(measured) > 0
    errors = sum(p.count for p in points if dict(p.attributes).get("error.type") == "503")
    assert errors == sum(1 for f in measured if f["l7"]["http"]["code"] == 503)


def test_dns_rcode_split_equals_plain_count(everything: MetricsAggregator) -> None:
    flows = raw_flows(DNS_FILE)
    names = {0: "No Error", 3: "Non-Existent Domain"}
    plain = Counter(names[f["l7"]["dns"].get("rcode", 0)] for f in flows if f.get("is_reply"))
    assert set(plain) == {"No Error", "Non-Existent Domain"} and sum(plain.values()) == 165
    got = Counter[str]()
    for attrs, value in counts(everything, "hubble.dns_responses").items():
        got[dict(attrs)["rcode"]] += int(value)
    assert got == plain
    queries = sum(counts(everything, "hubble.dns_queries").values())
    assert queries == sum(1 for f in flows if not f.get("is_reply")) == 165


def test_field_masked_drops(everything: MetricsAggregator) -> None:
    assert counts(run([DROPS_FILE], ["drop", "icmp"]), "hubble.drop") == {
        (("reason", "INVALID_SOURCE_IP"), ("protocol", "ICMPv6")): 1,
        (("reason", "POLICY_DENIED"), ("protocol", "TCP")): 1,
    }
    assert counts(everything, "hubble.icmp") == {(("family", "IPv4"), ("type", "RouterSolicitation")): 1}


def test_context_labels_on_real_flows() -> None:
    agg = run([DNS_FILE], ["dns:sourceContext=pod-short|namespace;destinationContext=pod-name|namespace"])
    queries = counts(agg, "hubble.dns_queries")
    # pod-short strips up to two "-suffix" parts, as Hubble's (deprecated) pattern does.
    assert {dict(attrs)["source"] for attrs in queries} == {"kube-system/node-local"}
    plain = Counter(f["destination"].get("pod_name") for f in raw_flows(DNS_FILE) if not f.get("is_reply"))
    got = Counter[str]()
    for attrs, value in queries.items():
        got[dict(attrs)["destination"]] += int(value)
    assert got == plain and len(plain) > 1
