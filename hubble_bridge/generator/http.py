"""HTTP exchanges as Cilium's Envoy access log shows them through Hubble.

One exchange is a REQUEST and a RESPONSE at the client's proxy (EGRESS, client
node) and, for most exchanges, the same pair at the server's proxy (INGRESS,
server node), all with one X-Request-Id and traceparent. Responses swap source
and destination, repeat the request headers, and carry latency_ns. Header keys
are in Go's canonical form and sorted, as Hubble prints them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from hubble_bridge.api import flow_pb2, observer_pb2
from hubble_bridge.generator.kit import (
    ACCESS_LOG,
    IS_REPLY,
    NOT_REPLY,
    D,
    Event,
    Kit,
    V,
    address,
    event_type,
    ip,
)
from hubble_bridge.generator.packets import Conn, policy_verdict
from hubble_bridge.generator.topology import Peer

# (method, path template, status on success); {sku} {id} {uuid} {hex} are filled per request
_ROUTES = {
    "frontend": (
        ("GET", "/", 200),
        ("GET", "/products/{sku}", 200),
        ("GET", "/cart", 200),
        ("POST", "/cart/items", 201),
        ("GET", "/static/js/main.{hex}.js", 200),
        ("GET", "/search?q=running+shoes&page={id}", 200),
        ("GET", "/account/orders?session_token={hex}{hex}", 200),
    ),
    "catalog": (
        ("GET", "/api/v1/products?page={id}&limit=20", 200),
        ("GET", "/api/v1/products/{sku}", 200),
        ("GET", "/api/v1/categories", 200),
    ),
    "cart": (
        ("GET", "/api/v1/carts/{uuid}", 200),
        ("POST", "/api/v1/carts/{uuid}/items", 201),
        ("DELETE", "/api/v1/carts/{uuid}/items/{sku}", 204),
    ),
    "checkout": (
        ("POST", "/api/v1/checkout", 201),
        ("GET", "/api/v1/orders/{id}?token={hex}", 200),
    ),
    "payments": (
        ("POST", "/v1/charges", 201),
        ("GET", "/v1/charges/ch_{hex}?api_key=sk_live_{hex}{hex}", 200),
    ),
}
_PLACEHOLDER = re.compile(r"\{(\w+)\}")
# client workload, server workload, weight
_EDGES = (
    ("ingress-nginx-controller", "frontend", 30),
    ("frontend", "catalog", 24),
    ("frontend", "cart", 14),
    ("frontend", "checkout", 6),
    ("checkout", "cart", 4),
    ("checkout", "payments", 5),
    ("prometheus", "", 9),  # scrapes /metrics of any HTTP workload
)
_EDGE_WEIGHTS = [w for _, _, w in _EDGES]
_USER_AGENTS = {
    "ingress-nginx-controller": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "frontend": "node-fetch/1.0 (+https://github.com/bitinn/node-fetch)",
    "checkout": "Go-http-client/1.1",
    "prometheus": "Prometheus/3.1.0",
}
_SCRAPE_ACCEPT = "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
# Failure codes and their cumulative share of exchanges; the rest succeed.
_FAILURES = ((0.02, 301), (0.07, 404), (0.09, 429), (0.13, 500), (0.16, 503))


def _fill(kit: Kit, template: str) -> str:
    """Each placeholder gets its own value, left to right."""
    rng = kit.rng
    values = {
        "sku": lambda: f"SKU-{rng.randint(10000, 99999)}",
        "id": lambda: str(rng.randint(1, 400)),
        "uuid": kit.uuid,
        "hex": lambda: f"{rng.getrandbits(64):016x}",
    }
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)](), template)


def _status(kit: Kit, method: str, ok: int) -> int:
    r = kit.rng.random()
    for share, code in _FAILURES:
        if r < share:
            return ok if code == 301 and method != "GET" else code  # only pages move
    return ok


def _headers(kit: Kit, client: str, method: str, path: str, trace: str) -> list[flow_pb2.HTTPHeader]:
    rng = kit.rng
    pairs = [("X-Request-Id", kit.uuid())]
    if client == "prometheus":
        pairs.append(("Accept", _SCRAPE_ACCEPT))
    else:
        pairs.append(("Accept", "text/html" if client == "ingress-nginx-controller" else "application/json"))
    if trace:
        pairs.append(("Traceparent", trace))
    pairs.append(("User-Agent", _USER_AGENTS.get(client, "Go-http-client/2.0")))
    if method in ("POST", "PUT"):
        pairs.append(("Content-Type", "application/json"))
    if client == "ingress-nginx-controller":
        user = ".".join(str(rng.randint(1, 223)) for _ in range(4))
        pairs += [("X-Forwarded-For", user), ("X-Forwarded-Proto", "https")]
    if client != "prometheus" and (path.startswith(("/api/v1/checkout", "/v1/")) or rng.random() < 0.2):
        claims, signature = f"{rng.getrandbits(192):048x}", f"{rng.getrandbits(128):032x}"
        pairs.append(("Authorization", f"Bearer eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.{claims}.{signature}"))
    pairs.sort()
    return [flow_pb2.HTTPHeader(key=k, value=v) for k, v in pairs]


@dataclass(slots=True)
class _Exchange:
    """What both proxies see of one request/response."""

    client: Peer
    server: Peer
    v6: bool
    sport: int
    port: int
    http: flow_pb2.HTTP  # request fields; the response adds the code
    code: int
    context: flow_pb2.TraceContext | None
    service: flow_pb2.Service | None


def _new_exchange(kit: Kit) -> _Exchange:
    rng = kit.rng
    client_wl, server_wl, _ = rng.choices(_EDGES, weights=_EDGE_WEIGHTS)[0]
    scrape = not server_wl
    server = kit.pod(rng.choice(tuple(_ROUTES)) if scrape else server_wl)
    client = kit.pod(client_wl)
    wl = server.workload
    assert wl is not None
    v6 = kit.use_v6(client, server)
    if scrape:  # Prometheus scrapes pod addresses, and sends no trace context
        method, path, code, port = "GET", "/metrics", 200, 9090
        url = f"http://{f'[{server.ipv6}]' if v6 else server.ipv4}:{port}{path}"
        protocol, trace_id, trace = "HTTP/1.1", "", ""
    else:
        method, template, ok = rng.choice(_ROUTES[wl.name])
        path, port = _fill(kit, template), wl.port
        code = _status(kit, method, ok)
        url, protocol = f"http://{wl.host}:{port}{path}", wl.protocol
        trace_id = f"{rng.getrandbits(128) | 1:032x}"
        trace = f"00-{trace_id}-{rng.getrandbits(64) | 1:016x}-01"
    headers = _headers(kit, client_wl, method, path, trace)
    return _Exchange(
        client,
        server,
        v6,
        kit.port(),
        port,
        flow_pb2.HTTP(method=method, url=url, protocol=protocol, headers=headers),
        code,
        flow_pb2.TraceContext(parent=flow_pb2.TraceParent(trace_id=trace_id)) if trace_id else None,
        None if scrape else wl.service,
    )


def _observe(
    kit: Kit, ex: _Exchange, at: Peer, latency: int, verdicts: tuple[int, int]
) -> tuple[observer_pb2.GetFlowsResponse, observer_pb2.GetFlowsResponse]:
    """The request and response flows one proxy reports: the client's (EGRESS) or the server's."""
    node = at.node
    assert node is not None
    src_ep, dst_ep = ex.client.endpoint_on(node), ex.server.endpoint_on(node)
    src_ip, dst_ip = address(ex.client, ex.v6), address(ex.server, ex.v6)
    http, method, url, protocol = ex.http, ex.http.method, ex.http.url, ex.http.protocol
    common = {
        "Type": flow_pb2.L7,
        "event_type": event_type(ACCESS_LOG),
        "traffic_direction": D.EGRESS if at is ex.client else D.INGRESS,
        "trace_context": ex.context,
    }
    request = kit.event(
        node,
        verdict=verdicts[0],
        IP=ip(src_ip, dst_ip, ex.v6),
        l4=flow_pb2.Layer4(TCP=flow_pb2.TCP(source_port=ex.sport, destination_port=ex.port)),
        source=src_ep,
        destination=dst_ep,
        l7=flow_pb2.Layer7(type=flow_pb2.REQUEST, http=http),
        is_reply=NOT_REPLY,
        destination_service=ex.service,
        Summary=f"{protocol} {method} {url}",
        **common,
    )
    response_http = flow_pb2.HTTP(code=ex.code)
    response_http.MergeFrom(http)
    response = kit.event(
        node,
        verdict=verdicts[1],
        IP=ip(dst_ip, src_ip, ex.v6),
        l4=flow_pb2.Layer4(TCP=flow_pb2.TCP(source_port=ex.port, destination_port=ex.sport)),
        source=dst_ep,
        destination=src_ep,
        l7=flow_pb2.Layer7(type=flow_pb2.RESPONSE, latency_ns=latency, http=response_http),
        is_reply=IS_REPLY,
        source_service=ex.service,
        Summary=f"{protocol} {ex.code} {latency // 1_000_000}ms ({method} {url})",
        **common,
    )
    return request, response


def http_exchange(kit: Kit) -> list[Event]:
    rng = kit.rng
    ex = _new_exchange(kit)
    client, server = ex.client, ex.server
    denied = ex.service is not None and rng.random() < 0.01  # an L7 rule rejects it at the server
    if denied:
        ex.code = 403
        work = rng.randint(40_000, 400_000)  # the proxy answers itself
    else:
        work = kit.latency(9.0 if ex.service else 2.0, 0.9)
    there, back = kit.hop(client.node, server.node), kit.hop(server.node, client.node)
    sides = rng.random()
    events: list[Event] = []
    if sides < 0.9:  # seen at the client's proxy
        failed = ex.code == 503 and rng.random() < 0.2  # the upstream connection failed
        total = there + work + back
        req, resp = _observe(kit, ex, client, total, (V.FORWARDED, V.ERROR if failed else V.FORWARDED))
        events += ((0, req), (total, resp))
    if sides < 0.8 or sides >= 0.9:  # seen at the server's proxy
        req, resp = _observe(kit, ex, server, work, (V.DROPPED if denied else V.FORWARDED, V.FORWARDED))
        events += ((there, req), (there + work, resp))
    wl = server.workload
    if wl is not None and wl.namespace == "shop" and rng.random() < 0.1:
        # A new connection: the server's L7 policy sends it to the proxy first.
        conn = Conn(client, server, ex.v6, ex.sport, ex.port)
        verdict = policy_verdict(kit, conn, True, V.REDIRECTED, 2, kit.topology.policies["shop"])
        events.append((there - 2_000, verdict))
    return events
