"""`http` and `httpV2`: hubble_http_requests_total, hubble_http_request_duration_seconds.

httpV2 counts one request per RESPONSE flow, with its status, and reads the
context from the request's point of view (source and destination swapped);
http (v1) counts REQUEST flows in http_requests_total and RESPONSE flows in
http_responses_total. `exemplars=true` attaches the flow's trace id to the
duration histogram.
"""

from __future__ import annotations

from hubble_bridge.mapping.metrics.base import Family, bool_flag
from hubble_bridge.mapping.metrics.facts import FlowFacts, time_ns, trace_id
from hubble_bridge.mapping.metrics.names import L7_REQUEST, L7_RESPONSE, REPORTER
from hubble_bridge.mapping.metrics.options import ContextOptions
from hubble_bridge.mapping.metrics.series import PROMETHEUS_DEFAULT_BUCKETS, Counter, Histogram, Series


class HttpV2Family(Family):
    name = "httpV2"
    flags = frozenset({"exemplars"})
    conflicts = frozenset({"http"})

    def __init__(self, context: ContextOptions, flags: dict[str, str], limit: int, errors: list[str]) -> None:
        super().__init__(context, flags, limit, errors)
        self.exemplars = bool_flag(self.name, flags, "exemplars", errors)
        ctx = context.label_names
        labels = (*ctx, "method", "protocol", "status", "reporter")
        self.requests = Counter("hubble.http_requests", "Count of HTTP requests", labels, limit)
        self.duration = Histogram(
            "hubble.http_request_duration",
            "Quantiles of HTTP request duration in seconds",
            (*ctx, "method", "reporter"),
            limit,
            PROMETHEUS_DEFAULT_BUCKETS,
        )

    def process(self, facts: FlowFacts) -> None:
        if facts.l7_kind != "http":
            return
        l7 = facts.flow.l7
        if l7.type != L7_RESPONSE:
            return
        http = l7.http
        context = self.context.values(facts, invert=True) if self.has_context else ()
        reporter = REPORTER.get(facts.direction, "unknown")
        method = http.method
        self.requests.inc((*context, method, http.protocol, str(http.code), reporter))
        self._observe(facts, (*context, method, reporter), l7.latency_ns)

    def _observe(self, facts: FlowFacts, key: tuple[str, ...], latency_ns: int) -> None:
        if self.exemplars:
            flow = facts.flow
            tid = trace_id(flow)
            if tid:
                self.duration.observe(key, latency_ns / 1e9, tid, time_ns(flow))
                return
        self.duration.observe(key, latency_ns / 1e9)

    def series(self) -> list[Series]:
        return [self.requests, self.duration]


class HttpFamily(HttpV2Family):
    name = "http"
    conflicts = frozenset({"httpV2"})

    def __init__(self, context: ContextOptions, flags: dict[str, str], limit: int, errors: list[str]) -> None:
        super().__init__(context, flags, limit, errors)
        ctx = context.label_names
        self.requests = Counter(
            "hubble.http_requests", "Count of HTTP requests", (*ctx, "method", "protocol", "reporter"), limit
        )
        self.responses = Counter(
            "hubble.http_responses",
            "Count of HTTP responses",
            (*ctx, "method", "protocol", "status", "reporter"),
            limit,
        )

    def process(self, facts: FlowFacts) -> None:
        if facts.l7_kind != "http":
            return
        l7 = facts.flow.l7
        l7_type = l7.type
        if l7_type != L7_REQUEST and l7_type != L7_RESPONSE:
            return
        http = l7.http
        context = self.context.values(facts) if self.has_context else ()
        reporter = REPORTER.get(facts.direction, "unknown")
        if l7_type == L7_REQUEST:
            self.requests.inc((*context, http.method, http.protocol, reporter))
            return
        self.responses.inc((*context, http.method, http.protocol, str(http.code), reporter))
        self._observe(facts, (*context, http.method, reporter), l7.latency_ns)

    def series(self) -> list[Series]:
        return [self.requests, self.responses, self.duration]
