"""http.server.request.duration and http.client.request.duration from L7 HTTP responses.

The OpenTelemetry semantic-convention pair, next to Hubble's own histogram: a
RESPONSE flow observed at the server (traffic_direction INGRESS) is a server
request, one observed at the client (EGRESS) a client request; flows without a
direction or a latency are not measured. A response flow runs server -> client,
so the server is the flow's source. Each bucket keeps its latest exemplar
carrying the flow's trace id.
"""

from __future__ import annotations

from hubble_bridge.api import flow_pb2
from hubble_bridge.mapping import semconv
from hubble_bridge.mapping.metrics.facts import FlowFacts, time_ns, trace_id
from hubble_bridge.mapping.metrics.names import EGRESS, INGRESS, L7_RESPONSE
from hubble_bridge.mapping.metrics.series import Histogram, Series

# Semantic-convention explicit bucket boundaries for HTTP request durations, in seconds.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
# RFC 9110 methods, PATCH and QUERY: the semantic conventions' default "known" methods.
KNOWN_METHODS = frozenset(
    {"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "QUERY", "TRACE"}
)

_SCHEMES = frozenset({"http", "https"})
_COMMON = (
    semconv.HTTP_REQUEST_METHOD,
    semconv.HTTP_RESPONSE_STATUS_CODE,
    semconv.NETWORK_PROTOCOL_NAME,
    semconv.NETWORK_PROTOCOL_VERSION,
    semconv.SERVER_ADDRESS,
)
SERVER_LABELS = (*_COMMON, semconv.URL_SCHEME, semconv.ERROR_TYPE)
CLIENT_LABELS = (*_COMMON, semconv.SERVER_PORT, semconv.ERROR_TYPE)


def protocol_version(protocol: str) -> str:
    """ "HTTP/1.1" -> "1.1", "HTTP/2.0" -> "2"; "" when the protocol is not HTTP/<version>."""
    name, _, version = protocol.partition("/")
    if name.upper() != "HTTP" or not version:
        return ""
    major, _, minor = version.partition(".")
    # HTTP/2 and later have no minor version; semconv writes "2", not "2.0".
    return major if major.isdigit() and int(major) >= 2 and minor in ("", "0") else version


class HttpDurations:
    def __init__(self, limit: int) -> None:
        self.server = Histogram(
            "http.server.request.duration",
            "Duration of HTTP server requests.",
            SERVER_LABELS,
            limit,
            BUCKETS,
            omit_empty=True,
        )
        self.client = Histogram(
            "http.client.request.duration",
            "Duration of HTTP client requests.",
            CLIENT_LABELS,
            limit,
            BUCKETS,
            omit_empty=True,
        )
        self._versions: dict[str, str] = {}

    def process(self, facts: FlowFacts) -> None:
        if facts.l7_kind != "http":
            return
        direction = facts.direction
        if direction != INGRESS and direction != EGRESS:
            return
        flow = facts.flow
        l7 = flow.l7
        latency_ns = l7.latency_ns
        if l7.type != L7_RESPONSE or not latency_ns:
            return
        http = l7.http
        method = http.method if http.method in KNOWN_METHODS else "_OTHER"
        code = http.code
        status = str(code) if code else ""  # error.type is the code as text

        version = self._versions.get(http.protocol)
        if version is None:
            version = protocol_version(http.protocol)
            if len(self._versions) < 64:  # a handful in practice; never let odd input grow it
                self._versions[http.protocol] = version
        server = _server_address(flow)
        if direction == INGRESS:
            error = status if code >= 500 else ""
            scheme = http.url.partition("://")[0].lower()
            # http.response.status_code and server.port are ints in the conventions (0 = absent, omitted)
            key = (method, code, "http", version, server, scheme if scheme in _SCHEMES else "", error)
            histogram = self.server
        else:
            error = status if code >= 400 else ""
            port = _source_port(flow, facts.l4_kind)
            key = (method, code, "http", version, server, port, error)
            histogram = self.client
        tid = trace_id(flow)
        histogram.observe(key, latency_ns / 1e9, tid, time_ns(flow) if tid else 0)

    def series(self) -> list[Series]:
        return [self.server, self.client]


def _server_address(flow: flow_pb2.Flow) -> str:
    """Service name, else workload, else pod; semconv's fallbacks then: a DNS name, else the IP."""
    source = flow.source
    if flow.source_service.name:
        return flow.source_service.name
    if source.workloads:
        return source.workloads[0].name
    if source.pod_name:
        return source.pod_name
    if flow.source_names:
        return flow.source_names[0]
    return flow.IP.source


def _source_port(flow: flow_pb2.Flow, l4_kind: str | None) -> int:
    if l4_kind not in ("TCP", "UDP", "SCTP"):
        return 0
    return int(getattr(flow.l4, l4_kind).source_port)
