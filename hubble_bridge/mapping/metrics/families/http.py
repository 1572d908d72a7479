"""`http` and `httpV2`: hubble_http_requests_total, hubble_http_request_duration_seconds.

httpV2 counts one request per RESPONSE flow, with its status, and reads the
context from the request's point of view (source and destination swapped);
http (v1) counts REQUEST flows in http_requests_total and RESPONSE flows in
http_responses_total. `exemplars=true` attaches the flow's trace id to the
duration histogram.
"""

from __future__ import annotations

from collections.abc import Callable

from hubble_bridge.mapping.metrics.base import Family, bool_flag
from hubble_bridge.mapping.metrics.facts import HTTP, FlowFacts, Handler
from hubble_bridge.mapping.metrics.names import L7_REQUEST, L7_RESPONSE, REPORTER
from hubble_bridge.mapping.metrics.options import ContextOptions
from hubble_bridge.mapping.metrics.series import PROMETHEUS_DEFAULT_BUCKETS, Counter, Histogram, Series


class HttpV2Family(Family):
    name = "httpV2"
    flags = frozenset({"exemplars"})
    conflicts = frozenset({"http"})
    reads = frozenset({HTTP})

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

    def handler(self, kind: FlowFacts) -> Handler | None:
        if kind.l7_kind != "http" or kind.l7_type != L7_RESPONSE:
            return None
        reporter = REPORTER.get(kind.direction, "unknown")
        inc = self.requests.inc
        observe = self._observer()
        context = self.context if self.has_context else None
        if context is None:

            def count(facts: FlowFacts) -> None:
                method = facts.http_method
                inc((method, facts.http_protocol, str(facts.http_code), reporter))
                observe(facts, (method, reporter), facts.latency_ns)

            return count

        def count_in_context(facts: FlowFacts) -> None:
            ctx = context.values(facts, invert=True)
            method = facts.http_method
            inc((*ctx, method, facts.http_protocol, str(facts.http_code), reporter))
            observe(facts, (*ctx, method, reporter), facts.latency_ns)

        return count_in_context

    def _observer(self) -> Callable[[FlowFacts, tuple[str, ...], int], None]:
        """Records one duration, with the flow's trace id as exemplar when the option asks for it."""
        observe = self.duration.observe
        if not self.exemplars:
            return lambda facts, key, latency_ns: observe(key, latency_ns / 1e9)

        def with_exemplar(facts: FlowFacts, key: tuple[str, ...], latency_ns: int) -> None:
            observe(key, latency_ns / 1e9, *facts.exemplar())

        return with_exemplar

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

    def handler(self, kind: FlowFacts) -> Handler | None:
        l7_type = kind.l7_type
        if kind.l7_kind != "http" or (l7_type != L7_REQUEST and l7_type != L7_RESPONSE):
            return None
        reporter = REPORTER.get(kind.direction, "unknown")
        context = self.context if self.has_context else None
        if l7_type == L7_REQUEST:
            requests = self.requests.inc

            def count_request(facts: FlowFacts) -> None:
                ctx = () if context is None else context.values(facts)
                requests((*ctx, facts.http_method, facts.http_protocol, reporter))

            return count_request

        responses = self.responses.inc
        observe = self._observer()

        def count_response(facts: FlowFacts) -> None:
            ctx = () if context is None else context.values(facts)
            method = facts.http_method
            responses((*ctx, method, facts.http_protocol, str(facts.http_code), reporter))
            observe(facts, (*ctx, method, reporter), facts.latency_ns)

        return count_response

    def series(self) -> list[Series]:
        return [self.requests, self.responses, self.duration]
