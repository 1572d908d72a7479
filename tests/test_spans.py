"""L7 flows -> spans: joining, timing, trace context, status, redaction and limits.

Real flows from ../shared/flows drive the conformance checks; hand-built flows
cover what the recordings lack (INGRESS, traceparent, Kafka, uuids).
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest

from hubble_bridge.api import flow_pb2, observer_pb2
from hubble_bridge.errors import FlowDecodeError
from hubble_bridge.flows.codec import parse_json_line, timestamp_from_ns, timestamp_ns
from hubble_bridge.mapping.limits import AttributeLimits
from hubble_bridge.mapping.redact import HeaderScanner, RedactConfig, redact_url, scan_headers
from hubble_bridge.mapping.spans import SpanConfig, SpanMapper
from hubble_bridge.mapping.spans_attrs import UrlParts, split_url
from hubble_bridge.mapping.spans_context import WANTED_HEADERS
from hubble_bridge.telemetry import SpanKind, SpanRecord, StatusCode
from tests.conftest import SHARED_FLOWS

T0 = 1_700_000_000_000_000_000
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE}-{PARENT}-01"
CLIENT = flow_pb2.Endpoint(ID=11, identity=1001, namespace="shop", pod_name="web-1", labels=["k8s:app=web"])
SERVER = flow_pb2.Endpoint(ID=22, identity=2002, namespace="shop", pod_name="cart-1", labels=["k8s:app=cart"])


def load(name: str) -> list[observer_pb2.GetFlowsResponse]:
    lines = (SHARED_FLOWS / name).read_text().splitlines()
    return [r for r in (parse_json_line(line) for line in lines) if r is not None]


def mapper(**config: Any) -> SpanMapper:
    return SpanMapper(SpanConfig(**config), rng=random.Random(7))


def run(m: SpanMapper, responses: list[observer_pb2.GetFlowsResponse]) -> list[SpanRecord]:
    return [span for r in responses for span in m.process(r)]


def l7(
    l7_type: int,
    direction: int,
    time_ns: int,
    *,
    node: str = "node-a",
    src: tuple[str, int] = ("10.0.0.1", 40000),
    dst: tuple[str, int] = ("10.0.0.2", 8080),
    src_ep: flow_pb2.Endpoint = CLIENT,
    dst_ep: flow_pb2.Endpoint = SERVER,
    latency_ns: int = 0,
    udp: bool = False,
    **record: Any,
) -> observer_pb2.GetFlowsResponse:
    """An L7 flow; for a RESPONSE pass src/dst (and endpoints) already swapped, as Hubble does."""
    ports = {"source_port": src[1], "destination_port": dst[1]}
    flow = flow_pb2.Flow(
        time=timestamp_from_ns(time_ns),
        verdict=flow_pb2.FORWARDED,
        IP=flow_pb2.IP(source=src[0], destination=dst[0], ipVersion=flow_pb2.IPv4),
        l4=flow_pb2.Layer4(UDP=flow_pb2.UDP(**ports)) if udp else flow_pb2.Layer4(TCP=flow_pb2.TCP(**ports)),
        source=src_ep,
        destination=dst_ep,
        Type=flow_pb2.L7,
        node_name=node,
        l7=flow_pb2.Layer7(type=l7_type, latency_ns=latency_ns, **record),
        event_type=flow_pb2.CiliumEventType(type=129),
        traffic_direction=direction,
    )
    return observer_pb2.GetFlowsResponse(flow=flow, node_name=node, time=flow.time)


def http_pair(
    direction: int,
    t: int,
    *,
    code: int = 200,
    latency_ns: int = 2_000_000,
    headers: tuple[tuple[str, str], ...] = (),
    url: str = "http://cart:8080/api/items",
    method: str = "GET",
    protocol: str = "HTTP/1.1",
    node: str = "node-a",
    client_port: int = 40000,
) -> tuple[observer_pb2.GetFlowsResponse, observer_pb2.GetFlowsResponse]:
    hdrs = [flow_pb2.HTTPHeader(key=k, value=v) for k, v in headers]
    request_http = flow_pb2.HTTP(method=method, url=url, protocol=protocol, headers=hdrs)
    response_http = flow_pb2.HTTP(code=code, method=method, url=url, protocol=protocol, headers=hdrs)
    client, server = ("10.0.0.1", client_port), ("10.0.0.2", 8080)
    request = l7(flow_pb2.REQUEST, direction, t, node=node, src=client, dst=server, http=request_http)
    response = l7(
        flow_pb2.RESPONSE, direction, t + latency_ns + 1000, node=node, src=server, dst=client,
        src_ep=SERVER, dst_ep=CLIENT, latency_ns=latency_ns, http=response_http,
    )  # fmt: skip
    return request, response


def header(span: SpanRecord, name: str) -> Any:
    return span.attributes.get(f"http.request.header.{name}")


# Recorded flows


def test_real_http_flows_one_span_per_response() -> None:
    flows = load("gke-istio-http-348.jsonl")
    m = mapper()
    responses = 0
    for response in flows:
        spans = [s for s in m.process(response) if "hubble.l7.unanswered" not in s.attributes]
        if response.flow.l7.type != flow_pb2.RESPONSE:
            assert spans == []
            continue
        responses += 1
        assert len(spans) == 1
        span = spans[0]
        assert span.end_time_ns == timestamp_ns(response.flow.time)
        assert span.end_time_ns - span.start_time_ns == response.flow.l7.latency_ns > 0
        code = response.flow.l7.http.code
        assert span.name == "GET" and span.kind == SpanKind.CLIENT
        assert span.attributes["http.response.status_code"] == code
        assert span.attributes["url.full"] == response.flow.l7.http.url
        assert span.attributes["network.protocol.version"] == "1.1"
        if code == 503:
            assert span.status == StatusCode.ERROR and span.attributes["error.type"] == "503"
            assert "503" in span.status_message
        else:
            assert code == 200 and span.status == StatusCode.UNSET
        assert dict(span.resource)["service.name"] == workload_of(response.flow.destination)
    assert responses == 173
    assert m.unanswered == 0


def workload_of(endpoint: flow_pb2.Endpoint) -> str:
    labels = {lb.split(":", 1)[1].split("=")[0]: lb.split("=", 1)[1] for lb in endpoint.labels if "=" in lb}
    return labels.get("app") or endpoint.pod_name


def test_real_http_flows_join_by_x_request_id() -> None:
    flows = load("gke-istio-http-348.jsonl")
    # Requests left over per x-request-id, counted independently of the mapper (retries reuse the id).
    balance: Counter[str] = Counter()
    for response in flows:
        rid = next(h.value for h in response.flow.l7.http.headers if h.key.lower() == "x-request-id")
        balance[rid] += 1 if response.flow.l7.type == flow_pb2.REQUEST else -1
    unanswered = sorted(rid for rid, n in balance.items() for _ in range(max(n, 0)))
    assert len(unanswered) == 3

    m = mapper(join_window_s=3600)  # nothing expires while the file plays
    run(m, flows)
    assert m.pending == 3
    left = m.drain()
    assert sorted(header(s, "x-request-id")[0] for s in left) == unanswered
    assert all(s.attributes["hubble.l7.unanswered"] is True for s in left)
    assert m.pending == 0 and m.unanswered == 3


def test_real_http_flows_b3_headers_set_trace_and_parent() -> None:
    m = mapper()
    spans = [s for s in run(m, load("gke-istio-http-348.jsonl")) if header(s, "x-request-id")]
    by_b3 = {}
    for response in load("gke-istio-http-348.jsonl"):
        hdrs = {h.key.lower(): h.value for h in response.flow.l7.http.headers}
        if response.flow.l7.type == flow_pb2.RESPONSE and "x-b3-traceid" in hdrs:
            by_b3[timestamp_ns(response.flow.time)] = (hdrs["x-b3-traceid"], hdrs["x-b3-spanid"])
    assert len(by_b3) == 34
    matched = 0
    for span in spans:
        if span.end_time_ns in by_b3:
            trace, parent = by_b3[span.end_time_ns]
            assert span.trace_id == bytes.fromhex(trace.rjust(32, "0"))
            assert span.parent_span_id == bytes.fromhex(parent)
            matched += 1
        else:
            assert span.parent_span_id == b""
    assert matched == 34
    assert len({s.span_id for s in spans}) == len(spans)


def test_real_dns_flows() -> None:
    flows = load("gke-istio-dns-330.jsonl")
    m = mapper()
    spans = run(m, flows)
    responses = [r for r in flows if r.flow.l7.type == flow_pb2.RESPONSE]
    assert len(spans) == len(responses) == 165 and m.pending == 0
    for span, response in zip(spans, responses, strict=True):
        dns = response.flow.l7.dns
        assert span.name == f"DNS {dns.qtypes[0]}"
        assert span.attributes["dns.question.name"] == dns.query.rstrip(".")
        # No latency_ns in these recordings: the span runs from the request to the response.
        assert 0 < span.end_time_ns - span.start_time_ns < 10_000_000_000
        if dns.rcode == 3:
            assert span.status == StatusCode.ERROR and span.attributes["error.type"] == "NXDOMAIN"
        else:
            assert span.status == StatusCode.UNSET
            assert span.attributes.get("dns.answers", []) == list(dns.ips)
    assert Counter(s.name for s in spans) == {"DNS A": 127, "DNS AAAA": 38}


def test_invalid_utf8_in_a_header_is_a_decode_error_before_mapping() -> None:
    # Mapping only sees valid strings: JSON and protobuf decoding reject invalid UTF-8 (a BridgeError).
    line = (SHARED_FLOWS / "gke-istio-http-348.jsonl").read_bytes().splitlines()[0]
    bad = line.replace(b"Prometheus/2.15.1", b"Prometheus/\xff\xfe")
    with pytest.raises(FlowDecodeError):
        parse_json_line(bad)


def test_sample_and_l3l4_flows() -> None:
    sample = l7(flow_pb2.SAMPLE, flow_pb2.EGRESS, T0, http=flow_pb2.HTTP(method="GET"))
    assert mapper().process(sample) == []
    drops = load("kind-drops-2.jsonl")
    assert run(mapper(), drops) == []
    spans = run(mapper(l3l4_spans=True), drops)
    assert [s.kind for s in spans] == [SpanKind.INTERNAL] * 2
    denied = next(s for s in spans if s.attributes.get("hubble.drop.reason") == "POLICY_DENIED")
    assert denied.status == StatusCode.ERROR and denied.name == "TCP DROPPED"
    assert denied.start_time_ns == denied.end_time_ns
    assert denied.attributes["hubble.tcp.flags"] == ["SYN"]


# Trace context across both ends


def test_client_and_server_views_form_one_trace() -> None:
    hdrs = (("traceparent", TRACEPARENT),)
    c_req, c_resp = http_pair(flow_pb2.EGRESS, T0, headers=hdrs, node="node-a", latency_ns=5_000_000)
    s_req, s_resp = http_pair(flow_pb2.INGRESS, T0 + 1_000_000, headers=hdrs, node="node-b")
    m = mapper()
    server, client = run(m, [c_req, s_req, s_resp, c_resp])
    assert (client.kind, server.kind) == (SpanKind.CLIENT, SpanKind.SERVER)
    assert client.trace_id == server.trace_id == bytes.fromhex(TRACE)
    assert client.parent_span_id == bytes.fromhex(PARENT)
    assert server.parent_span_id == client.span_id != server.span_id
    assert dict(client.resource)["service.name"] == "web"
    assert dict(server.resource)["service.name"] == "cart"
    assert dict(server.resource)["k8s.node.name"] == "node-b"
    assert server.attributes["network.peer.address"] == "10.0.0.1"
    assert client.attributes["network.peer.address"] == "10.0.0.2"


def test_server_links_to_client_by_x_request_id_without_trace_context() -> None:
    hdrs = (("x-request-id", "rid-1"),)
    c_req, c_resp = http_pair(flow_pb2.EGRESS, T0, headers=hdrs, latency_ns=5_000_000)
    s_req, s_resp = http_pair(flow_pb2.INGRESS, T0 + 1_000_000, headers=hdrs, node="node-b")
    # The server REQUEST comes first here (Relay merges nodes): the link is made at its RESPONSE.
    server, client = run(mapper(), [s_req, c_req, s_resp, c_resp])
    assert server.trace_id == client.trace_id and server.parent_span_id == client.span_id
    assert client.parent_span_id == b""


def test_trace_context_field_and_uuid_ids() -> None:
    req, resp = http_pair(flow_pb2.EGRESS, T0, headers=(("traceparent", TRACEPARENT),))
    other = "0af7651916cd43dd8448eb211c80319c"
    req.flow.trace_context.parent.trace_id = TRACE
    req.flow.uuid = "c0ffee00-0000-4000-8000-000000000001"
    resp.flow.uuid = "c0ffee00-0000-4000-8000-000000000002"
    [span] = run(mapper(), [req, resp])
    assert span.trace_id == bytes.fromhex(TRACE) and span.parent_span_id == bytes.fromhex(PARENT)
    assert span.trace_state == "" and span.attributes["hubble.flow.uuid"] == resp.flow.uuid
    # Ids derived from the uuid are the same on every run, whatever the random state.
    again = SpanMapper(SpanConfig(), rng=random.Random(99))
    assert run(again, [req, resp])[0].span_id == span.span_id
    # A traceparent from another trace than trace_context gives no parent.
    req2, resp2 = http_pair(flow_pb2.EGRESS, T0, headers=(("traceparent", TRACEPARENT),))
    req2.flow.trace_context.parent.trace_id = other
    [span2] = run(mapper(), [req2, resp2])
    assert span2.trace_id == bytes.fromhex(other) and span2.parent_span_id == b""


# Status, names, attributes


@pytest.mark.parametrize(
    ("direction", "code", "status"),
    [
        (flow_pb2.INGRESS, 404, StatusCode.UNSET),
        (flow_pb2.INGRESS, 503, StatusCode.ERROR),
        (flow_pb2.EGRESS, 404, StatusCode.ERROR),
        (flow_pb2.EGRESS, 302, StatusCode.UNSET),
    ],
)
def test_http_status_by_side(direction: int, code: int, status: StatusCode) -> None:
    [span] = run(mapper(), list(http_pair(direction, T0, code=code)))
    assert span.status == status
    assert span.attributes.get("error.type") == (str(code) if status == StatusCode.ERROR else None)


def test_http_attributes_for_nonstandard_method_and_http2() -> None:
    req, resp = http_pair(flow_pb2.EGRESS, T0, method="PURGE", protocol="HTTP/2")
    resp.flow.egress_allowed_by.add(name="allow-web", namespace="shop")
    resp.flow.destination_names.append("ignored.example.")  # the client's names, not the server's
    resp.flow.source_names.append("cart.shop.example.")
    [span] = run(mapper(), [req, resp])
    a = span.attributes
    assert a["hubble.policy.names"] == ["shop/allow-web"]
    assert a["server.address"] == "cart.shop.example"
    assert span.name == "HTTP"
    assert (a["http.request.method"], a["http.request.method_original"]) == ("_OTHER", "PURGE")
    assert (a["network.protocol.name"], a["network.protocol.version"]) == ("http", "2")
    assert (a["url.scheme"], a["url.path"]) == ("http", "/api/items")
    assert (a["server.port"], a["client.address"], a["client.port"]) == (8080, "10.0.0.1", 40000)
    assert (a["network.transport"], a["network.type"]) == ("tcp", "ipv4")
    assert (a["hubble.source.identity"], a["hubble.destination.identity"]) == (1001, 2002)
    assert a["hubble.traffic_direction"] == "EGRESS" and a["hubble.verdict"] == "FORWARDED"


def test_zero_latency_uses_request_time_and_lone_response_still_spans() -> None:
    req, resp = http_pair(flow_pb2.EGRESS, T0, latency_ns=0)
    [span] = run(mapper(), [req, resp])
    assert span.start_time_ns == T0 and span.end_time_ns == T0 + 1000
    _, lone = http_pair(flow_pb2.EGRESS, T0, latency_ns=3_000_000)
    [span] = run(mapper(), [lone])
    assert span.end_time_ns - span.start_time_ns == 3_000_000 and span.parent_span_id == b""


def test_connection_join_is_fifo_and_dns_queries_on_one_socket_pair_by_name() -> None:
    m = mapper()
    q = {"udp": True, "src": ("10.0.0.1", 5353), "dst": ("10.0.0.53", 53)}
    r = {"udp": True, "src": ("10.0.0.53", 53), "dst": ("10.0.0.1", 5353), "src_ep": SERVER, "dst_ep": CLIENT}
    a = l7(flow_pb2.REQUEST, flow_pb2.EGRESS, T0, dns=flow_pb2.DNS(query="x.io.", qtypes=["A"]), **q)
    aaaa = l7(
        flow_pb2.REQUEST, flow_pb2.EGRESS, T0 + 10, dns=flow_pb2.DNS(query="x.io.", qtypes=["AAAA"]), **q
    )
    aaaa_resp = l7(
        flow_pb2.RESPONSE, flow_pb2.EGRESS, T0 + 500, dns=flow_pb2.DNS(query="x.io.", qtypes=["AAAA"]), **r
    )
    answer = flow_pb2.DNS(query="x.io.", qtypes=["A"], ips=["1.2.3.4"])
    a_resp = l7(flow_pb2.RESPONSE, flow_pb2.EGRESS, T0 + 900, dns=answer, **r)
    first, second = run(m, [a, aaaa, aaaa_resp, a_resp])
    assert (first.name, first.start_time_ns) == ("DNS AAAA", T0 + 10)
    assert (second.name, second.start_time_ns) == ("DNS A", T0)
    assert second.attributes["dns.answers"] == ["1.2.3.4"] and second.attributes["network.transport"] == "udp"


def test_kafka_produce_span() -> None:
    kafka = {"api_key": "produce", "topic": "orders", "api_version": 7, "correlation_id": 42}
    req = l7(flow_pb2.REQUEST, flow_pb2.EGRESS, T0, kafka=flow_pb2.Kafka(**kafka))
    resp = l7(
        flow_pb2.RESPONSE, flow_pb2.EGRESS, T0 + 50, src=("10.0.0.2", 8080), dst=("10.0.0.1", 40000),
        src_ep=SERVER, dst_ep=CLIENT, kafka=flow_pb2.Kafka(error_code=29, **kafka),
    )  # fmt: skip
    [span] = run(mapper(), [req, resp])
    a = span.attributes
    assert (span.name, span.kind, span.status) == ("produce orders", SpanKind.PRODUCER, StatusCode.ERROR)
    assert a["messaging.system"] == "kafka" and a["messaging.operation.name"] == "produce"
    assert a["messaging.operation.type"] == "send" and a["messaging.destination.name"] == "orders"
    assert (a["hubble.kafka.error_code"], a["hubble.kafka.correlation_id"], a["error.type"]) == (29, 42, "29")


# Expiry


def test_unanswered_request_expires_after_the_window() -> None:
    m = mapper(join_window_s=10)
    req, _ = http_pair(flow_pb2.EGRESS, T0, headers=(("x-request-id", "r"),))
    assert m.process(req) == [] and m.pending == 1
    assert m.expire(T0 + 9_999_999_999) == []
    [span] = m.expire(T0 + 10_000_000_000)
    assert span.attributes["hubble.l7.unanswered"] is True
    assert (span.start_time_ns, span.end_time_ns) == (T0, T0 + 10_000_000_000)
    assert "http.response.status_code" not in span.attributes
    assert (m.pending, m.unanswered, m.evicted) == (0, 1, 0)


def test_stream_time_expires_old_requests_and_max_pending_evicts() -> None:
    m = mapper(join_window_s=10)
    old, _ = http_pair(flow_pb2.EGRESS, T0, url="http://cart/old")
    m.process(old)
    later, later_resp = http_pair(flow_pb2.EGRESS, T0 + 20_000_000_000, client_port=40001)
    spans = m.process(later)  # stream time has moved past the window
    assert [s.attributes["url.full"] for s in spans] == ["http://cart/old"]
    assert m.process(later_resp)[0].attributes["url.full"] == "http://cart:8080/api/items"

    small = mapper(max_pending=2)
    requests = [http_pair(flow_pb2.EGRESS, T0 + i, client_port=41000 + i)[0] for i in range(3)]
    spans = run(small, requests)
    assert [s.attributes["client.port"] for s in spans] == [41000]
    assert (small.pending, small.evicted, small.unanswered) == (2, 1, 1)
    assert len(small.drain()) == 2 and small.pending == 0


# Redaction and limits


def test_secrets_in_url_and_headers_never_reach_the_span() -> None:
    hdrs = (
        ("Authorization", "Bearer sekrit-token"),
        ("Cookie", "sid=sekrit-cookie"),
        ("User-Agent", "curl/8"),
    )
    url = "http://bob:sekrit-pw@cart:8080/api?token=sekrit-q&page=2"
    [span] = run(mapper(), list(http_pair(flow_pb2.EGRESS, T0, url=url, headers=hdrs)))
    assert "sekrit" not in repr(span)
    a = span.attributes
    assert a["url.full"] == "http://REDACTED:REDACTED@cart:8080/api?token=REDACTED&page=REDACTED"
    assert a["url.query"] == "token=REDACTED&page=REDACTED"
    assert header(span, "authorization") is None and header(span, "user-agent") == ["curl/8"]
    kept = RedactConfig(keep_headers=("authorization",), keep_query_params=("page",))
    [span] = run(mapper(redact=kept), list(http_pair(flow_pb2.EGRESS, T0, url=url, headers=hdrs)))
    assert header(span, "authorization") == ["REDACTED"] and "page=2" in span.attributes["url.full"]
    assert "sekrit" not in repr(span)


def test_hostile_sizes_are_bounded() -> None:
    limits = AttributeLimits(max_value_length=256, max_attributes=40, max_list_items=4)
    names = tuple(f"x-h{i}" for i in range(100))
    hdrs = (("User-Agent", "é" * 100_000), *((n, "€" * 1000) for n in names), ("x-h0", "again"))
    url = "http://cart/" + "p" * 1_000_000 + "?token=" + "t" * 1000
    m = mapper(limits=limits, redact=RedactConfig(keep_headers=("user-agent", *names)))
    [span] = run(m, list(http_pair(flow_pb2.EGRESS, T0, url=url, headers=hdrs)))
    assert len(span.attributes) == 40
    for value in span.attributes.values():
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str):
                assert len(item.encode("utf-8")) <= 256
    assert span.attributes["url.full"].startswith("http://cart/ppp")
    assert m.limit_counts.values > 0 and m.limit_counts.attributes > 0


def test_config_validate() -> None:
    SpanConfig().validate()
    with pytest.raises(Exception, match="join_window_s"):
        SpanConfig(join_window_s=0).validate()


# Exact records, key order included (the OTLP encoder keeps it): they pin every attribute path.


def test_server_span_exact_attributes_in_order() -> None:
    hdrs = (
        ("X-Request-Id", "rid-9"),
        ("User-Agent", "curl/8"),
        ("Authorization", "Bearer x"),
        ("Content-Type", "text/plain"),
        ("content-type", "application/json"),
    )
    url = "https://u:p@cart:8443/api/items?id=7#frag"
    req, resp = http_pair(flow_pb2.INGRESS, T0, code=503, url=url, method="POST", headers=hdrs)
    resp.flow.uuid = "c0ffee00-0000-4000-8000-00000000000a"
    resp.flow.ingress_allowed_by.add(name="allow-web", namespace="shop")
    resp.flow.ingress_denied_by.add(name="cluster-wide")
    resp.flow.source_service.name = "cart-svc"
    m = mapper(
        redact=RedactConfig(keep_headers=("user-agent", "x-request-id", "content-type", "authorization"))
    )
    [span] = run(m, [req, resp])
    assert list(span.attributes.items()) == [
        ("http.request.method", "POST"),
        ("http.response.status_code", 503),
        ("url.full", "https://REDACTED:REDACTED@cart:8443/api/items?id=REDACTED#frag"),
        ("url.scheme", "https"),
        ("url.path", "/api/items"),
        ("url.query", "id=REDACTED"),
        ("network.protocol.name", "http"),
        ("network.protocol.version", "1.1"),
        ("user_agent.original", "curl/8"),
        ("error.type", "503"),
        ("network.transport", "tcp"),
        ("network.type", "ipv4"),
        ("server.address", "cart-svc"),
        ("server.port", 8080),
        ("client.address", "10.0.0.1"),
        ("client.port", 40000),
        ("network.peer.address", "10.0.0.1"),
        ("network.peer.port", 40000),
        ("hubble.verdict", "FORWARDED"),
        ("hubble.traffic_direction", "INGRESS"),
        ("hubble.node.name", "node-a"),
        ("hubble.source.identity", 1001),
        ("hubble.destination.identity", 2002),
        ("hubble.policy.names", ["shop/allow-web", "cluster-wide"]),
        ("hubble.flow.uuid", "c0ffee00-0000-4000-8000-00000000000a"),
        ("http.request.header.x-request-id", ["rid-9"]),
        ("http.request.header.user-agent", ["curl/8"]),
        ("http.request.header.authorization", ["REDACTED"]),
        ("http.request.header.content-type", ["text/plain", "application/json"]),
    ]
    assert (span.name, span.kind, span.status, span.status_message) == (
        "POST", SpanKind.SERVER, StatusCode.ERROR, "HTTP status 503",
    )  # fmt: skip
    assert span.end_time_ns - span.start_time_ns == 2_000_000
    assert dict(span.resource) == {
        "service.name": "cart", "service.namespace": "shop", "k8s.namespace.name": "shop",
        "k8s.pod.name": "cart-1", "k8s.node.name": "node-a",
    }  # fmt: skip


def test_unanswered_and_dropped_request_spans_exact() -> None:
    m = mapper(join_window_s=10)
    req, _ = http_pair(flow_pb2.EGRESS, T0, url="/v1/x?q=1", method="", headers=(("X-Request-Id", "r"),))
    req.flow.destination_names.append("cart.example.")
    req.flow.verdict = flow_pb2.DROPPED
    assert m.process(req) == []
    [span] = m.drain()
    assert list(span.attributes.items()) == [
        ("http.request.method", "_OTHER"),
        ("url.path", "/v1/x"),
        ("url.query", "q=REDACTED"),
        ("network.protocol.name", "http"),
        ("network.protocol.version", "1.1"),
        ("network.transport", "tcp"),
        ("network.type", "ipv4"),
        ("server.address", "cart.example"),
        ("server.port", 8080),
        ("client.address", "10.0.0.1"),
        ("client.port", 40000),
        ("network.peer.address", "10.0.0.2"),
        ("network.peer.port", 8080),
        ("hubble.verdict", "DROPPED"),
        ("hubble.traffic_direction", "EGRESS"),
        ("hubble.node.name", "node-a"),
        ("hubble.source.identity", 1001),
        ("hubble.destination.identity", 2002),
        ("http.request.header.x-request-id", ["r"]),
        ("hubble.l7.unanswered", True),
    ]
    assert (span.name, span.kind, span.status, span.status_message) == (
        "HTTP", SpanKind.CLIENT, StatusCode.ERROR, "request dropped by Cilium",
    )  # fmt: skip
    assert (span.start_time_ns, span.end_time_ns) == (T0, T0)
    assert dict(span.resource)["service.name"] == "web"

    # A dropped REQUEST marks the span of its (forwarded) RESPONSE.
    req, resp = http_pair(flow_pb2.EGRESS, T0, code=200)
    req.flow.verdict = flow_pb2.DROPPED
    [span] = run(mapper(), [req, resp])
    assert span.attributes["hubble.verdict"] == "DROPPED"
    assert (span.status, span.status_message) == (StatusCode.ERROR, "request dropped by Cilium")


def test_dns_and_kafka_spans_exact() -> None:
    q = {"udp": True, "src": ("10.0.0.1", 5353), "dst": ("10.0.0.53", 53)}
    r = {"udp": True, "src": ("10.0.0.53", 53), "dst": ("10.0.0.1", 5353), "src_ep": SERVER, "dst_ep": CLIENT}
    question = {"query": "x.io.", "qtypes": ["A"], "observation_source": "proxy"}
    answer = flow_pb2.DNS(
        rcode=3, ips=["1.2.3.4", "5.6.7.8"], cnames=["y.io."], rrtypes=["CNAME", "A"], ttl=30, **question
    )
    dns_req = l7(flow_pb2.REQUEST, flow_pb2.EGRESS, T0, dns=flow_pb2.DNS(**question), **q)
    dns_resp = l7(flow_pb2.RESPONSE, flow_pb2.EGRESS, T0 + 900, dns=answer, **r)
    [span] = run(mapper(), [dns_req, dns_resp])
    assert list(span.attributes.items()) == [
        ("dns.question.name", "x.io"),
        ("network.protocol.name", "dns"),
        ("hubble.dns.qtypes", ["A"]),
        ("hubble.dns.observation_source", "proxy"),
        ("hubble.dns.rcode", 3),
        ("dns.answers", ["1.2.3.4", "5.6.7.8"]),
        ("hubble.dns.cnames", ["y.io."]),
        ("hubble.dns.rrtypes", ["CNAME", "A"]),
        ("hubble.dns.ttl", 30),
        ("error.type", "NXDOMAIN"),
        ("network.transport", "udp"),
        ("network.type", "ipv4"),
        ("server.address", "10.0.0.53"),
        ("server.port", 53),
        ("client.address", "10.0.0.1"),
        ("client.port", 5353),
        ("network.peer.address", "10.0.0.53"),
        ("network.peer.port", 53),
        ("hubble.verdict", "FORWARDED"),
        ("hubble.traffic_direction", "EGRESS"),
        ("hubble.node.name", "node-a"),
        ("hubble.source.identity", 1001),
        ("hubble.destination.identity", 2002),
    ]
    assert (span.name, span.status, span.status_message) == ("DNS A", StatusCode.ERROR, "DNS rcode NXDOMAIN")
    assert (span.start_time_ns, span.end_time_ns) == (T0, T0 + 900)

    fetch = flow_pb2.Kafka(api_key="fetch", topic="orders", api_version=11, correlation_id=5)
    resp = l7(
        flow_pb2.RESPONSE, flow_pb2.INGRESS, T0 + 50, src=("10.0.0.2", 9092), dst=("10.0.0.1", 40000),
        src_ep=SERVER, dst_ep=CLIENT, kafka=fetch,
    )  # fmt: skip
    [span] = run(mapper(), [resp])  # no REQUEST: a lone response still spans
    assert list(span.attributes.items())[:8] == [
        ("messaging.system", "kafka"),
        ("network.protocol.name", "kafka"),
        ("messaging.operation.name", "fetch"),
        ("messaging.operation.type", "receive"),
        ("messaging.destination.name", "orders"),
        ("hubble.kafka.api_version", 11),
        ("hubble.kafka.correlation_id", 5),
        ("hubble.kafka.error_code", 0),
    ]
    assert (span.name, span.kind, span.status) == ("fetch orders", SpanKind.SERVER, StatusCode.UNSET)
    assert span.start_time_ns == span.end_time_ns == T0 + 50


def test_limits_count_what_they_cut() -> None:
    limits = AttributeLimits(max_value_length=8, max_attributes=12, max_list_items=1)
    q = {"udp": True, "src": ("10.0.0.1", 5353), "dst": ("10.0.0.53", 53)}
    r = {"udp": True, "src": ("10.0.0.53", 53), "dst": ("10.0.0.1", 5353), "src_ep": SERVER, "dst_ep": CLIENT}
    answer = flow_pb2.DNS(
        query="averylongname.io.", qtypes=["A"], ips=["1.2.3.4", "5.6.7.8"], cnames=["é" * 9]
    )
    m = mapper(limits=limits)
    dns_req = l7(
        flow_pb2.REQUEST, flow_pb2.EGRESS, T0, dns=flow_pb2.DNS(query="averylongname.io.", qtypes=["A"]), **q
    )
    [span] = run(m, [dns_req, l7(flow_pb2.RESPONSE, flow_pb2.EGRESS, T0 + 9, dns=answer, **r)])
    a = span.attributes
    assert list(a) == [
        "dns.question.name", "network.protocol.name", "hubble.dns.qtypes", "hubble.dns.rcode", "dns.answers",
        "hubble.dns.cnames", "network.transport", "network.type", "server.address", "server.port",
        "client.address", "client.port",
    ]  # fmt: skip
    assert (a["dns.question.name"], a["dns.answers"], a["hubble.dns.cnames"]) == (
        "averylon",
        ["1.2.3.4"],
        ["éééé"],
    )
    assert a["server.address"] == "10.0.0.5"
    # Cut: the name, the cname item, server.address, client.address, network.peer.address (dropped later).
    assert (m.limit_counts.values, m.limit_counts.lists, m.limit_counts.attributes) == (5, 1, 7)
    assert span.name == "DNS A"


def test_process_flow_matches_process_and_needs_a_flow() -> None:
    flows = load("gke-istio-http-348.jsonl") + load("kind-drops-2.jsonl")
    a, b = mapper(l3l4_spans=True), mapper(l3l4_spans=True)
    assert [b.process_flow(r.flow, r) for r in flows] == [a.process(r) for r in flows]
    assert (a.pending, a.unanswered, a.watermark_ns) == (b.pending, b.unanswered, b.watermark_ns)
    # No flow reads as an empty Flow: neither L7 nor L3/L4.
    assert a.process(observer_pb2.GetFlowsResponse()) == []


# Per-mapper caches: same results as the functions they stand in for


REDACT_CONFIGS = {
    "default": RedactConfig(),
    "off": RedactConfig(enabled=False),
    "wide": RedactConfig(
        keep_headers=("User-Agent", "x-request-id", "authorization", "b3", "x-custom"),
        keep_query_params=("page",),
    ),
}


@pytest.mark.parametrize("name", sorted(REDACT_CONFIGS))
def test_header_scanner_matches_scan_headers(name: str) -> None:
    cfg = REDACT_CONFIGS[name]
    lines = [
        ("Accept", "a"), ("X-Request-Id", "r1"), ("x-request-id", "r2"), ("Authorization", "Bearer s"),
        ("AUTHORIZATION", "Bearer t"), ("b3", "1"), ("Traceparent", TRACEPARENT), ("User-Agent", "ua"),
        ("X-Custom", "c1"), ("x-custom", "c2"), ("Cookie", "k=v"), ("tracestate", "x=y"), ("X" * 200, "long"),
    ]  # fmt: skip
    scanner = HeaderScanner(cfg, WANTED_HEADERS)
    small = HeaderScanner(cfg, WANTED_HEADERS)
    small.MAX_NAMES = 3  # the names past the bound are worked out each time instead
    for headers in (lines, lines[::-1], lines[3:7], []):
        given = [flow_pb2.HTTPHeader(key=k, value=v) for k, v in headers]
        expected = scan_headers(given, cfg, WANTED_HEADERS)
        for _ in range(2):  # the second pass runs on remembered names
            assert scanner.scan(given) == small.scan(given) == expected
            assert list(scanner.scan(given)[0]) == list(expected[0])
            assert scanner.wanted(given) == small.wanted(given) == expected[1]
    assert len(small._plans) == 3
    assert all(len(name) <= scanner.MAX_NAME_LENGTH for name in scanner._plans)


@pytest.mark.parametrize("name", sorted(REDACT_CONFIGS))
def test_url_parts_match_redact_and_split_and_stay_bounded(name: str) -> None:
    cfg = REDACT_CONFIGS[name]
    urls = UrlParts(cfg)
    urls.MAX_URLS, urls.MAX_URL_LENGTH = 2, 12
    given = [
        "/api?page=2&token=s", "http://u:p@h:8080/a/b?x=1#f", "https://h", "/plain", "relative?q=1", "?",
        "//u@h/p", "ftp://h/p?page=1",
    ]  # fmt: skip
    for url in given * 2:
        redacted = redact_url(url, cfg)
        scheme, path, query = split_url(redacted)
        expected = {"url.full": redacted, "url.scheme": scheme} if scheme else {}
        expected.update({"url.path": path} if path else {})
        expected.update({"url.query": query} if query else {})
        got = urls.attributes(url)
        assert got == expected and list(got) == list(expected)
        assert len(urls._cache) <= 2
        assert all(len(cached) <= 12 for cached in urls._cache)


def test_request_with_x_request_id_is_not_found_by_connection() -> None:
    # A request with an id is filed under it alone: a response on the same connection without
    # the id is a lone span, and the request ends unanswered.
    req, _ = http_pair(flow_pb2.EGRESS, T0, headers=(("x-request-id", "rid-1"),))
    _, resp = http_pair(flow_pb2.EGRESS, T0)
    m = mapper(join_window_s=1.0)
    [lone] = run(m, [req, resp])
    assert m.pending == 1 and "hubble.l7.unanswered" not in lone.attributes
    [unanswered] = m.drain()
    assert unanswered.attributes["hubble.l7.unanswered"] is True
    assert unanswered.attributes["http.request.header.x-request-id"] == ["rid-1"]


def test_server_linked_to_its_client_takes_the_client_context_over_its_own() -> None:
    other = f"00-{'1' * 32}-{'2' * 16}-01"
    c_req, c_resp = http_pair(
        flow_pb2.EGRESS,
        T0,
        headers=(("x-request-id", "r"), ("traceparent", TRACEPARENT), ("tracestate", "a=1")),
    )
    s_req, s_resp = http_pair(
        flow_pb2.INGRESS, T0 + 1000, headers=(("x-request-id", "r"), ("traceparent", other)), node="node-b"
    )
    s_req.flow.trace_context.parent.trace_id = "1" * 32
    server, client = run(mapper(), [c_req, s_req, s_resp, c_resp])
    assert (server.trace_id, server.parent_span_id) == (bytes.fromhex(TRACE), client.span_id)
    assert server.trace_state == client.trace_state == "a=1"
    assert client.parent_span_id == bytes.fromhex(PARENT)
