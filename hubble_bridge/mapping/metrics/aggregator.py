"""MetricsConfig and MetricsAggregator: flows in, Hubble's metric families out.

`process` is the hot path: one shared FlowFacts per flow, then each enabled
family in turn, each a few dict operations. `snapshot` turns the cumulative
state into telemetry MetricFamily records (only metrics that have points).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hubble_bridge.api import observer_pb2
from hubble_bridge.errors import ConfigError
from hubble_bridge.mapping.metrics.base import Family
from hubble_bridge.mapping.metrics.facts import FlowFacts
from hubble_bridge.mapping.metrics.families.lost import LostEvents
from hubble_bridge.mapping.metrics.http_semconv import HttpDurations
from hubble_bridge.mapping.metrics.registry import build_families
from hubble_bridge.mapping.metrics.series import Series
from hubble_bridge.telemetry import MetricFamily

# The families Cilium's Helm chart and docs enable most often.
DEFAULT_FAMILIES = (
    "flow",
    "drop",
    "tcp",
    "port-distribution",
    "icmp",
    "dns",
    "httpV2",
    "kafka",
    "policy",
    "flows-to-world",
    "sidecar-bytes",  # byte and packet counters of the BCC sidecar's flows; nothing for Cilium's
)


@dataclass
class MetricsConfig:
    families: list[str] = field(default_factory=lambda: list(DEFAULT_FAMILIES))  # Hubble's option syntax
    cardinality_limit: int = 2000  # series per metric; beyond it one overflow series per metric
    http_duration_histograms: bool = True  # the semconv http.server/client.request.duration pair

    def validate(self) -> None:
        """Raise ConfigError naming every problem; no side effects."""
        _build(self)


def _build(config: MetricsConfig) -> tuple[list[Family], int]:
    errors: list[str] = []
    limit = config.cardinality_limit
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        errors.append(f"metrics: cardinality_limit must be a positive integer, got {limit!r}")
        limit = 1
    if not isinstance(config.families, list):
        errors.append(f"metrics: families must be a list of strings, got {config.families!r}")
        families: list[Family] = []
    else:
        families = build_families(config.families, limit, errors)
    if errors:
        raise ConfigError("invalid metrics configuration: " + "; ".join(errors))
    return families, limit


class MetricsAggregator:
    def __init__(self, config: MetricsConfig, start_time_ns: int) -> None:
        families, limit = _build(config)
        self.start_time_ns = start_time_ns
        self._facts = FlowFacts()
        processors: list[Family | HttpDurations] = list(families)
        if config.http_duration_histograms:
            processors.append(HttpDurations(limit))
        self._process = tuple(p.process for p in processors)
        self._lost = LostEvents(limit)
        self._series: list[Series] = [s for p in processors for s in p.series()] + self._lost.series()

    def process(self, response: observer_pb2.GetFlowsResponse) -> None:
        kind = response.WhichOneof("response_types")
        if kind == "flow":
            facts = self._facts
            facts.load(response.flow)
            for process in self._process:
                process(facts)
        elif kind == "lost_events":
            self._lost.add(response.lost_events)

    def snapshot(self) -> list[MetricFamily]:
        """Every metric with at least one point, cumulative since start_time_ns; safe to keep."""
        return [s.family(self.start_time_ns) for s in self._series if s.points or s.overflowed]

    @property
    def overflowed(self) -> int:
        """Data points that went to an overflow series, over all metrics."""
        return sum(s.overflowed for s in self._series)
