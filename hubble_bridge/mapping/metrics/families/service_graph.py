"""`service-graph`: the edges Grafana's service graph draws, from flows instead of traces.

The series are those of Tempo's metrics-generator (modules/generator/processor/servicegraphs,
servicegraphs.go) and the Collector's servicegraph connector (connector/servicegraphconnector,
connector.go): `traces_service_graph_request_total`, `..._request_failed_total` and the histograms
`traces_service_graph_request_server` / `..._client` in seconds (`..._seconds` in Prometheus), each
with `client`, `server` and `connection_type`, plus `client_<dim>` / `server_<dim>` for the
dimensions asked for (the connector's form). docs/telemetry.md describes every field.

One request is one exchange, however many flows show it:
- L7 (HTTP, gRPC, Kafka, DNS): a response, or a request the proxy refused (which then answers
  itself: that answer is not a second request). Client and server proxies both report an exchange;
  matching them on (client IP, server IP, server port, what was asked, trace id) counts it once.
- TCP: the opening SYN (no ACK, not a reply), wherever it was traced; failed when any sighting of
  it was dropped or refused, or a reset answered it before any SYN-ACK did.
- UDP and SCTP: a conversation (5-tuple) once per `window` seconds of flow time.
Each sighting observes the latency its side measured: the server's proxy into `server`, the
client's proxy or the sidecar's connect latency into `client`. A response record without
latency_ns takes the time since its request record.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hubble_bridge.api import flow_pb2, sidecar_pb2
from hubble_bridge.mapping.metrics.base import Family
from hubble_bridge.mapping.metrics.facts import EXTENSIONS, IS_REPLY, L4, FlowFacts, Handler, time_ns
from hubble_bridge.mapping.metrics.names import (
    DROPPED,
    EGRESS,
    EVENT_ACCESS_LOG,
    INGRESS,
    L7_REQUEST,
    L7_RESPONSE,
    REDIRECTED,
    WORLD_LABELS,
)
from hubble_bridge.mapping.metrics.options import ContextOptions
from hubble_bridge.mapping.metrics.series import Counter, Histogram, Series
from hubble_bridge.mapping.resource import workload_name

FAMILY = "service-graph"
# The connector's default latency buckets in seconds (connector.go, defaultLatencyHistogramBuckets).
# Tempo's default is prometheus.ExponentialBuckets(0.1, 2, 8); the connector's start at 2 ms, which
# connection set-up and in-cluster requests need.
SERVICE_GRAPH_BUCKETS = (
    0.002, 0.004, 0.006, 0.008, 0.01, 0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.4, 2.0, 5.0, 10.0, 15.0,
)  # fmt: skip
# connection_type values (connector internal/store/edge.go, Tempo store/edge.go).
UNSET, MESSAGING, DATABASE, VIRTUAL_NODE = "", "messaging_system", "database", "virtual_node"
# Tempo's `wait` default: how long a sighting waits for the other end's.
DEFAULT_WINDOW_S = 10.0
DIMENSIONS = ("namespace", "cluster", "protocol")
# Well-known server ports of databases and message brokers, for L4 edges (L7 Kafka is messaging).
DATABASE_PORTS = frozenset({1433, 1521, 3306, 5432, 6379, 9042, 11211, 26257, 27017})
MESSAGING_PORTS = frozenset({1883, 4222, 5671, 5672, 9092})
_L4_PROTOCOLS = frozenset({"TCP", "UDP", "SCTP"})
# Pending exchanges remembered for matching; beyond this the oldest go (a late sighting of one
# then counts again). Endpoint names cached by serialized endpoint.
MAX_PENDING = 65536
MAX_NODES = 8192
# Sightings of one exchange key waiting for the other end's (identical requests in one window).
MAX_UNMATCHED = 1024
TO_PROXY = 1  # trace sub-type (bpf/lib/trace.h): the packet went to the L7 proxy
SIDECAR_TYPE_URL = "type.googleapis.com/" + sidecar_pb2.SidecarFlow.DESCRIPTOR.full_name
_Ext = sidecar_pb2.SidecarFlow
ERROR = flow_pb2.ERROR  # a proxy's upstream failure, a sidecar's connect() error
TRACE = 4  # monitor message type of trace events


class _Exchange:
    """One exchange or connection, across all flows that show it."""

    __slots__ = ("edge", "failed", "seen_ns", "skip", "state", "unmatched")

    def __init__(self, seen_ns: int) -> None:
        self.seen_ns = seen_ns
        self.edge: tuple[str, ...] = ()
        self.failed = False
        # L7: per side (0 client, 1 server), the times of sightings not yet matched by the other
        # side's, oldest first; and responses a proxy will still log for requests it refused itself.
        self.unmatched: tuple[list[int], list[int]] = ([], [])
        self.skip = [0, 0]
        self.state = 0  # TCP: 1 once a SYN-ACK answered


def _parse_dimensions(value: str | None, errors: list[str]) -> tuple[str, ...]:
    if value is None:
        return ()
    dims = tuple(d.strip() for d in value.split(",") if d.strip())
    unknown = [d for d in dims if d not in DIMENSIONS]
    if unknown or not dims or len(set(dims)) != len(dims):
        errors.append(
            f"metrics family {FAMILY!r}: option dimensions={value!r}: "
            f"give distinct names of {list(DIMENSIONS)}"
        )
        return ()
    return dims


def _parse_window(value: str | None, errors: list[str]) -> float:
    if value is None:
        return DEFAULT_WINDOW_S
    try:
        window = float(value)
    except ValueError:
        window = -1.0
    if not 0 < window <= 3600:
        errors.append(f"metrics family {FAMILY!r}: option window={value!r} must be seconds in (0, 3600]")
        return DEFAULT_WINDOW_S
    return window


class ServiceGraphFamily(Family):
    name = FAMILY
    flags = frozenset({"dimensions", "window"})
    reads = frozenset({L4, IS_REPLY, EXTENSIONS})

    def __init__(self, context: ContextOptions, flags: dict[str, str], limit: int, errors: list[str]) -> None:
        super().__init__(context, flags, limit, errors)
        if not context.empty:
            errors.append(
                f"metrics family {FAMILY!r} takes no context options (its labels are client and server); "
                f"use dimensions={','.join(DIMENSIONS)}"
            )
        self.dimensions = _parse_dimensions(flags.get("dimensions"), errors)
        self.window_ns = int(_parse_window(flags.get("window"), errors) * 1e9)
        labels = ("client", "server", "connection_type")
        labels += tuple(f"{side}_{dim}" for dim in self.dimensions for side in ("client", "server"))
        self.requests = Counter(
            "traces_service_graph_request_total",
            "Total count of requests between two nodes",
            labels,
            limit,
            "",
        )
        self.failed = Counter(
            "traces_service_graph_request_failed_total",
            "Total count of failed requests between two nodes",
            labels,
            limit,
            "",
        )
        self.server_seconds = Histogram(
            "traces_service_graph_request_server",
            "Time for a request between two nodes as seen from the server",
            labels,
            limit,
            SERVICE_GRAPH_BUCKETS,
        )
        self.client_seconds = Histogram(
            "traces_service_graph_request_client",
            "Time for a request between two nodes as seen from the client",
            labels,
            limit,
            SERVICE_GRAPH_BUCKETS,
        )
        self._pending: dict[tuple[object, ...], _Exchange] = {}
        # L7 request records by what the response will match, with their time: the latency of a
        # response whose record carries none.
        self._requests: dict[tuple[object, ...], int] = {}
        self._nodes: dict[bytes, tuple[str, bool]] = {}
        self._ext = _Ext()

    # ---- per kind --------------------------------------------------------------------------------

    def handler(self, kind: FlowFacts) -> Handler | None:
        l7_kind = kind.l7_kind
        if kind.event_type == EVENT_ACCESS_LOG or l7_kind is not None:
            if l7_kind is None or kind.direction not in (EGRESS, INGRESS):
                return None
            side = 0 if kind.direction == EGRESS else 1
            if kind.l7_type == L7_RESPONSE:
                return self._l7_handler(l7_kind, side, False)
            if kind.l7_type == L7_REQUEST:
                return self._l7_handler(l7_kind, side, kind.verdict == DROPPED, request=True)
            return None
        l4_kind = kind.l4_kind
        if kind.verdict == REDIRECTED or l4_kind is None:
            return None  # redirected to a proxy, whose L7 records tell the exchange
        if l4_kind == "TCP":
            return self._tcp_handler(kind)
        if l4_kind in ("UDP", "SCTP") and kind.is_reply is not True:
            return self._conversation_handler(kind)
        return None

    # ---- naming ----------------------------------------------------------------------------------

    def _node(self, endpoint: flow_pb2.Endpoint, names: Sequence[str]) -> tuple[str, bool]:
        """(name, is_world): the spans' service name, `world` hosts by their DNS name."""
        key = endpoint.SerializeToString()
        cached = self._nodes.get(key)
        if cached is None:
            labels = endpoint.labels
            # A pod is never `world`, whatever labels a recording gave it (Cilium 1.10 with Istio did).
            if not WORLD_LABELS.isdisjoint(labels) and not endpoint.pod_name:
                cached = ("world", True)
            elif "reserved:kube-apiserver" in labels:
                cached = ("kube-apiserver", False)
            else:
                cached = (workload_name(endpoint), False)
            if len(self._nodes) < MAX_NODES:
                self._nodes[key] = cached
        if cached[1] and names:
            return names[0], True
        return cached

    def _edge(self, facts: FlowFacts, client_is_source: bool, protocol: str, port: int) -> tuple[str, ...]:
        flow = facts.flow
        if client_is_source:
            client_ep, server_ep = flow.source, flow.destination
            client_names, server_names = flow.source_names, flow.destination_names
        else:
            client_ep, server_ep = flow.destination, flow.source
            client_names, server_names = flow.destination_names, flow.source_names
        client, client_world = self._node(client_ep, client_names)
        server, server_world = self._node(server_ep, server_names)
        if client_world or server_world:
            connection_type = VIRTUAL_NODE
        elif protocol == "Kafka" or (port in MESSAGING_PORTS and protocol in _L4_PROTOCOLS):
            connection_type = MESSAGING
        elif port in DATABASE_PORTS and protocol in _L4_PROTOCOLS:
            connection_type = DATABASE
        else:
            connection_type = UNSET
        edge: tuple[str, ...] = (client, server, connection_type)
        for dim in self.dimensions:
            if dim == "namespace":
                edge += (client_ep.namespace, server_ep.namespace)
            elif dim == "cluster":
                edge += (client_ep.cluster_name, server_ep.cluster_name)
            else:
                edge += (protocol, protocol)
        return edge

    # ---- the exchange store ----------------------------------------------------------------------

    def _exchange(self, key: tuple[object, ...], now_ns: int) -> tuple[_Exchange, bool]:
        """The pending exchange under key, and whether it is new (none, or the last one too old)."""
        # Nodes' clocks and the order flows arrive in differ: a sighting may be a little older.
        exchange = self._recent(key, now_ns)
        if exchange is not None:
            exchange.seen_ns = max(now_ns, exchange.seen_ns)
            return exchange, False
        pending = self._pending
        pending.pop(key, None)  # re-inserted last, so the dict stays in order of creation
        _forget_expired(pending, now_ns, self.window_ns)
        exchange = pending[key] = _Exchange(now_ns)
        return exchange, True

    def _recent(self, key: tuple[object, ...], now_ns: int) -> _Exchange | None:
        """The exchange under key if it was seen within the window, without making one."""
        exchange = self._pending.get(key)
        if exchange is not None and abs(now_ns - exchange.seen_ns) <= self.window_ns:
            return exchange
        return None

    def _count(self, exchange: _Exchange, failed: bool) -> None:
        self.requests.inc(exchange.edge)
        if failed:
            exchange.failed = True
            self.failed.inc(exchange.edge)

    def _fail(self, exchange: _Exchange) -> None:
        """A later sighting shows an already counted exchange failed."""
        if not exchange.failed:
            exchange.failed = True
            self.failed.inc(exchange.edge)

    # ---- L7 --------------------------------------------------------------------------------------

    def _l7_handler(self, l7_kind: str, side: int, refused: bool, request: bool = False) -> Handler:
        observe = (self.client_seconds if side == 0 else self.server_seconds).observe
        other = 1 - side
        # Requests have the client as source; responses come back from the server.
        client_is_source = request
        requests = self._requests
        window_ns = self.window_ns

        def count(facts: FlowFacts) -> None:
            flow = facts.flow
            l7 = facts.l7
            ip = flow.IP
            l4 = flow.l4
            tcp = l4.HasField("TCP")
            ports = l4.TCP if tcp else l4.UDP
            if client_is_source:
                client_ip, server_ip, server_port = ip.source, ip.destination, ports.destination_port
                client_port = ports.source_port
            else:
                client_ip, server_ip, server_port = ip.destination, ip.source, ports.source_port
                client_port = ports.destination_port
            protocol, asked, failed = _l7_outcome(l7_kind, l7, flow)
            if refused or flow.verdict == DROPPED or flow.verdict == ERROR:
                failed = True
            now_ns = time_ns(flow)
            asked_by = (l7_kind, side, client_ip, client_port, server_ip, server_port, asked)
            if request and not refused:
                # Only remembered: the response is the request, and tells how it went.
                requests.pop(asked_by, None)
                _forget_expired(requests, now_ns, window_ns)
                requests[asked_by] = now_ns
                return
            latency = 0 if refused else l7.latency_ns
            if latency <= 0 and not refused:
                asked_at = requests.pop(asked_by, None)
                if asked_at is not None and 0 < now_ns - asked_at <= window_ns:
                    latency = now_ns - asked_at
            if not tcp:
                # A UDP query already counted as the conversation its packets were traced as (before
                # the DNS proxy took it) is that request: it only adds what the proxy knows.
                conversation = self._recent(("UDP", client_ip, client_port, server_ip, server_port), now_ns)
                if conversation is not None:
                    if failed:
                        self._fail(conversation)
                    if latency > 0:
                        observe(conversation.edge, latency / 1e9, *facts.exemplar())
                    return
            key = (l7_kind, client_ip, server_ip, server_port, asked, flow.trace_context.parent.trace_id)
            exchange, new = self._exchange(key, now_ns)
            if new:
                exchange.edge = self._edge(facts, client_is_source, protocol, server_port)
            if refused:
                # The refusing proxy logs its own answer too; that is this exchange, not another.
                exchange.skip[side] += 1
            elif exchange.skip[side]:
                exchange.skip[side] -= 1
                return
            waiting = exchange.unmatched[other]
            # Sightings of the other end from before the window are other exchanges, long counted.
            while waiting and now_ns - waiting[0] > window_ns:
                del waiting[0]
            if waiting:
                del waiting[0]  # the other end's sighting of this same exchange
                if failed:
                    self._fail(exchange)
            else:
                mine = exchange.unmatched[side]
                if len(mine) >= MAX_UNMATCHED:
                    del mine[0]
                mine.append(now_ns)
                self._count(exchange, failed)
            if latency > 0:
                observe(exchange.edge, latency / 1e9, *facts.exemplar())

        return count

    # ---- L4 --------------------------------------------------------------------------------------

    def _tcp_handler(self, kind: FlowFacts) -> Handler:
        reply = kind.is_reply is True
        sidecar = kind.has_extensions
        observe_client = self.client_seconds.observe

        def count(facts: FlowFacts) -> None:
            flow = facts.flow
            flags = facts.l4.flags
            syn = flags.SYN
            rst = flags.RST
            if not (syn or rst):
                return  # most TCP flows: neither opening nor refusing a connection
            ack = flags.ACK
            latency = 0
            failed = flow.verdict == DROPPED or flow.verdict == ERROR
            if sidecar and flow.extensions.type_url == SIDECAR_TYPE_URL:
                ext = self._ext
                ext.Clear()
                ext.MergeFromString(flow.extensions.value)
                event = ext.event
                if event not in (
                    _Ext.EVENT_TCP_CONNECT,
                    _Ext.EVENT_TCP_ACCEPT,
                    _Ext.EVENT_TCP_CONNECT_FAILED,
                    _Ext.EVENT_TCP_CONNECT_ERROR,
                ):
                    return  # counters and closes: not a connection's opening
                latency = ext.connect_latency_ns
                if event == _Ext.EVENT_TCP_CONNECT_FAILED:
                    failed = True
            if flow.event_type.type == TRACE and flow.event_type.sub_type == TO_PROXY:
                return  # the proxy's own records tell this connection
            ip = flow.IP
            tcp = facts.l4
            now_ns = time_ns(flow)
            if reply:
                # The server answering: SYN-ACK opens, a RST before it refuses.
                key = ("TCP", ip.destination, tcp.destination_port, ip.source, tcp.source_port)
                if failed and rst:
                    # The sidecar's refused connect: the server's RST, with no SYN flow before it.
                    exchange, new = self._exchange(key, now_ns)
                    if new:
                        exchange.edge = self._edge(facts, False, "TCP", tcp.source_port)
                        self._count(exchange, True)
                    else:
                        self._fail(exchange)
                    if latency > 0:
                        observe_client(exchange.edge, latency / 1e9)
                    return
                exchange = self._recent(key, now_ns)
                if exchange is None:
                    return
                if syn and ack:
                    exchange.state = 1
                elif rst and exchange.state == 0:
                    self._fail(exchange)
                return
            if not syn or ack:
                return
            key = ("TCP", ip.source, tcp.source_port, ip.destination, tcp.destination_port)
            exchange, new = self._exchange(key, now_ns)
            if new:
                exchange.edge = self._edge(facts, True, "TCP", tcp.destination_port)
                self._count(exchange, failed)
            elif failed:
                self._fail(exchange)
            if latency > 0:
                observe_client(exchange.edge, latency / 1e9)

        return count

    def _conversation_handler(self, kind: FlowFacts) -> Handler:
        protocol = kind.l4_kind or ""

        def count(facts: FlowFacts) -> None:
            flow = facts.flow
            if flow.event_type.type == TRACE and flow.event_type.sub_type == TO_PROXY:
                return
            ip = flow.IP
            l4 = facts.l4
            key = (protocol, ip.source, l4.source_port, ip.destination, l4.destination_port)
            exchange, new = self._exchange(key, time_ns(flow))
            failed = flow.verdict == DROPPED
            if new:
                exchange.edge = self._edge(facts, True, protocol, l4.destination_port)
                self._count(exchange, failed)
            elif failed:
                self._fail(exchange)

        return count

    def series(self) -> list[Series]:
        return [self.requests, self.failed, self.server_seconds, self.client_seconds]


def _forget_expired(store: dict[tuple[object, ...], Any], now_ns: int, window_ns: int) -> None:
    """Make room in a store kept in order of creation, whose values are times or have seen_ns.

    What can no longer match goes first, oldest first, stopping at one still within the window
    (two at most, so a store shrinks faster than one insert grows it); then, at MAX_PENDING, the oldest.
    """
    for _ in range(2):
        oldest = next(iter(store), None)
        if oldest is None:
            return
        value = store[oldest]
        seen_ns = value if isinstance(value, int) else value.seen_ns
        if now_ns - seen_ns <= window_ns:
            break
        del store[oldest]
    if len(store) >= MAX_PENDING:
        del store[next(iter(store))]


def _l7_outcome(l7_kind: str, l7: object, flow: object) -> tuple[str, tuple[object, ...], bool]:
    """(protocol, what was asked, failed) of an L7 record."""
    if l7_kind == "http":
        http = l7.http  # type: ignore[attr-defined]
        failed = http.code >= 500
        grpc = False
        # gRPC runs over HTTP/2 only, so HTTP/1 records need no header scan.
        if http.protocol.startswith("HTTP/2"):
            for header in http.headers:
                key = header.key.lower()
                if key == "grpc-status":
                    grpc = True
                    failed = failed or header.value != "0"
                elif key == "content-type" and header.value.startswith("application/grpc"):
                    grpc = True
        return ("gRPC" if grpc else "HTTP"), (http.method, http.url), failed
    if l7_kind == "dns":
        dns = l7.dns  # type: ignore[attr-defined]
        # NXDOMAIN (3) is an answer: Kubernetes' search path asks for names that do not exist all the time.
        return "DNS", (dns.query, tuple(dns.qtypes)), dns.rcode not in (0, 3)
    kafka = l7.kafka  # type: ignore[attr-defined]
    return "Kafka", (kafka.api_key, kafka.topic, kafka.correlation_id), kafka.error_code != 0
