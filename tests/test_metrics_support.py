"""Builders shared by the metrics tests (no tests here): protojson flows in, metric points out."""

from __future__ import annotations

from typing import Any

from hubble_bridge.api import observer_pb2
from hubble_bridge.flows.codec import parse_event_dict
from hubble_bridge.mapping.metrics import MetricsAggregator, MetricsConfig
from hubble_bridge.telemetry import MetricFamily


def response(**flow: Any) -> observer_pb2.GetFlowsResponse:
    """A GetFlowsResponse from Hubble's JSON field names, e.g. response(verdict="DROPPED", l4={...})."""
    message = parse_event_dict({"flow": flow})
    assert message is not None
    return message


def aggregate(
    families: list[str], *responses: observer_pb2.GetFlowsResponse, **config: Any
) -> MetricsAggregator:
    config.setdefault("http_duration_histograms", False)
    aggregator = MetricsAggregator(MetricsConfig(families=families, **config), start_time_ns=1)
    for message in responses:
        aggregator.process(message)
    return aggregator


def family(aggregator: MetricsAggregator, name: str) -> MetricFamily:
    by_name = {f.name: f for f in aggregator.snapshot()}
    assert name in by_name, f"{name} not in {sorted(by_name)}"
    return by_name[name]


def counts(aggregator: MetricsAggregator, name: str) -> dict[tuple[tuple[str, str], ...], int | float]:
    """Counter points as {attributes: value}."""
    return {p.attributes: p.value for p in family(aggregator, name).points}  # type: ignore[union-attr]


def names(aggregator: MetricsAggregator) -> set[str]:
    return {f.name for f in aggregator.snapshot()}


TCP_SYN = {"TCP": {"source_port": 40000, "destination_port": 80, "flags": {"SYN": True}}}
POD_A = {"namespace": "shop", "pod_name": "cart-7d9f8b6c5-x2x4z", "labels": ["k8s:app=cart"]}
POD_B = {
    "namespace": "db",
    "pod_name": "redis-0",
    "labels": ["k8s:app.kubernetes.io/name=redis", "k8s:app=cache"],
    "workloads": [{"name": "redis", "kind": "StatefulSet"}],
}
WORLD = {"identity": 2, "labels": ["reserved:world"]}
