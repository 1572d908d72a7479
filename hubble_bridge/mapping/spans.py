"""Hubble L7 flows to spans: one span per request/response exchange.

Cilium's proxy reports an exchange as a REQUEST flow and a RESPONSE flow with
source and destination swapped (the response carries the request's method, URL
and headers, plus the code and latency). A RESPONSE is joined with its REQUEST:

- by `x-request-id` (plus node and traffic direction) when the request has one;
- else by connection: the request's 5-tuple is the response's reversed, on the same
  node and direction, narrowed by method + URL (HTTP) or query + qtype (DNS);
- first in, first out among requests with the same key (retries reuse x-request-id).

The span ends at the response's time and starts `latency_ns` earlier (request time
when there is no latency). A RESPONSE without a REQUEST still gives a span. A REQUEST
with no RESPONSE within `join_window_s` of stream time (the latest flow time seen,
or `expire(now_ns)`) ends as a span marked `hubble.l7.unanswered`. SAMPLE flows give
no span. Stream time leaps more than an hour (or a window) only when a second flow
lands near the first: one flow from a skewed or hostile clock would otherwise end
every request that follows as unanswered.

Kind comes from where the proxy saw the exchange: INGRESS -> SERVER (resource: the
server, request destination), otherwise CLIENT (resource: the client, request
source); Kafka produce requests are PRODUCER. When both ends are seen, the SERVER
span's parent is the CLIENT span (found through x-request-id or traceparent, see
spans_context), and the CLIENT span's parent is the span in the request's
traceparent. Attribute table: spans_attrs (L7) and spans_l3l4 (L3/L4).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from hubble_bridge.api import flow_pb2, observer_pb2
from hubble_bridge.configload import validate_parts
from hubble_bridge.errors import ConfigError
from hubble_bridge.flows.codec import timestamp_ns
from hubble_bridge.mapping import semconv as sc
from hubble_bridge.mapping.limits import UINT64_MAX, AttributeLimits, LimitCounts, apply_limits, limit_str
from hubble_bridge.mapping.redact import HeaderScanner, RedactConfig
from hubble_bridge.mapping.resource import endpoint_resource
from hubble_bridge.mapping.spans_attrs import (
    Fields,
    L7Body,
    UrlParts,
    dns_fields,
    exchange_fields,
    http_fields,
    kafka_fields,
    read_net,
    span_kind,
)
from hubble_bridge.mapping.spans_context import (
    USER_AGENT,
    WANTED_HEADERS,
    X_REQUEST_ID,
    IdGenerator,
    header_correlation_key,
    incoming_context,
    trace_correlation_key,
)
from hubble_bridge.mapping.spans_join import JoinKey, JoinTable, PendingRequest, connection_key
from hubble_bridge.mapping.spans_l3l4 import l3l4_fields
from hubble_bridge.telemetry import SpanKind, SpanRecord, StatusCode

_NO_FOUND: dict[str, str] = {}  # shared, never written: found headers of a flow that has none
_LEAP_NS = 3600 * 1_000_000_000
_L7 = flow_pb2.L7
_L3_L4 = flow_pb2.L3_L4
_UNKNOWN_TYPE = flow_pb2.UNKNOWN_TYPE
_REQUEST = flow_pb2.REQUEST
_RESPONSE = flow_pb2.RESPONSE
_DROPPED = flow_pb2.DROPPED
_SERVER = SpanKind.SERVER
_CLIENT = SpanKind.CLIENT
_INGRESS = flow_pb2.INGRESS
_UNSET = StatusCode.UNSET


@dataclass
class SpanConfig:
    join_window_s: float = 30.0  # a REQUEST with no RESPONSE after this ends, marked
    l3l4_spans: bool = False  # optional per-flow L3/L4 spans, off by default
    cluster_name: str = ""
    redact: RedactConfig = field(default_factory=RedactConfig)
    limits: AttributeLimits = field(default_factory=AttributeLimits)
    # Bound on unjoined requests; beyond it the oldest are expired early (counted). A waiting request holds
    # its decoded flow, about 6 KB: 20 000 of them are ~120 MB at worst.
    max_pending: int = 20_000

    def validate(self) -> None:
        problems = []
        if not self.join_window_s > 0:
            problems.append(f"spans.join_window_s: must be positive, got {self.join_window_s}")
        if self.max_pending < 1:
            problems.append(f"spans.max_pending: must be at least 1, got {self.max_pending}")
        validate_parts((self.redact, self.limits), problems)
        if problems:
            raise ConfigError("; ".join(problems))


class SpanMapper:
    """Joins L7 flows into spans. Not thread-safe: one mapper per mapping thread.

    `rng` makes random ids reproducible in tests; ids derived from flow uuids
    do not use it.
    """

    def __init__(self, config: SpanConfig, *, rng: random.Random | None = None) -> None:
        self.config = config
        self._window_ns = int(config.join_window_s * 1e9)
        self._leap_ns = max(self._window_ns, _LEAP_NS)
        self._leap_candidate_ns = 0  # a flow time far ahead of the watermark, waiting for a second
        self._ids = IdGenerator(rng if rng is not None else random.Random())
        self._table = JoinTable()
        self.unanswered = 0  # spans for requests that never got a response (includes evicted)
        self.evicted = 0  # of those, ended early because max_pending was reached
        self.watermark_ns = 0  # latest flow time seen: the stream's clock
        self.limit_counts = LimitCounts()  # attribute values, lists and keys cut by AttributeLimits
        self._headers = HeaderScanner(config.redact, WANTED_HEADERS)
        self._urls = UrlParts(config.redact)

    @property
    def pending(self) -> int:
        return len(self._table)

    def process(self, response: observer_pb2.GetFlowsResponse) -> list[SpanRecord]:
        # A response without a flow reads as an empty Flow (UNKNOWN_TYPE, no l7 or l4): no span.
        return self.process_flow(response.flow, response)

    def process_flow(self, flow: flow_pb2.Flow, response: observer_pb2.GetFlowsResponse) -> list[SpanRecord]:
        """`process` for a caller that has read `flow = response.flow` already (each read costs)."""
        # Most flows are L3/L4: one field read decides that they make nothing.
        flow_type = flow.Type
        if flow_type != _L7:
            if flow_type == _L3_L4:
                return [self._l3l4_span(response, flow)] if self.config.l3l4_spans else []
            # Field-masked exporter output may lack Type: then l7 / l4 tell what the flow is.
            if flow_type != _UNKNOWN_TYPE or not flow.HasField("l7"):
                if flow_type == _UNKNOWN_TYPE and self.config.l3l4_spans and flow.HasField("l4"):
                    return [self._l3l4_span(response, flow)]
                return []
        l7 = flow.l7
        l7_type = l7.type
        if l7_type != _RESPONSE and l7_type != _REQUEST:
            return []  # SAMPLE: no exchange to time
        ts = flow.time if flow.HasField("time") else response.time
        time_ns = ts.seconds * 1_000_000_000 + ts.nanos
        if time_ns > self.watermark_ns:
            self._advance(time_ns)
        node = flow.node_name or response.node_name
        out: list[SpanRecord] = []
        if l7_type == _RESPONSE:
            out.append(self._response(flow, l7, node, time_ns))
        else:
            self._request(flow, l7, node, time_ns, out)
        oldest = self._table.oldest()
        if oldest is not None and oldest.time_ns <= self.watermark_ns - self._window_ns:
            self._expire_until(self.watermark_ns - self._window_ns, self.watermark_ns, out)
        return out

    def expire(self, now_ns: int) -> list[SpanRecord]:
        """End requests older than the window at `now_ns` (stream time), as unanswered spans.

        Requests are checked in arrival order, so one that arrived late (an older
        time behind a newer one) waits for its predecessors, at most one window.
        """
        out: list[SpanRecord] = []
        self._expire_until(now_ns - self._window_ns, now_ns, out)
        return out

    def drain(self) -> list[SpanRecord]:
        """End every pending request (shutdown)."""
        out: list[SpanRecord] = []
        for request in self._table:
            self._table.remove(request)
            out.append(self._unanswered_span(request, self.watermark_ns))
        return out

    def _advance(self, time_ns: int) -> None:
        if self.watermark_ns and time_ns - self.watermark_ns <= self._leap_ns:
            self.watermark_ns = time_ns
            return
        candidate = self._leap_candidate_ns
        if candidate and abs(time_ns - candidate) <= self._leap_ns:
            self.watermark_ns = time_ns
            self._leap_candidate_ns = 0
        else:
            self._leap_candidate_ns = time_ns

    def _request(
        self, flow: flow_pb2.Flow, l7: flow_pb2.Layer7, node: str, time_ns: int, out: list[SpanRecord]
    ) -> None:
        # A request only files itself: its attributes are read from the response when it comes,
        # or from its own flow (kept in the table) when it expires unanswered.
        record = l7.WhichOneof("record")
        direction = flow.traffic_direction
        found = _NO_FOUND
        if record == "http":
            http = l7.http
            found = self._headers.wanted(http.headers)
            request_id = found.get(X_REQUEST_ID)
            if request_id:
                join_key: JoinKey = ("x", request_id, node, direction)
            else:
                join_key = connection_key(read_net(flow), node, False, http.method, http.url)
            kind = _SERVER if direction == _INGRESS else _CLIENT
        elif record == "dns":
            dns = l7.dns
            qtypes = dns.qtypes
            join_key = connection_key(read_net(flow), node, False, dns.query, qtypes[0] if qtypes else "")
            kind = _SERVER if direction == _INGRESS else _CLIENT
        else:
            join_key = connection_key(read_net(flow), node, False)
            kind = span_kind(direction, record, getattr(l7, record) if record is not None else None)
        request = self._new_request(flow, node, time_ns, kind, found, join_key, False)
        table = self._table
        if len(table) >= self.config.max_pending:
            oldest = table.oldest()
            if oldest is not None:
                table.remove(oldest)
                self.evicted += 1
                out.append(self._unanswered_span(oldest, self.watermark_ns))
        table.add(request)

    def _response(self, flow: flow_pb2.Flow, l7: flow_pb2.Layer7, node: str, time_ns: int) -> SpanRecord:
        record = l7.WhichOneof("record")
        net = read_net(flow)
        direction = net[0]
        take = self._table.take
        found = _NO_FOUND
        headers = None
        # Each kind reads its fields once, for the join and then the attributes. The connection key
        # is narrowed by what the response repeats, so that parallel queries on one socket (A and
        # AAAA) or multiplexed HTTP/2 streams do not pair up by arrival order alone.
        if record == "http":
            http = l7.http
            headers, found = self._headers.scan(http.headers)
            method, url = http.method, http.url
            request_id = found.get(X_REQUEST_ID)
            request = take(("x", request_id, node, direction)) if request_id else None
            if request is None:
                request = take(connection_key(net, node, True, method, url))
            request, request_ns = self._answered(request, flow, node, time_ns, record, http, found)
            head = http_fields(http, method, url, True, request.kind, self._urls, found.get(USER_AGENT))
        elif record == "dns":
            dns = l7.dns
            query, qtypes = dns.query, dns.qtypes[:]  # a list copy; cheaper than list() on a repeated field
            request = take(connection_key(net, node, True, query, qtypes[0] if qtypes else ""))
            request, request_ns = self._answered(request, flow, node, time_ns, record, dns, found)
            head = dns_fields(dns, query, qtypes, True)
        elif record == "kafka":
            kafka = l7.kafka
            request = take(connection_key(net, node, True))
            request, request_ns = self._answered(request, flow, node, time_ns, record, kafka, found)
            head = kafka_fields(kafka, kafka.api_key)
        else:
            request = take(connection_key(net, node, True))
            request, request_ns = self._answered(request, flow, node, time_ns, record, None, found)
            head = ("L7", {}, _UNSET, "")
        # A response runs server -> client: its source is the server.
        server, client = flow.source, flow.destination
        kind = request.kind
        fields = exchange_fields(flow, net, True, kind, node, client.identity, server.identity, head)
        if headers:
            fields[1].update(headers)
        if request.flow is not flow and request.flow.verdict == _DROPPED:
            fields[1][sc.HUBBLE_VERDICT] = "DROPPED"
            fields = (fields[0], fields[1], StatusCode.ERROR, "request dropped by Cilium")
        latency = l7.latency_ns
        endpoint = server if kind == _SERVER else client
        return self._record(request, endpoint, fields, time_ns - latency if latency else request_ns, time_ns)

    def _answered(
        self,
        request: PendingRequest | None,
        flow: flow_pb2.Flow,
        node: str,
        time_ns: int,
        record: str | None,
        body: L7Body,
        found: dict[str, str],
    ) -> tuple[PendingRequest, int]:
        """The request a response answers and the exchange's start, standing in for a lone response."""
        if request is None:
            kind = span_kind(flow.traffic_direction, record, body)
            return self._new_request(flow, node, time_ns, kind, found, (), True), time_ns
        if request.kind == _SERVER and not request.linked:
            self._table.link_client(request)  # the client REQUEST may have reached us after the server's
        return request, min(request.time_ns, time_ns)

    def _new_request(
        self,
        flow: flow_pb2.Flow,
        node: str,
        time_ns: int,
        kind: SpanKind,
        found: dict[str, str],
        join_key: JoinKey,
        reply: bool,
    ) -> PendingRequest:
        """The pending request for `flow` (the RESPONSE itself when `reply`: a lone response)."""
        new_trace, span_id = self._ids.new_ids(flow.uuid)
        exchange = header_correlation_key(found)
        request = PendingRequest(flow, node, time_ns, kind, new_trace, span_id, b"", "", join_key, exchange)
        table = self._table
        # A server span linked to its client's takes the client's context: its own is not read.
        if exchange is not None and kind == _SERVER and table.link_client(request):
            return request
        trace_id, request.parent_span_id, request.trace_state = incoming_context(flow, found)
        if trace_id:
            request.trace_id = trace_id
            if exchange is None:
                server_identity = flow.source.identity if reply else flow.destination.identity
                request.exchange_key = trace_correlation_key(trace_id, server_identity)
                if kind == _SERVER:
                    table.link_client(request)
        return request

    def _unanswered_span(self, request: PendingRequest, clock_ns: int) -> SpanRecord:
        flow = request.flow
        l7 = flow.l7
        record = l7.WhichOneof("record")
        kind = request.kind
        headers = None
        if record == "http":
            http = l7.http
            headers, found = self._headers.scan(http.headers)
            head = http_fields(http, http.method, http.url, False, kind, self._urls, found.get(USER_AGENT))
        elif record == "dns":
            dns = l7.dns
            head = dns_fields(dns, dns.query, dns.qtypes[:], False)
        elif record == "kafka":
            kafka = l7.kafka
            head = kafka_fields(kafka, kafka.api_key)
        else:
            head = ("L7", {}, _UNSET, "")
        client, server = flow.source, flow.destination
        fields = exchange_fields(
            flow, read_net(flow), False, kind, request.node, client.identity, server.identity, head
        )
        if headers:
            fields[1].update(headers)
        fields[1][sc.HUBBLE_L7_UNANSWERED] = True
        self.unanswered += 1
        start_ns = request.time_ns
        end_ns = max(start_ns, min(start_ns + self._window_ns, clock_ns))
        endpoint = server if kind == _SERVER else client
        return self._record(request, endpoint, fields, start_ns, end_ns)

    def _l3l4_span(self, response: observer_pb2.GetFlowsResponse, flow: flow_pb2.Flow) -> SpanRecord:
        node = flow.node_name or response.node_name
        time_ns = timestamp_ns(flow.time) if flow.HasField("time") else timestamp_ns(response.time)
        trace_id, _, _ = incoming_context(flow, {})
        new_trace, span_id = self._ids.new_ids(flow.uuid)
        request = PendingRequest(
            flow, node, time_ns, SpanKind.INTERNAL, trace_id or new_trace, span_id, b"", "", (), None
        )
        endpoint = flow.destination if flow.traffic_direction == flow_pb2.INGRESS else flow.source
        return self._record(request, endpoint, l3l4_fields(flow, node), time_ns, time_ns)

    def _record(
        self, request: PendingRequest, endpoint: flow_pb2.Endpoint, fields: Fields, start_ns: int, end_ns: int
    ) -> SpanRecord:
        config = self.config
        limits = config.limits
        max_length = limits.max_value_length
        name, attrs, status, message = fields
        if len(name) > max_length or not name.isascii():  # DNS qtype, Kafka topic: from the wire
            name = limit_str(name, max_length)
        # Hostile times or latencies may leave fixed64; clamping keeps start <= end.
        if not 0 <= start_ns <= UINT64_MAX:
            start_ns = 0 if start_ns < 0 else UINT64_MAX
        if not 0 <= end_ns <= UINT64_MAX:
            end_ns = 0 if end_ns < 0 else UINT64_MAX
        return SpanRecord(
            endpoint_resource(endpoint, request.node, config.cluster_name, max_length),
            request.trace_id,
            request.span_id,
            request.parent_span_id,
            name,
            request.kind,
            start_ns,
            end_ns,
            apply_limits(attrs, limits, self.limit_counts),
            status,
            message,
            request.trace_state,
        )

    def _expire_until(self, cutoff_ns: int, clock_ns: int, out: list[SpanRecord]) -> None:
        pop_expired = self._table.pop_expired
        while (oldest := pop_expired(cutoff_ns)) is not None:
            out.append(self._unanswered_span(oldest, clock_ns))
