"""Hostile bytes and requests at the gRPC edges: invalid UTF-8, hostile filters, raw servers.

- Protobuf (upb) refuses invalid UTF-8 in string fields when parsing, and orjson refuses it
  in JSON, so no such string ever reaches mapping; patched payloads prove both.
- Any GetFlowsRequest (random bytes, random filters, absurd times and masks) either
  compiles or is refused with one BridgeError line, and a compiled filter set answers
  every hostile flow with a bool; the real Observer server answers INVALID_ARGUMENT.
- A message from a hostile Relay that protobuf refuses is skipped and counted; the stream goes on.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError
from google.protobuf.message_factory import GetMessageClass
from hypothesis import given
from hypothesis import strategies as st

from hubble_bridge.api import flow_pb2, observer_pb2
from hubble_bridge.bench.measure import FrameSource
from hubble_bridge.config import load_config
from hubble_bridge.errors import BridgeError, FlowDecodeError
from hubble_bridge.filters import FlowFilterSet
from hubble_bridge.flows.codec import parse_json_line, timestamp_from_ns, to_json_line
from hubble_bridge.pipeline import Bridge
from hubble_bridge.server.observer import ObserverServer
from hubble_bridge.server.query import FlowQuery
from hubble_bridge.server.store import EventStore
from hubble_bridge.sources.relay import RelayClient, build_request
from tests.test_hostile_input import ENUM, HYPOTHESIS, I32, SHORT, U32, U64, flows

GetFlowsResponse = observer_pb2.GetFlowsResponse
GetFlowsRequest = observer_pb2.GetFlowsRequest
MARK = "MARKMARK"
# Invalid UTF-8: a stray continuation byte, a cut two-byte sequence, an encoded surrogate,
# a code point beyond U+10FFFF and an overlong "/".
BAD_UTF8 = [b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xc0\xaf"]


def marked_event() -> GetFlowsResponse:
    """An event with MARK in a top-level, a nested, a repeated and a deeply nested string field."""
    flow = flow_pb2.Flow(node_name=MARK, time=timestamp_from_ns(1_700_000_000_000_000_000))
    flow.source.pod_name = MARK
    flow.source.labels.append(MARK)
    flow.l7.http.headers.add(key="x", value=MARK)
    return GetFlowsResponse(flow=flow, node_name="n")


def patch(data: bytes, bad: bytes, occurrence: int) -> bytes:
    """Replace the first bytes of the n-th MARK with `bad`, keeping every length prefix valid."""
    at = -1
    for _ in range(occurrence + 1):
        at = data.index(MARK.encode(), at + 1)
    return data[:at] + bad + data[at + len(bad) :]


@pytest.mark.parametrize("bad", BAD_UTF8)
@pytest.mark.parametrize("occurrence", range(4))
def test_upb_refuses_invalid_utf8_in_any_string_field(bad: bytes, occurrence: int) -> None:
    data = marked_event().SerializeToString()
    assert GetFlowsResponse.FromString(data) == marked_event()
    with pytest.raises(DecodeError, match="UTF-8"):
        GetFlowsResponse.FromString(patch(data, bad, occurrence))


@pytest.mark.parametrize("bad", BAD_UTF8)
def test_the_mapper_skips_and_counts_event_bytes_it_cannot_decode(bad: bytes) -> None:
    good = marked_event().SerializeToString()
    events = [good, patch(good, bad, 1), b"\x0a\xff", good]  # invalid UTF-8; a cut length prefix
    bridge = Bridge(load_config({}, environ={}), FrameSource(events), [])  # no sinks: nothing leaves
    assert bridge.run() == 0
    bridge.snapshot()  # copies the components' counters into the self-metrics
    assert bridge.stats.total("flows.received") == 4
    assert bridge.stats.total("flows.mapped") == 2
    assert bridge.stats.total("input.invalid") == 2


@pytest.mark.parametrize("bad", BAD_UTF8)
def test_json_decoder_refuses_invalid_utf8_and_lone_surrogates(bad: bytes) -> None:
    line = to_json_line(marked_event())
    assert parse_json_line(line) == marked_event()
    with pytest.raises(FlowDecodeError):
        parse_json_line(line.replace(MARK.encode(), b"A" + bad + b"A", 1))
    for escaped in (rb"\ud800", rb"\udc80\ud800", rb"\ud83dx"):
        with pytest.raises(FlowDecodeError):
            parse_json_line(line.replace(MARK.encode(), escaped, 1))
    # Escaped control characters and a proper surrogate pair are valid JSON strings.
    decoded = parse_json_line(line.replace(MARK.encode(), rb"\u0000\u001b\u2028\ud83d\ude00"))
    assert decoded is not None and decoded.flow.node_name == "\x00\x1b\u2028\U0001f600"


# ---- hostile requests ------------------------------------------------------------------------

FILTER_TEXT = st.one_of(
    st.sampled_from(
        ["", " ", "10.0.0.0/8", "10.0.0.300", "::1", "fd00::/200", "shop/", "a/b/c", "/", "*.example.com",
         "a..b", "kind-*/node", "x/y/z", "5+", "404", "600", "k8s:app=web", "app in (a,b)", "app notin ()",
         "n>5", "n<" + "9" * 5000, "!reserved:world", "(", "[", "a{99999}", "80", "65536", "-1", "tcp",
         "HTTP", "icmpv6", "GET", "%zz", "http://h/p?q", "\x00"]
    ),
    SHORT,
)  # fmt: skip
_SCALARS: dict[int, st.SearchStrategy[Any]] = {
    FieldDescriptor.TYPE_STRING: FILTER_TEXT,
    FieldDescriptor.TYPE_BOOL: st.booleans(),
    FieldDescriptor.TYPE_ENUM: ENUM,
    FieldDescriptor.TYPE_UINT32: U32,
    FieldDescriptor.TYPE_UINT64: U64,
    FieldDescriptor.TYPE_INT32: I32,
}


@st.composite
def messages(draw: st.DrawFn, descriptor: Descriptor, max_fields: int = 3) -> Any:
    """Any message of `descriptor`: a few fields, each of any value its type allows.

    Built from the schema, so a FlowFilter field added later is fuzzed without a change here.
    """
    message = GetMessageClass(descriptor)()
    fields = draw(st.lists(st.sampled_from(list(descriptor.fields)), max_size=max_fields, unique=True))
    for field in fields:
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            value = messages(field.message_type, 2)
        else:
            value = _SCALARS[field.type]
        if field.is_repeated:
            getattr(message, field.name).extend(draw(st.lists(value, min_size=1, max_size=3)))
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            getattr(message, field.name).CopyFrom(draw(value))
        else:
            setattr(message, field.name, draw(value))
    return message


FILTER_LISTS = st.lists(messages(flow_pb2.FlowFilter.DESCRIPTOR), max_size=3)


@st.composite
def requests(draw: st.DrawFn) -> GetFlowsRequest:
    request = GetFlowsRequest(
        number=draw(st.one_of(st.just(0), U64)),
        follow=draw(st.booleans()),
        first=draw(st.sampled_from([False, False, True])),
        whitelist=draw(FILTER_LISTS),
        blacklist=draw(FILTER_LISTS),
    )
    for name in ("since", "until"):
        if draw(st.sampled_from([False, False, True])):
            ts = getattr(request, name)
            ts.seconds, ts.nanos = draw(st.integers(-(2**63), 2**63 - 1)), draw(I32)
    if draw(st.booleans()):
        paths = st.one_of(st.sampled_from(["time", "source.pod_name", "l7.http", "nope", "IP..x", ""]), SHORT)
        request.field_mask.paths.extend(draw(st.lists(paths, max_size=3)))
    return request


@HYPOTHESIS
@given(
    st.lists(messages(flow_pb2.FlowFilter.DESCRIPTOR, 2), min_size=1, max_size=4),
    st.lists(flows(), max_size=3),
)
def test_any_filter_compiles_or_is_one_bridge_error_and_never_crashes_matching(
    filters: list[flow_pb2.FlowFilter], flow_list: list[flow_pb2.Flow]
) -> None:
    # Each filter alone (one bad value would otherwise refuse them all), then all as white- and blacklist.
    sets = [[f] for f in filters] + [filters]
    compiled: list[FlowFilterSet] = []
    for whitelist in sets:
        try:
            compiled += [FlowFilterSet(whitelist), FlowFilterSet(blacklist=whitelist)]
        except BridgeError as exc:
            assert str(exc) and "\n" not in str(exc)
    for flow in flow_list:
        for filter_set in compiled:
            assert isinstance(filter_set.matches(GetFlowsResponse(flow=flow)), bool)


@HYPOTHESIS
@given(requests(), st.lists(flows(), max_size=2))
def test_any_request_compiles_or_is_one_bridge_error(
    request: GetFlowsRequest, flow_list: list[flow_pb2.Flow]
) -> None:
    try:
        query = FlowQuery.from_request(request)
    except BridgeError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    events = [GetFlowsResponse(flow=flow, node_name="n") for flow in flow_list]
    for event in events:
        assert isinstance(query.accepts(event), bool)
        assert isinstance(query.past_until(event), bool)
        assert isinstance(query.shape(event), GetFlowsResponse)
    assert isinstance(query.initial(events), list)


@HYPOTHESIS
@given(st.binary(max_size=200))
def test_random_request_bytes_compile_or_are_one_bridge_error(data: bytes) -> None:
    try:
        request = GetFlowsRequest.FromString(data)
    except DecodeError:
        return
    try:
        FlowQuery.from_request(request)
    except BridgeError as exc:
        assert "\n" not in str(exc)


def test_numeric_label_selector_on_a_label_with_thousands_of_digits() -> None:
    selector = FlowFilterSet([flow_pb2.FlowFilter(source_label=["k8s:n>5"])])
    for value, expected in (
        ("1" * 5000, False),
        ("0" * 5000 + "6", True),
        (str(2**63 - 1), True),
        (str(2**63), False),
        ("6", True),
        ("-7", False),
    ):
        flow = flow_pb2.Flow(source=flow_pb2.Endpoint(labels=[f"k8s:n={value}"]))
        assert selector.matches_flow(flow) is expected, value  # Kubernetes compares as int64


# ---- over loopback gRPC ----------------------------------------------------------------------


@pytest.fixture
def observer() -> Iterator[str]:
    store = EventStore(max_flows=10)
    store.extend([marked_event()])
    server = ObserverServer(store, "127.0.0.1:0")
    yield server.start()
    server.stop(0)


@pytest.mark.parametrize(
    ("request_", "reason"),
    [
        (GetFlowsRequest(whitelist=[flow_pb2.FlowFilter(source_ip=["10.0.0.300"])]), "source_ip"),
        (GetFlowsRequest(blacklist=[flow_pb2.FlowFilter(http_path=["("])]), "http_path"),
        (GetFlowsRequest(whitelist=[flow_pb2.FlowFilter(source_label=["n<" + "9" * 5000])]), "source_label"),
        (GetFlowsRequest.FromString(b"\x32\x03\xa8\x06\x01"), "#101"),  # whitelist[0] field 101: unknown
        (build_request(since_ns=2, until_ns=1), "since is after until"),
    ],
)
def test_observer_server_refuses_hostile_requests_and_keeps_serving(
    observer: str, request_: GetFlowsRequest, reason: str
) -> None:
    client = RelayClient(observer, connect_timeout_s=5)
    try:
        with pytest.raises(BridgeError, match="refused the request") as refused:
            list(client.get_flows(request_))
        assert reason in str(refused.value) and "\n" not in str(refused.value)
        assert [e.flow.node_name for e in client.get_flows(GetFlowsRequest())] == [MARK]
    finally:
        client.close()


def _raw_relay(payloads: list[bytes]) -> tuple[grpc.Server, str]:
    """A 'Relay' that streams these bytes as GetFlowsResponses, whatever they hold."""

    def get_flows(request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        yield from payloads

    handler = grpc.method_handlers_generic_handler(
        "observer.Observer",
        {"GetFlows": grpc.unary_stream_rpc_method_handler(get_flows)},  # bytes in, bytes out
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2), handlers=[handler])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, f"127.0.0.1:{port}"


@pytest.mark.parametrize("bad", [b"\xed\xa0\x80", b"\xff"])
def test_relay_stream_with_invalid_utf8_skips_the_message_and_goes_on(bad: bytes) -> None:
    good = marked_event().SerializeToString()
    server, target = _raw_relay([good, patch(good, bad, 1), good])
    client = RelayClient(target, connect_timeout_s=5)
    try:
        stream = client.get_flows(GetFlowsRequest())
        assert [e.flow.source.pod_name for e in stream] == [MARK, MARK]  # the one after it too
        assert stream.undecodable == 1
    finally:
        client.close()
        server.stop(0)
