"""Name, status and attributes of the span for one L7 exchange (HTTP, DNS, Kafka).

Built from the RESPONSE flow (source and destination swapped: the server is the
source) or, for a request that never got an answer, from the REQUEST flow.
"Client" and "server" below are the request's source and destination.

| attribute | value | when |
|---|---|---|
| http.request.method | GET, POST... or `_OTHER` for a non-standard method | HTTP |
| http.request.method_original | the method as sent, when it is not standard | HTTP |
| http.response.status_code | l7.http.code (int) | HTTP response |
| url.full | l7.http.url, userinfo and query values redacted | HTTP, absolute URL |
| url.scheme, url.path, url.query | parts of the redacted URL | HTTP |
| user_agent.original | the User-Agent header | HTTP |
| http.request.header.<name> | string[]; only `redact.keep_headers`, sensitive ones "REDACTED" | HTTP |
| dns.question.name | l7.dns.query without the trailing dot | DNS |
| dns.answers | l7.dns.ips (string[]) | DNS response |
| hubble.dns.qtypes, .rrtypes, .cnames | string[] as Hubble reports them | DNS |
| hubble.dns.rcode, hubble.dns.ttl | int | DNS response |
| hubble.dns.observation_source | e.g. "proxy" | DNS |
| messaging.system | "kafka" | Kafka |
| messaging.operation.name | l7.kafka.api_key ("produce", "fetch"...) | Kafka |
| messaging.operation.type | "send" (produce) / "receive" (fetch) | Kafka |
| messaging.destination.name | l7.kafka.topic | Kafka |
| hubble.kafka.api_version, .correlation_id, .error_code | int | Kafka |
| network.protocol.name, .version | "http" + "1.1"/"2", "dns", "kafka" | all |
| network.transport, network.type | "tcp"/"udp"/"sctp", "ipv4"/"ipv6" | all |
| server.address, server.port | server's service name, else its DNS name, else IP; port | all |
| client.address, client.port | client IP and port | all |
| network.peer.address, .port | the other end: server for CLIENT spans, client for SERVER spans | all |
| error.type | HTTP status code, DNS rcode name (NXDOMAIN), Kafka error code | on error |
| hubble.verdict | FORWARDED, DROPPED... (DROPPED if the request was) | all |
| hubble.traffic_direction | INGRESS / EGRESS | all |
| hubble.node.name | node that observed the exchange | all |
| hubble.source.identity, hubble.destination.identity | client / server security identity | all |
| hubble.policy.names | ["ns/name", ...] from *_allowed_by / *_denied_by | when present |
| hubble.flow.uuid | uuid of the response flow (of the request if unanswered) | Cilium >= 1.14 |
| hubble.l7.unanswered | true when no response came within the join window | unanswered |

Names: HTTP "{method}" ("HTTP" for `_OTHER`), as the HTTP conventions ask when no
route is known; DNS "DNS {first qtype}" (low cardinality: the query name is an
attribute, not part of the name); Kafka "{operation} {topic}" as the messaging
conventions ask. Status ERROR: HTTP >= 500 on SERVER spans, >= 400 on CLIENT spans;
DNS rcode != 0; Kafka error_code != 0; and a request Hubble reports as DROPPED.
"""

from __future__ import annotations

from hubble_bridge.api import flow_pb2
from hubble_bridge.mapping import semconv as sc
from hubble_bridge.mapping.metrics.http_semconv import KNOWN_METHODS, protocol_version
from hubble_bridge.mapping.metrics.names import TRAFFIC_DIRECTION, VERDICT
from hubble_bridge.mapping.redact import RedactConfig, redact_url
from hubble_bridge.telemetry import Attributes, SpanKind, StatusCode

Fields = tuple[str, Attributes, StatusCode, str]
# The l7 oneof's message, read once per flow and passed on: each read of a sub-message costs.
L7Body = flow_pb2.HTTP | flow_pb2.DNS | flow_pb2.Kafka | None
# What the join and the network attributes both need, read from the flow once:
# (traffic direction, L4 oneof arm, IP version, source IP, source port, destination IP, destination port).
Net = tuple[int, str | None, int, str, int, str, int]

DNS_RCODE_MNEMONIC = {
    0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED", 6: "YXDOMAIN",
    7: "YXRRSET", 8: "NXRRSET", 9: "NOTAUTH", 10: "NOTZONE", 11: "DSOTYPENI", 16: "BADVERS", 17: "BADKEY",
    18: "BADTIME", 19: "BADMODE", 20: "BADNAME", 21: "BADALG", 22: "BADTRUNC", 23: "BADCOOKIE",
}  # fmt: skip
_KAFKA_OPERATION_TYPE = {"produce": "send", "fetch": "receive"}
_TRANSPORTS = {"TCP": "tcp", "UDP": "udp", "SCTP": "sctp"}
_NETWORK_TYPE = {flow_pb2.IPv4: "ipv4", flow_pb2.IPv6: "ipv6"}
_INGRESS = flow_pb2.INGRESS
_DROPPED = flow_pb2.DROPPED
_SERVER = SpanKind.SERVER
_UNSET = StatusCode.UNSET
_ERROR = StatusCode.ERROR
# Protocol strings are a handful per cluster; bounded so that hostile input cannot grow it.
_VERSIONS: dict[str, str] = {}
_VERSIONS_MAX = 64


def span_kind(direction: int, record: str | None, body: L7Body) -> SpanKind:
    """SERVER when observed at the server's proxy (INGRESS), else the client's view."""
    if direction == _INGRESS:
        return SpanKind.SERVER
    if record == "kafka" and body.api_key == "produce":  # type: ignore[union-attr]
        return SpanKind.PRODUCER
    return SpanKind.CLIENT


def read_net(flow: flow_pb2.Flow) -> Net:
    ip = flow.IP
    l4 = flow.l4
    arm = l4.WhichOneof("protocol")
    if arm in _TRANSPORTS:
        ports = getattr(l4, arm)
        return (
            flow.traffic_direction, arm, ip.ipVersion,
            ip.source, ports.source_port, ip.destination, ports.destination_port,
        )  # fmt: skip
    return flow.traffic_direction, arm, ip.ipVersion, ip.source, 0, ip.destination, 0


def http_fields(
    http: flow_pb2.HTTP,
    method: str,
    url: str,
    reply: bool,
    kind: SpanKind,
    urls: UrlParts,
    agent: str | None,
) -> tuple[str, Attributes, StatusCode, str]:
    """The HTTP head of the attributes; `method` and `url` are read by the caller for the join."""
    if method in KNOWN_METHODS:
        attrs: Attributes = {sc.HTTP_REQUEST_METHOD: method}
        name = method
    elif method:
        attrs = {sc.HTTP_REQUEST_METHOD: "_OTHER", sc.HTTP_REQUEST_METHOD_ORIGINAL: method}
        name = "HTTP"
    else:
        attrs = {sc.HTTP_REQUEST_METHOD: "_OTHER"}
        name = "HTTP"
    code = http.code if reply else 0
    if code:
        attrs[sc.HTTP_RESPONSE_STATUS_CODE] = code
    if url:
        attrs.update(urls.attributes(url))
    attrs[sc.NETWORK_PROTOCOL_NAME] = "http"
    protocol = http.protocol
    version = _VERSIONS.get(protocol)
    if version is None:
        version = protocol_version(protocol)
        if len(_VERSIONS) < _VERSIONS_MAX:
            _VERSIONS[protocol] = version
    if version:
        attrs[sc.NETWORK_PROTOCOL_VERSION] = version
    if agent:
        attrs[sc.USER_AGENT_ORIGINAL] = agent
    if code >= (500 if kind == _SERVER else 400):
        attrs[sc.ERROR_TYPE] = str(code)
        return name, attrs, _ERROR, f"HTTP status {code}"
    return name, attrs, _UNSET, ""


def dns_fields(
    dns: flow_pb2.DNS, query: str, qtypes: list[str], reply: bool
) -> tuple[str, Attributes, StatusCode, str]:
    """The DNS head of the attributes; `query` and `qtypes` are read by the caller for the join."""
    attrs: Attributes = {}
    if query:
        attrs[sc.DNS_QUESTION_NAME] = query[:-1] if query.endswith(".") else query
    attrs[sc.NETWORK_PROTOCOL_NAME] = "dns"
    if qtypes:
        attrs[sc.HUBBLE_DNS_QTYPES] = qtypes
        name = f"DNS {qtypes[0]}"
    else:
        name = "DNS"
    source = dns.observation_source
    if source:
        attrs[sc.HUBBLE_DNS_OBSERVATION_SOURCE] = source
    if not reply:
        return name, attrs, _UNSET, ""
    rcode = dns.rcode
    attrs[sc.HUBBLE_DNS_RCODE] = rcode
    values = dns.ips
    if values:
        attrs[sc.DNS_ANSWERS] = values[:]
    values = dns.cnames
    if values:
        attrs[sc.HUBBLE_DNS_CNAMES] = values[:]
    values = dns.rrtypes
    if values:
        attrs[sc.HUBBLE_DNS_RRTYPES] = values[:]
    ttl = dns.ttl
    if ttl:
        attrs[sc.HUBBLE_DNS_TTL] = ttl
    if rcode:
        error = DNS_RCODE_MNEMONIC.get(rcode) or str(rcode)
        attrs[sc.ERROR_TYPE] = error
        return name, attrs, _ERROR, f"DNS rcode {error}"
    return name, attrs, _UNSET, ""


def kafka_fields(kafka: flow_pb2.Kafka, operation: str) -> tuple[str, Attributes, StatusCode, str]:
    """The Kafka head of the attributes; `operation` (api_key) is read by the caller for the kind."""
    topic = kafka.topic
    attrs: Attributes = {sc.MESSAGING_SYSTEM: "kafka", sc.NETWORK_PROTOCOL_NAME: "kafka"}
    if operation:
        attrs[sc.MESSAGING_OPERATION_NAME] = operation
        operation_type = _KAFKA_OPERATION_TYPE.get(operation)
        if operation_type:
            attrs[sc.MESSAGING_OPERATION_TYPE] = operation_type
    if topic:
        attrs[sc.MESSAGING_DESTINATION_NAME] = topic
    attrs[sc.HUBBLE_KAFKA_API_VERSION] = kafka.api_version
    attrs[sc.HUBBLE_KAFKA_CORRELATION_ID] = kafka.correlation_id
    error_code = kafka.error_code
    attrs[sc.MESSAGING_KAFKA_ERROR_CODE] = error_code
    name = f"{operation} {topic}" if operation and topic else operation or topic or "kafka"
    if error_code:
        attrs[sc.ERROR_TYPE] = str(error_code)
        return name, attrs, _ERROR, f"Kafka error code {error_code}"
    return name, attrs, _UNSET, ""


def exchange_fields(
    flow: flow_pb2.Flow,
    net: Net,
    reply: bool,
    kind: SpanKind,
    node: str,
    client_identity: int,
    server_identity: int,
    head: tuple[str, Attributes, StatusCode, str],
) -> Fields:
    """`head` (name, protocol attributes, status) completed with the network and Hubble attributes,
    which every L7 kind shares; `reply` says `flow` is the RESPONSE."""
    name, attrs, status, message = head
    direction, arm, ip_version, source_ip, source_port, destination_ip, destination_port = net
    if reply:  # the RESPONSE runs server -> client
        server_ip, server_port = source_ip, source_port
        client_ip, client_port = destination_ip, destination_port
    else:
        client_ip, client_port = source_ip, source_port
        server_ip, server_port = destination_ip, destination_port
    transport = _TRANSPORTS.get(arm)  # type: ignore[arg-type]
    if transport:
        attrs[sc.NETWORK_TRANSPORT] = transport
    network_type = _NETWORK_TYPE.get(ip_version)
    if network_type:
        attrs[sc.NETWORK_TYPE] = network_type
    # The service, else the first DNS name, else the IP; read lazily, each costs a message access.
    server_address = flow.source_service.name if reply else flow.destination_service.name
    if not server_address:
        names = flow.source_names if reply else flow.destination_names
        server_address = (names[0].rstrip(".") if names else "") or server_ip
    if server_address:
        attrs[sc.SERVER_ADDRESS] = server_address
    if server_port:
        attrs[sc.SERVER_PORT] = server_port
    if client_ip:
        attrs[sc.CLIENT_ADDRESS] = client_ip
    if client_port:
        attrs[sc.CLIENT_PORT] = client_port
    peer_ip, peer_port = (client_ip, client_port) if kind == _SERVER else (server_ip, server_port)
    if peer_ip:
        attrs[sc.NETWORK_PEER_ADDRESS] = peer_ip
    if peer_port:
        attrs[sc.NETWORK_PEER_PORT] = peer_port
    verdict = flow.verdict
    attrs[sc.HUBBLE_VERDICT] = VERDICT.get(verdict) or str(verdict)
    if verdict == _DROPPED and status != _ERROR:
        status, message = _ERROR, "request dropped by Cilium"
    hubble_attributes(flow, direction, node, client_identity, server_identity, attrs)
    return name, attrs, status, message


def hubble_attributes(
    flow: flow_pb2.Flow,
    direction: int,
    node: str,
    client_identity: int,
    server_identity: int,
    attrs: Attributes,
) -> None:
    """Hubble facts; source/destination in the request's direction."""
    if direction:
        attrs[sc.HUBBLE_TRAFFIC_DIRECTION] = TRAFFIC_DIRECTION.get(direction) or str(direction)
    if node:
        attrs[sc.HUBBLE_NODE_NAME] = node
    if client_identity:
        attrs[sc.HUBBLE_SOURCE_IDENTITY] = client_identity
    if server_identity:
        attrs[sc.HUBBLE_DESTINATION_IDENTITY] = server_identity
    policies = policy_names(flow)
    if policies:
        attrs[sc.HUBBLE_POLICY_NAMES] = policies
    uuid = flow.uuid
    if uuid:
        attrs[sc.HUBBLE_FLOW_UUID] = uuid


def policy_names(flow: flow_pb2.Flow) -> list[str]:
    names: list[str] = []
    for policies in (
        flow.ingress_allowed_by,
        flow.egress_allowed_by,
        flow.ingress_denied_by,
        flow.egress_denied_by,
    ):
        if policies:
            for policy in policies:
                names.append(f"{policy.namespace}/{policy.name}" if policy.namespace else policy.name)
    return names


def split_url(url: str) -> tuple[str, str, str]:
    """(scheme, path, query) of a URL or of an origin-form target ("/path?q")."""
    if url[0] == "/" and "#" not in url:  # origin form, the usual case: no scheme to look for
        path, _, query = url.partition("?")
        return "", path, query
    scheme, sep, rest = url.partition("://")
    if sep and scheme and "/" not in scheme and "?" not in scheme:
        end = len(rest)
        for char in "/?#":
            i = rest.find(char)
            if 0 <= i < end:
                end = i
        target = rest[end:]
    else:
        scheme, target = "", url
    path, _, query = target.partition("#")[0].partition("?")
    return scheme, path, query


class UrlParts:
    """url.full / url.scheme / url.path / url.query of a URL, redacted; remembered per URL.

    Paths repeat (routes, health checks, scrapes), and redacting and splitting them costs
    more than a lookup. Bounded: emptied when full, and long URLs (rarely repeated) are not
    kept, so hostile input holds at most a few MB here.
    """

    MAX_URLS = 1024
    MAX_URL_LENGTH = 2048

    def __init__(self, redact: RedactConfig) -> None:
        self._redact = redact
        self._cache: dict[str, dict[str, str]] = {}

    def attributes(self, url: str) -> dict[str, str]:
        """Do not modify the result: it is shared."""
        attrs = self._cache.get(url)
        if attrs is None:
            attrs = {}
            redacted = redact_url(url, self._redact)
            scheme, path, query = split_url(redacted)
            if scheme:
                attrs[sc.URL_FULL] = redacted
                attrs[sc.URL_SCHEME] = scheme
            if path:
                attrs[sc.URL_PATH] = path
            if query:
                attrs[sc.URL_QUERY] = query
            if len(url) <= self.MAX_URL_LENGTH:
                if len(self._cache) >= self.MAX_URLS:
                    self._cache.clear()
                self._cache[url] = attrs
        return attrs
