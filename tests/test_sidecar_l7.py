"""The sidecar's L7 parsing and pairing without BPF: DNS messages, HTTP/1.x heads, pairing, L7 flows.

Flows are checked against what Cilium's proxy reports (pkg/hubble/parser/seven/dns.go and http.go)
and then fed to the bridge's own span and metric mapping, which must take them unchanged.
"""

from __future__ import annotations

import struct

import pytest

from hubble_bridge.api import flow_pb2, observer_pb2, sidecar_pb2
from hubble_bridge.mapping.metrics import MetricsAggregator, MetricsConfig
from hubble_bridge.sidecar import dnsmsg
from hubble_bridge.sidecar.convert import FlowBuilder
from hubble_bridge.sidecar.endpoints import EndpointResolver
from hubble_bridge.sidecar.http1 import HttpError, parse_head, starts_message
from hubble_bridge.sidecar.l7pair import DnsPairs, HttpStreams
from hubble_bridge.sidecar.records import IPPROTO_TCP, IPPROTO_UDP
from tests import dns_server

CLIENT, SERVER = ("192.0.2.10", 40000), ("192.0.2.53", 53)
T0 = 1_700_000_000_000_000_000


def query(name: str, qtype: int = 1, ident: int = 0x1234) -> bytes:
    return (
        struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0)
        + dns_server.encode_name(name)
        + struct.pack("!HH", qtype, 1)
    )


def test_dns_response_fields_as_cilium_reports_them() -> None:
    message = dnsmsg.parse(dns_server.answer(query("alias.test.")) or b"")
    assert (message.response, message.rcode, message.query, message.qtypes) == (True, 0, "alias.test.", ["A"])
    assert message.ips == ["192.0.2.10", "192.0.2.11"]
    assert message.cnames == ["www.test."] and message.rrtypes == ["CNAME", "A", "A"]
    assert message.ttl == 60  # the lowest TTL of the answers
    nx = dnsmsg.parse(dns_server.answer(query("nope.test.")) or b"")
    assert (nx.rcode, nx.ips, nx.ttl) == (3, [], 0)
    v6 = dnsmsg.parse(dns_server.answer(query("v6.test.", 28)) or b"")
    assert (v6.qtypes, v6.ips, v6.ttl) == (["AAAA"], ["2001:db8::10"], 30)


def test_dns_compressed_names_and_capture_cut_inside_answers() -> None:
    # The answer's owner name is a pointer to the question (offset 12), as real servers send it.
    head = struct.pack("!HHHHHH", 7, 0x8180, 1, 2, 0, 0) + dns_server.encode_name("www.test.") + b"\0\1\0\1"
    answer = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 30, 4) + bytes([198, 51, 100, 1])
    message = dnsmsg.parse(head + answer + answer[:8])  # the second answer is cut by the capture
    assert (message.query, message.ips, message.truncated) == ("www.test.", ["198.51.100.1"], True)


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"\x00\x01", "shorter than a DNS header"),
        (struct.pack("!HHHHHH", 1, 0x0100, 0, 0, 0, 0), "no question"),
        (struct.pack("!HHHHHH", 1, 0x0100, 1, 0, 0, 0) + b"\xc0\x0c", "loop"),
        (struct.pack("!HHHHHH", 1, 0x0100, 1, 0, 0, 0) + b"\x05ab", "past the end"),
        (struct.pack("!HHHHHH", 1, 0x2800, 1, 0, 0, 0) + b"\0\0\1\0\1", "not a query"),
    ],
)
def test_dns_bad_messages_are_errors_saying_what(data: bytes, problem: str) -> None:
    with pytest.raises(dnsmsg.DnsError, match=problem):
        dnsmsg.parse(data)


def test_dns_pairs_by_transaction_id_and_tuple_and_counts_what_it_cannot_pair() -> None:
    pairs = DnsPairs([53], capacity=2, timeout_ns=1_000_000_000)
    [asked] = pairs.messages(T0, IPPROTO_UDP, CLIENT, SERVER, query("www.test.", ident=1))
    other = pairs.messages(T0 + 1, IPPROTO_UDP, CLIENT, SERVER, query("nope.test.", ident=2))
    assert not asked.reply and asked.client == CLIENT and other[0].dns and other[0].dns.id == 2
    reply = dns_server.answer(query("nope.test.", ident=2)) or b""
    [answered] = pairs.messages(T0 + 5_000, IPPROTO_UDP, SERVER, CLIENT, reply)
    assert (answered.reply, answered.latency_ns, answered.client, answered.server) == (
        True,
        4_999,
        CLIENT,
        SERVER,
    )
    # Same id from another client port: not this query's answer.
    stray = pairs.messages(T0 + 6_000, IPPROTO_UDP, SERVER, ("192.0.2.10", 40001), reply)
    assert stray[0].latency_ns == 0 and pairs.counts["dns.responses_unmatched"] == 1
    for ident in (3, 4):  # capacity 2: the oldest open query (id 1) gives way
        pairs.messages(T0 + 10, IPPROTO_UDP, CLIENT, SERVER, query("x.test.", ident=ident))
    assert pairs.counts["dns.queries_evicted"] == 1
    pairs.expire(T0 + 10 + 1_000_000_000)
    assert pairs.counts["dns.queries_unanswered"] == 2 and len(pairs) == 0
    assert pairs.messages(T0, IPPROTO_UDP, CLIENT, SERVER, b"junk") == []
    assert pairs.counts["dns.invalid"] == 1


def test_dns_over_tcp_reads_length_prefixed_messages() -> None:
    pairs = DnsPairs([53], capacity=8, timeout_ns=10**9)
    first, second = query("www.test.", ident=9), query("v6.test.", 28, ident=10)
    payload = struct.pack("!H", len(first)) + first + struct.pack("!H", len(second)) + second
    found = pairs.messages(T0, IPPROTO_TCP, CLIENT, SERVER, payload)
    assert [m.dns.query for m in found if m.dns] == ["www.test.", "v6.test."]


def test_http_heads_requests_responses_and_cut_captures() -> None:
    head = parse_head(b"POST /a?b=1 HTTP/1.1\r\nHost: svc\r\nContent-Length: 3\r\n\r\nabc")
    assert (head.request, head.method, head.target, head.protocol, head.body_length) == (
        True, "POST", "/a?b=1", "HTTP/1.1", 3,
    )  # fmt: skip
    assert head.header("HOST") == "svc"
    response = parse_head(b"HTTP/1.0 503 Service Unavailable\r\nX: y\r\n\r\n")
    assert (response.code, response.protocol, response.body_length) == (503, "HTTP/1.0", None)
    cut = parse_head(b"GET / HTTP/1.1\r\nHost: h\r\nUser-Ag")
    assert (cut.complete, cut.headers, cut.body_length) == (False, [("Host", "h")], None)
    assert parse_head(b"HTTP/1.1 204 No Content\r\n\r\n").body_length == 0
    with pytest.raises(HttpError, match="bad request line"):
        parse_head(b"GET /\r\n\r\n")
    with pytest.raises(HttpError, match="cut"):
        parse_head(b"GET / HTTP/1.1")
    assert starts_message(b"HTTP/1.1 200") and not starts_message(b"HTTP/2 ") and not starts_message(b"GETX")


def test_http_pipelined_requests_pair_in_order_and_bodies_are_skipped() -> None:
    streams = HttpStreams(capacity=4, timeout_ns=10**9)
    key = ("conn",)
    two = b"GET /one HTTP/1.1\r\nHost: h\r\n\r\nGET /two HTTP/1.1\r\nHost: h\r\n\r\n"
    requests = streams.messages(key, T0, CLIENT, SERVER, two, seq=1000)
    assert [m.http.target for m in requests if m.http] == ["/one", "/two"]
    # The first response has a body whose next segment happens to start like a message.
    first = b"HTTP/1.1 200 OK\r\nContent-Length: 30\r\n\r\n"
    [ok] = streams.messages(key, T0 + 100, SERVER, CLIENT, first, seq=5000)
    assert (
        streams.messages(
            key, T0 + 101, SERVER, CLIENT, b"HTTP/1.1 999 body bytes.....\r\n", 5000 + len(first)
        )
        == []
    )
    assert streams.counts["http.body_segments_skipped"] == 1
    interim = streams.messages(
        key, T0 + 150, SERVER, CLIENT, b"HTTP/1.1 100 Continue\r\n\r\n", 5000 + len(first) + 30
    )
    [missing] = streams.messages(
        key, T0 + 200, SERVER, CLIENT, b"HTTP/1.1 404 Not Found\r\n\r\n", 5000 + len(first) + 30 + 25
    )
    assert interim == []
    assert [(m.http.target, m.http.code, m.latency_ns) for m in (ok, missing) if m.http] == [
        ("/one", 200, 100),
        ("/two", 404, 200),
    ]
    assert (ok.client, ok.server, ok.reply) == (CLIENT, SERVER, True)
    [lone] = streams.messages(key, T0 + 300, SERVER, CLIENT, b"HTTP/1.1 500 x\r\n\r\n")
    assert lone.latency_ns == 0 and streams.counts["http.responses_unmatched"] == 1


def test_http_unanswered_requests_and_evicted_connections_are_counted() -> None:
    streams = HttpStreams(capacity=1, timeout_ns=1000)
    streams.messages("a", T0, CLIENT, SERVER, b"GET / HTTP/1.1\r\n\r\n")
    streams.messages("b", T0, CLIENT, SERVER, b"GET / HTTP/1.1\r\n\r\n")
    assert streams.counts["http.connections_evicted"] == 1 and streams.counts["http.requests_unanswered"] == 1
    streams.expire(T0 + 1000)
    assert streams.counts["http.requests_unanswered"] == 2 and len(streams) == 0


def l7_flows() -> list[observer_pb2.GetFlowsResponse]:
    builder = FlowBuilder("node-1", EndpointResolver(), lambda index: "eth9" if index == 9 else "")
    pairs = DnsPairs([53], capacity=8, timeout_ns=10**9)
    messages = pairs.messages(T0, IPPROTO_UDP, CLIENT, SERVER, query("alias.test."), ifindex=9)
    messages += pairs.messages(
        T0 + 2_000_000, IPPROTO_UDP, SERVER, CLIENT, dns_server.answer(query("alias.test.")) or b"", 9
    )
    streams = HttpStreams(capacity=8, timeout_ns=10**9)
    web = ("192.0.2.80", 8080)
    request = (
        b"GET /p?token=s3cret HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer t\r\nUser-Agent: c/1\r\n\r\n"
    )
    messages += streams.messages(1, T0, CLIENT, web, request, seq=1)
    messages += streams.messages(1, T0 + 3_000_000, web, CLIENT, b"HTTP/1.1 503 Busy\r\n\r\n", seq=1)
    for message in messages:
        message.pid, message.command = 77, "curl"
    return [builder.l7_flow(m) for m in messages]


def test_l7_flows_are_hubble_l7_flows_with_redacted_urls() -> None:
    dns_request, dns_response, http_request, http_response = (r.flow for r in l7_flows())
    assert (dns_request.Type, dns_request.event_type.type, dns_request.l7.type) == (
        flow_pb2.L7, 129, flow_pb2.REQUEST,
    )  # fmt: skip
    assert dns_request.Summary == "DNS Query alias.test. A"
    assert (dns_response.IP.source, dns_response.IP.destination, dns_response.is_reply.value) == (
        SERVER[0], CLIENT[0], True,
    )  # fmt: skip
    assert dns_response.l7.latency_ns == 2_000_000 and dns_response.interface.name == "eth9"
    assert dns_response.Summary == (
        'DNS Answer "192.0.2.10,192.0.2.11" CNAMEs: "www.test." TTL: 60 (Query alias.test. A)'
    )
    assert (dns_response.l4.UDP.source_port, dns_response.l7.dns.observation_source) == (53, "sidecar")
    http = http_request.l7.http
    assert (http.method, http.url, http.protocol) == ("GET", "http://api/p?token=REDACTED", "HTTP/1.1")
    assert [(h.key, h.value) for h in http.headers] == [("User-Agent", "c/1")]  # no Authorization
    assert http_response.l7.http.code == 503 and http_response.Summary == (
        "HTTP/1.1 503 3ms (GET http://api/p?token=REDACTED)"
    )
    ext = sidecar_pb2.SidecarFlow()
    assert http_response.extensions.Unpack(ext)
    assert (ext.event, ext.process.pid, ext.process_side) == (ext.EVENT_L7, 77, ext.SIDE_DESTINATION)


def test_the_bridge_maps_sidecar_l7_flows_to_dns_and_http_metrics() -> None:
    aggregator = MetricsAggregator(MetricsConfig(), start_time_ns=0)
    for response in l7_flows():
        aggregator.process(response)
    families = {f.name: f for f in aggregator.snapshot()}
    queries = families["hubble.dns_queries"].points
    responses = families["hubble.dns_responses"].points
    assert sum(p.value for p in queries) == 1 and sum(p.value for p in responses) == 1
    [answer] = responses
    assert dict(answer.attributes)["ips_returned"] == "2"
    requests = {dict(p.attributes)["status"]: p.value for p in families["hubble.http_requests"].points}
    assert requests == {"503": 1}


def test_tls_uprobes_fall_back_without_uprobes_or_libssl(monkeypatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    # This machine has both; a kernel without the uprobe PMU and a host without libssl are made by pointing
    # the checks elsewhere. Nothing is compiled in either case, so no BCC module is needed.
    from hubble_bridge.sidecar import tls
    from hubble_bridge.sidecar.features import ProbeState
    from hubble_bridge.sidecar.records import MonotonicClock

    monkeypatch.setattr(tls, "UPROBE_PMU", tmp_path / "no-uprobe-pmu")
    [status] = tls.TlsCapture(None, MonotonicClock(), 16, 1).start(lambda data: None)  # type: ignore[arg-type]
    assert (status.state, status.name) == (ProbeState.FALLBACK, "uprobe libssl")
    assert "no uprobes" in status.detail and "seen as TCP flows only" in status.detail
    monkeypatch.setattr(tls, "UPROBE_PMU", tmp_path)
    monkeypatch.setattr(tls, "libssl_paths", lambda: [])
    [status] = tls.TlsCapture(None, MonotonicClock(), 16, 1).start(lambda data: None)  # type: ignore[arg-type]
    assert status.state is ProbeState.FALLBACK and "no libssl on this host" in status.detail


def test_proc_net_addresses_are_decoded_in_host_byte_order() -> None:
    from hubble_bridge.sidecar.tls import _proc_address

    assert _proc_address("0100007F:1F90") == ("127.0.0.1", 8080)
    assert _proc_address("0000000000000000FFFF00000100007F:0050") == ("127.0.0.1", 80)
    assert _proc_address("B80D0120000000000000000010000000:01BB") == ("2001:db8::10", 443)


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("dns_ports", (53, 0), "DNS ports must be 1-65535, got [53, 0]"),
        ("l7_payload_bytes", 8, "L7 payload bytes must be 64-65535, got 8"),
        ("l7_pending", 0, "L7 pending requests must be at least 1, got 0"),
        ("l7_timeout_s", 0.0, "L7 timeout must be a positive number of seconds, got 0"),
    ],
)
def test_l7_options_are_checked_with_one_line_each(field: str, value: object, problem: str) -> None:
    from hubble_bridge.errors import ConfigError
    from hubble_bridge.sidecar.runner import SidecarOptions

    options = SidecarOptions(["lo"])
    setattr(options, field, value)
    with pytest.raises(ConfigError) as raised:
        options.validate()
    assert str(raised.value) == f"sidecar: {problem}"
