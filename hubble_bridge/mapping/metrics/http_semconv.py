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
from hubble_bridge.mapping.metrics.facts import HTTP, L4, FlowFacts, Handler
from hubble_bridge.mapping.metrics.names import EGRESS, INGRESS, L7_RESPONSE
from hubble_bridge.mapping.metrics.series import Histogram, Series

# Semantic-convention explicit bucket boundaries for HTTP request durations, in seconds.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
# RFC 9110 methods, PATCH and QUERY: the semantic conventions' default "known" methods.
KNOWN_METHODS = frozenset(
    {"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "QUERY", "TRACE"}
)

_SCHEMES = frozenset({"http", "https"})
_PORTED = frozenset({"TCP", "UDP", "SCTP"})
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
    reads = frozenset({L4, HTTP})

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

    def handler(self, kind: FlowFacts) -> Handler | None:
        direction = kind.direction
        if kind.l7_kind != "http" or kind.l7_type != L7_RESPONSE:
            return None
        if direction != INGRESS and direction != EGRESS:
            return None
        ported = kind.l4_kind in _PORTED
        versions = self._versions
        server_side = direction == INGRESS
        observe = self.server.observe if server_side else self.client.observe

        def count(facts: FlowFacts) -> None:
            latency_ns = facts.latency_ns
            if not latency_ns:
                return
            method = facts.http_method
            if method not in KNOWN_METHODS:
                method = "_OTHER"
            code = facts.http_code
            status = str(code) if code else ""  # error.type is the code as text
            protocol = facts.http_protocol
            version = versions.get(protocol)
            if version is None:
                version = protocol_version(protocol)
                if len(versions) < 64:  # a handful in practice; never let odd input grow it
                    versions[protocol] = version
            flow = facts.flow
            server = _server_address(flow)
            # http.response.status_code and server.port are ints in the conventions (0 = absent, omitted)
            if server_side:
                error = status if code >= 500 else ""
                scheme = facts.http.url.partition("://")[0].lower()
                key = (method, code, "http", version, server, scheme if scheme in _SCHEMES else "", error)
            else:
                error = status if code >= 400 else ""
                port = facts.l4.source_port if ported else 0
                key = (method, code, "http", version, server, port, error)
            observe(key, latency_ns / 1e9, *facts.exemplar())

        return count

    def process(self, facts: FlowFacts) -> None:
        handler = self.handler(facts)
        if handler is not None:
            handler(facts)

    def series(self) -> list[Series]:
        return [self.server, self.client]


def _server_address(flow: flow_pb2.Flow) -> str:
    """Service name, else workload, else pod; semconv's fallbacks then: a DNS name, else the IP."""
    service = flow.source_service.name
    if service:
        return service
    source = flow.source
    if source.workloads:
        return source.workloads[0].name
    if source.pod_name:
        return source.pod_name
    if flow.source_names:
        return flow.source_names[0]
    return flow.IP.source
