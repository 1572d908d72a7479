"""`kafka`: hubble_kafka_requests_total and hubble_kafka_request_duration_seconds (REQUEST flows)."""

from __future__ import annotations

from hubble_bridge.mapping.metrics.base import Family
from hubble_bridge.mapping.metrics.facts import FlowFacts, Handler
from hubble_bridge.mapping.metrics.names import L7_REQUEST, REPORTER
from hubble_bridge.mapping.metrics.options import ContextOptions
from hubble_bridge.mapping.metrics.series import PROMETHEUS_DEFAULT_BUCKETS, Counter, Histogram, Series


class KafkaFamily(Family):
    name = "kafka"

    def __init__(self, context: ContextOptions, flags: dict[str, str], limit: int, errors: list[str]) -> None:
        super().__init__(context, flags, limit, errors)
        ctx = context.label_names
        labels = (*ctx, "topic", "api_key", "error_code", "reporter")
        self.requests = Counter("hubble.kafka_requests", "Count of Kafka requests", labels, limit)
        self.duration = Histogram(
            "hubble.kafka_request_duration",
            # sic: Hubble's own help text here (cilium pkg/hubble/metrics/kafka/handler.go)
            "Quantiles of HTTP request duration in seconds",
            (*ctx, "topic", "api_key", "reporter"),
            limit,
            PROMETHEUS_DEFAULT_BUCKETS,
        )

    def handler(self, kind: FlowFacts) -> Handler | None:
        if kind.l7_kind != "kafka" or kind.l7_type != L7_REQUEST:
            return None
        reporter = REPORTER.get(kind.direction, "unknown")
        inc = self.requests.inc
        observe = self.duration.observe
        context = self.context if self.has_context else None

        def count(facts: FlowFacts) -> None:
            l7 = facts.l7
            kafka = l7.kafka
            ctx = () if context is None else context.values(facts)
            topic = kafka.topic
            api_key = kafka.api_key
            # Hubble formats error_code with Go's string(int32), i.e. as a rune; the number is what is meant.
            inc((*ctx, topic, api_key, str(kafka.error_code), reporter))
            observe((*ctx, topic, api_key, reporter), l7.latency_ns / 1e9)

        return count

    def series(self) -> list[Series]:
        return [self.requests, self.duration]
