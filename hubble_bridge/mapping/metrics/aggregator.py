"""MetricsConfig and MetricsAggregator: flows in, Hubble's metric families out.

`process` is the hot path. A flow's kind (the key process_flow reads: verdict,
direction, L4/L7 arm, L7 type, event type, is_reply) decides most labels and
which families can count it at all, so each kind gets, once, its FlowFacts
and the handlers of just those families; a flow then costs the key, a dict
lookup and those handlers.
`snapshot` turns the cumulative state into telemetry MetricFamily records
(only metrics that have points).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hubble_bridge.api import flow_pb2, observer_pb2
from hubble_bridge.errors import ConfigError
from hubble_bridge.mapping.metrics.base import Family
from hubble_bridge.mapping.metrics.facts import (
    EXTENSIONS,
    HTTP,
    IS_REPLY,
    L4,
    FlowFacts,
    Handler,
    KindKey,
)
from hubble_bridge.mapping.metrics.families.lost import LostEvents
from hubble_bridge.mapping.metrics.http_semconv import HttpDurations
from hubble_bridge.mapping.metrics.registry import build_families
from hubble_bridge.mapping.metrics.series import Count, Histogram, Series
from hubble_bridge.telemetry import MetricFamily

# Kinds seen in practice number in the tens; a stream of made-up enum values must not grow the cache.
MAX_KINDS = 4096

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


HISTOGRAM_AGGREGATIONS = ("explicit_bucket_histogram", "base2_exponential_bucket_histogram")


@dataclass
class MetricsConfig:
    families: list[str] = field(default_factory=lambda: list(DEFAULT_FAMILIES))  # Hubble's option syntax
    cardinality_limit: int = 2000  # series per metric; beyond it one overflow series per metric
    http_duration_histograms: bool = True  # the semconv http.server/client.request.duration pair
    # OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION: base2_exponential_bucket_histogram also keeps
    # base-2 exponential buckets for OTLP (Prometheus keeps the explicit ones).
    histogram_aggregation: str = "explicit_bucket_histogram"

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
    if config.histogram_aggregation not in HISTOGRAM_AGGREGATIONS:
        errors.append(
            f"metrics: histogram_aggregation {config.histogram_aggregation!r} is not one of "
            + ", ".join(HISTOGRAM_AGGREGATIONS)
        )
    if errors:
        raise ConfigError("invalid metrics configuration: " + "; ".join(errors))
    return families, limit


# A Count the aggregator adds inline: the counter's points and the admitted key.
_CountCell = tuple[dict[tuple[str, ...], int], tuple[str, ...]]
# A kind's FlowFacts, handlers, Counts, and whether they read facts.l4 and the HTTP fields.
_Plan = tuple[FlowFacts, tuple[Handler, ...], tuple[_CountCell, ...], bool, bool]


class MetricsAggregator:
    def __init__(self, config: MetricsConfig, start_time_ns: int) -> None:
        families, limit = _build(config)
        self.start_time_ns = start_time_ns
        processors: list[Family | HttpDurations] = list(families)
        if config.http_duration_histograms:
            processors.append(HttpDurations(limit))
        self._processors = tuple(processors)
        # is_reply decides for whole kinds whether several families count a flow, so it is part of
        # the kind key, but only read when some family looks at it at all.
        self._key_reply = any(IS_REPLY in p.reads for p in processors)
        self._key_extensions = any(EXTENSIONS in p.reads for p in processors)
        self._kinds: dict[KindKey, _Plan] = {}
        self._seq = 0
        self._lost = LostEvents(limit)
        self._series: list[Series] = [s for p in processors for s in p.series()] + self._lost.series()
        if config.histogram_aggregation == "base2_exponential_bucket_histogram":
            # Every histogram of every family, whatever family it is: none needs code of its own.
            for series in self._series:
                if isinstance(series, Histogram):
                    series.use_exponential()

    def process(self, response: observer_pb2.GetFlowsResponse) -> None:
        kind = response.WhichOneof("response_types")
        if kind == "flow":
            self.process_flow(response.flow)
        elif kind == "lost_events":
            self._lost.add(response.lost_events)

    def process_flow(self, flow: flow_pb2.Flow) -> None:
        # The kind key: every input of FlowFacts.load, read as cheaply as upb allows (inline, as
        # this runs for every flow). An unset event_type reads as type 0, sub_type 0: only then
        # is the HasField needed, and load() then also looks at whether l7 is there at all.
        event = flow.event_type
        event_type: int | None = event.type
        sub_type: int | bool = event.sub_type
        if not event_type and not sub_type and not flow.HasField("event_type"):
            event_type = None
            sub_type = flow.HasField("l7")
        l4 = flow.l4
        if flow.HasField("l7"):
            l7 = flow.l7
            l7_kind = l7.WhichOneof("record")
            l7_type = l7.type if l7_kind else None
        else:
            l7 = l7_kind = l7_type = None
        # reply_state(flow), inline: a true value is always set, only a false one needs HasField.
        reply = None
        if self._key_reply:
            reply = True if flow.is_reply.value else (False if flow.HasField("is_reply") else None)
        extensions = flow.HasField("extensions") if self._key_extensions else None
        key = (
            flow.verdict,
            flow.traffic_direction,
            l4.WhichOneof("protocol"),
            l7_kind,
            l7_type,
            event_type,
            sub_type,
            reply,
            extensions,
        )
        plan = self._kinds.get(key)
        if plan is None:
            plan = self._plan(flow)
            if len(self._kinds) < MAX_KINDS:
                self._kinds[key] = plan
        facts, handlers, counts, reads_l4, reads_http = plan
        # Context label caches compare seq, so it must grow across all kinds' FlowFacts.
        self._seq = facts.seq = self._seq + 1
        facts.flow = flow
        facts.l7 = l7
        if reads_l4:
            facts.l4 = getattr(l4, facts.l4_kind)  # reads_l4 implies an arm
        if reads_http:
            facts.read_http(l7)  # reads_http implies an http arm
        for handler in handlers:
            handler(facts)
        for points, count_key in counts:
            points[count_key] += 1

    def _plan(self, flow: flow_pb2.Flow) -> _Plan:
        """FlowFacts for the flow's kind, the handlers of the families counting such flows, what they read."""
        facts = FlowFacts()
        facts.load(flow)
        handlers: list[Handler] = []
        counts: list[_CountCell] = []
        reads: set[str] = set()
        for processor in self._processors:
            handler = processor.handler(facts)
            if handler is None:
                continue
            reads |= processor.reads
            # The flow being planned is the kind's first, so its Count admits the key just as its
            # inc would; a key the limit turns away goes on through inc, to the overflow series.
            if isinstance(handler, Count) and handler.counter.admit(handler.key):
                counts.append((handler.counter.points, handler.key))
            else:
                handlers.append(handler)
        reads_l4 = L4 in reads and facts.l4_kind is not None
        reads_http = HTTP in reads and facts.l7_kind == "http"
        return facts, tuple(handlers), tuple(counts), reads_l4, reads_http

    def snapshot(self) -> list[MetricFamily]:
        """Every metric with at least one point, cumulative since start_time_ns; safe to keep."""
        return [s.family(self.start_time_ns) for s in self._series if s.points or s.overflowed]

    @property
    def overflowed(self) -> int:
        """Data points that went to an overflow series, over all metrics."""
        return sum(s.overflowed for s in self._series)
