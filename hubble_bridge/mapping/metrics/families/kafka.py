"""`kafka`: hubble_kafka_requests_total and hubble_kafka_request_duration_seconds (REQUEST flows).

As in cilium pkg/hubble/metrics/kafka/handler.go, `error_code` is Go's string(int32) of the
code, a one-character string ("\\x00" for no error), and the duration's help text is the HTTP
one: series and dashboards match Hubble's.
"""

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
            inc((*ctx, topic, api_key, go_rune(kafka.error_code), reporter))
            observe((*ctx, topic, api_key, reporter), l7.latency_ns / 1e9)

        return count

    def series(self) -> list[Series]:
        return [self.requests, self.duration]


def go_rune(code: int) -> str:
    """Go's string(int32(code)), which Hubble applies to error_code: the character with that code
    point (0 is "\\x00", 3 is "\\x03"), U+FFFD for a negative, surrogate or too large value."""
    if code < 0 or code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
        return "\ufffd"
    return chr(code)
