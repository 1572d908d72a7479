"""fastjson decodes exactly as json_format does: same messages, same rejections, same errors."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import orjson
import pytest
from google.protobuf import any_pb2, json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hubble_bridge.api import flow_pb2, observer_pb2
from hubble_bridge.errors import FlowDecodeError
from hubble_bridge.flows import fastjson
from hubble_bridge.flows.codec import parse_json_line, to_json_dict
from hubble_bridge.generator import generate_responses

FLOWS = Path(__file__).resolve().parents[1].parent / "shared" / "flows"
GetFlowsResponse = observer_pb2.GetFlowsResponse
T = FieldDescriptor


def reference(data: dict[str, Any], message_type: type[Message]) -> Message | str:
    """json_format's answer: the message, or the first line of its error."""
    try:
        return json_format.ParseDict(copy.deepcopy(data), message_type(), ignore_unknown_fields=False)
    except (json_format.ParseError, ValueError, TypeError, AttributeError) as exc:
        return "error: " + str(exc).splitlines()[0]


def fast(data: dict[str, Any], message_type: type[Message]) -> Message | str:
    try:
        return fastjson.parse_dict(data, message_type)
    except (json_format.ParseError, ValueError, TypeError, AttributeError) as exc:
        return "error: " + str(exc).splitlines()[0]


@pytest.fixture
def no_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the json_format fallback fail loudly, to prove the fast path did the work."""

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("fell back to json_format")

    monkeypatch.setattr(json_format, "ParseDict", refuse)


@pytest.mark.parametrize("name", sorted(p.name for p in FLOWS.glob("*.jsonl")))
def test_real_flows_decode_equal_to_json_format(name: str) -> None:
    lines = (FLOWS / name).read_bytes().splitlines()
    assert lines
    for line in lines:
        data = orjson.loads(line)
        expected = reference(data, GetFlowsResponse)
        assert isinstance(expected, GetFlowsResponse)
        assert fastjson.parse_dict(data, GetFlowsResponse) == expected


def test_generated_flows_take_the_fast_path(no_fallback: None) -> None:
    responses = list(generate_responses(3000, seed=1))
    kinds = {r.WhichOneof("response_types") for r in responses}
    assert kinds == {"flow", "lost_events", "node_status"}  # every envelope arm is covered
    for response in responses:
        decoded = fastjson.parse_dict(to_json_dict(response), GetFlowsResponse)
        assert decoded == response


def test_real_flows_take_the_fast_path(no_fallback: None) -> None:
    for path in FLOWS.glob("*.jsonl"):
        for line in path.read_bytes().splitlines():
            fastjson.parse_dict(orjson.loads(line), GetFlowsResponse)


def test_empty_submessages_and_false_wrappers_are_present() -> None:
    data = {"flow": {"l4": {"ICMPv4": {}}, "is_reply": False, "IP": {}}, "node_name": "n"}
    decoded = fastjson.parse_dict(data, GetFlowsResponse)
    assert decoded.flow.l4.HasField("ICMPv4")
    assert decoded.flow.HasField("is_reply") and decoded.flow.is_reply.value is False
    assert decoded.flow.HasField("IP")
    assert decoded == reference(data, GetFlowsResponse)


BASE = {
    "flow": {
        "time": "2026-01-01T00:00:01.5Z",
        "verdict": "DROPPED",
        "l4": {"TCP": {"source_port": 80, "flags": {"SYN": True}}},
        "l7": {"type": "RESPONSE", "latency_ns": "12345", "http": {"code": 200}},
        "source": {"labels": ["k8s:app=a"], "workloads": [{"name": "a", "kind": "Deployment"}]},
        "egress_denied_by": [{"name": "p", "revision": "6"}],
        "Summary": "TCP Flags: SYN",
        "socket_cookie": "18446744073709551615",
    },
    "node_name": "node-1",
    "time": "2026-01-01T00:00:01.500Z",
}


def _with(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    data = copy.deepcopy(BASE)
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return data


# Inputs off the canonical path: json_format accepts some and rejects others; fastjson must agree.
ODD_INPUTS = [
    (("flow", "nope"), 1),  # unknown field
    (("flow", "l4", "TCP", "sourcePort"), 81),  # json_name spelling, accepted
    (("flow", "verdict"), "NOT_A_VERDICT"),
    (("flow", "verdict"), 2),  # enum number, accepted
    (("flow", "verdict"), None),  # null clears
    (("flow", "l4", "TCP", "source_port"), -1),
    (("flow", "l4", "TCP", "source_port"), 2**32),
    (("flow", "l4", "TCP", "source_port"), "80"),  # quoted 32-bit int, accepted
    (("flow", "l4", "TCP", "source_port"), 80.0),
    (("flow", "l4", "TCP", "source_port"), 80.5),
    (("flow", "l4", "TCP", "source_port"), True),
    (("flow", "l4", "TCP", "flags", "SYN"), 1),
    (("flow", "l4", "TCP", "flags", "SYN"), "true"),
    (("flow", "l4", "UDP"), {"source_port": 53}),  # second oneof arm
    (("flow", "l7", "latency_ns"), " 12"),
    (("flow", "l7", "latency_ns"), "1_000"),
    (("flow", "l7", "latency_ns"), "-5"),
    (("flow", "l7", "latency_ns"), 12345),
    (("flow", "l7", "latency_ns"), "99999999999999999999999"),
    (("flow", "socket_cookie"), "18446744073709551616"),
    (("flow", "source", "labels"), "k8s:app=a"),  # a string where a list belongs
    (("flow", "source", "labels"), ["a", None]),
    (("flow", "source", "labels"), ["a", 1]),
    (("flow", "source"), []),
    (("flow", "source"), "x"),
    (("flow", "is_reply"), "yes"),
    (("flow", "is_reply"), None),
    (("flow", "Summary"), 5),
    (("flow", "time"), "2026-01-01T00:00:01+01:00"),
    (("flow", "time"), "2026-01-01t00:00:01Z"),
    (("flow", "time"), "2026-02-30T00:00:01Z"),
    (("flow", "time"), "2026-01-01T24:00:00Z"),
    (("flow", "time"), "2026-01-01T23:59:60Z"),
    (("flow", "time"), "2026-01-01T00:00:01.1234567890Z"),
    (("flow", "time"), "2026-01-01T00:00:01.Z"),
    (("flow", "time"), "2026-1-1T0:0:1Z"),
    (("flow", "time"), 1767225601),
    (("flow", "extensions"), {"@type": "type.googleapis.com/flow.Emitter", "name": "x"}),
    (("lost_events",), {"source": "PERF_EVENT_RING_BUFFER", "cpu": 3}),  # a second envelope arm
    (("time",), "0000-12-31T00:00:00Z"),
]


@pytest.mark.parametrize(("path", "value"), ODD_INPUTS, ids=[f"{'.'.join(p)}={v!r}" for p, v in ODD_INPUTS])
def test_odd_inputs_get_json_formats_answer(path: tuple[str, ...], value: Any) -> None:
    data = _with(path, value)
    assert fast(data, GetFlowsResponse) == reference(data, GetFlowsResponse)


def test_codec_errors_name_the_field_and_where() -> None:
    line = orjson.dumps(_with(("flow", "l4", "TCP", "bogus"), 1))
    with pytest.raises(FlowDecodeError, match=r'unknown field "bogus" in flow.l4.TCP$'):
        parse_json_line(line)
    with pytest.raises(
        FlowDecodeError, match=r"^invalid value in field flow.verdict: not a flow.Verdict"
    ) as bad:
        parse_json_line(orjson.dumps(_with(("flow", "verdict"), "NOT_A_VERDICT")))
    assert "NOT_A_VERDICT" not in str(bad.value)  # a value may be a credential: never repeated
    with pytest.raises(FlowDecodeError, match="source_port"):
        parse_json_line(orjson.dumps(_with(("flow", "l4", "TCP", "source_port"), "eighty")))


def test_codec_keeps_the_any_extension_through_the_fallback() -> None:
    extension = any_pb2.Any()
    extension.Pack(flow_pb2.Emitter(name="ext", version="1"))
    response = GetFlowsResponse(node_name="n")
    response.flow.extensions.CopyFrom(extension)
    response.flow.verdict = flow_pb2.FORWARDED
    assert parse_json_line(orjson.dumps(to_json_dict(response))) == response


# ---- property tests: random messages of the whole schema -----------------------------------

_INT_RANGES = {
    T.TYPE_INT32: (-(2**31), 2**31 - 1),
    T.TYPE_SINT32: (-(2**31), 2**31 - 1),
    T.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    T.TYPE_UINT32: (0, 2**32 - 1),
    T.TYPE_FIXED32: (0, 2**32 - 1),
    T.TYPE_INT64: (-(2**63), 2**63 - 1),
    T.TYPE_SINT64: (-(2**63), 2**63 - 1),
    T.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    T.TYPE_UINT64: (0, 2**64 - 1),
    T.TYPE_FIXED64: (0, 2**64 - 1),
}


def _scalar(field: FieldDescriptor) -> st.SearchStrategy[Any]:
    if field.type == T.TYPE_STRING:
        return st.text(max_size=6)
    if field.type == T.TYPE_BOOL:
        return st.booleans()
    if field.type == T.TYPE_ENUM:
        return st.sampled_from([v.number for v in field.enum_type.values]) | st.integers(0, 300)
    if field.type in _INT_RANGES:
        low, high = _INT_RANGES[field.type]
        return st.integers(low, high)
    if field.type in (T.TYPE_DOUBLE, T.TYPE_FLOAT):
        return st.floats(allow_nan=False, width=32)
    return st.binary(max_size=4)


@st.composite
def messages(draw: st.DrawFn, descriptor: Descriptor, depth: int = 0) -> Message:
    from google.protobuf import message_factory

    message = message_factory.GetMessageClass(descriptor)()
    for field in descriptor.fields:
        if draw(st.integers(0, 3)) != 0:  # a quarter of the fields, so that messages stay small
            continue
        sub = field.message_type
        if sub is not None and (depth >= 4 or sub.full_name == "google.protobuf.Any"):
            continue
        if sub is not None and sub.full_name == "google.protobuf.Timestamp":
            values = st.builds(
                lambda s, n: {"seconds": s, "nanos": n},
                st.integers(-62135596800, 253402300799),
                st.integers(0, 999_999_999),
            )
        elif sub is not None:
            values = messages(sub, depth + 1)
        else:
            values = _scalar(field)
        if field.is_repeated:
            items = draw(st.lists(values, max_size=3))
            container = getattr(message, field.name)
            for item in items:
                if sub is not None:
                    target = container.add()
                    if isinstance(item, dict):
                        target.seconds, target.nanos = item["seconds"], item["nanos"]
                    else:
                        target.CopyFrom(item)
                else:
                    container.append(item)
        elif sub is not None:
            item = draw(values)
            target = getattr(message, field.name)
            if isinstance(item, dict):
                target.seconds, target.nanos = item["seconds"], item["nanos"]
            else:
                target.CopyFrom(item)
                target.SetInParent()
        else:
            setattr(message, field.name, draw(values))
    return message


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages(GetFlowsResponse.DESCRIPTOR))
def test_random_responses_round_trip(response: GetFlowsResponse) -> None:
    data = orjson.loads(orjson.dumps(to_json_dict(response)))
    assert fastjson.parse_dict(data, GetFlowsResponse) == response
    assert reference(data, GetFlowsResponse) == response


_JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=5),
    st.sampled_from(["FORWARDED", "L7", "123", "-1", "2026-01-01T00:00:00Z", ""]),
    st.lists(st.integers(0, 3), max_size=2),
    st.just({}),
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            found.append((*prefix, key))
            found.extend(_paths(value, (*prefix, key)))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found.append((*prefix, i))
            found.extend(_paths(value, (*prefix, i)))
    return found


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_events_get_json_formats_answer(data: st.DataObject) -> None:
    event = to_json_dict(data.draw(st.sampled_from(_SAMPLES)))
    path = data.draw(st.sampled_from(_paths(event)))
    node = event
    for key in path[:-1]:
        node = node[key]
    if data.draw(st.booleans()) and isinstance(node, dict):
        node[data.draw(st.sampled_from(["bogus", "sourcePort", "Type", "ipVersion", "nodeName"]))] = 1
    else:
        node[path[-1]] = data.draw(_JUNK)
    assert fast(event, GetFlowsResponse) == reference(event, GetFlowsResponse)


_SAMPLES = list(generate_responses(300, seed=3))[::10]


# ---- message_to_dict: json_format.MessageToDict's output -----------------------------------


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages(GetFlowsResponse.DESCRIPTOR), st.booleans(), st.booleans())
def test_random_responses_encode_as_json_format_does(
    response: GetFlowsResponse, proto_names: bool, enums_as_ints: bool
) -> None:
    expected = json_format.MessageToDict(
        response, preserving_proto_field_name=proto_names, use_integers_for_enums=enums_as_ints
    )
    assert (
        fastjson.message_to_dict(response, proto_names=proto_names, enums_as_ints=enums_as_ints) == expected
    )


def _otlp_requests() -> list[Message]:
    from hubble_bridge.config import load_config
    from hubble_bridge.pipeline import Bridge
    from hubble_bridge.sinks.otlp_encode import encode_logs, encode_metrics, encode_traces

    bridge = Bridge(load_config({}, environ={}), iter(()), [])
    spans: list[Any] = []
    logs: list[Any] = []
    bridge._map_batch(list(generate_responses(1500, seed=5)), spans, logs)
    spans.extend(bridge.spans.drain())
    return [encode_traces(spans), encode_logs(logs), encode_metrics([bridge.snapshot()])]


def test_otlp_requests_encode_as_json_format_does() -> None:
    from hubble_bridge.sinks.otlp_json import to_otlp_json

    hex_ids = frozenset({"trace_id", "span_id", "parent_span_id"})
    for request in _otlp_requests():
        assert fastjson.message_to_dict(request) == json_format.MessageToDict(request)
        fast_otlp = fastjson.message_to_dict(request, enums_as_ints=True, hex_bytes=hex_ids)
        assert fast_otlp == to_otlp_json(request)  # the OTLP/JSON file sink's form, ids in hex


def test_special_floats_and_wrappers_encode_as_json_format_does() -> None:
    from opentelemetry.proto.metrics.v1 import metrics_pb2

    for value in (float("nan"), float("inf"), float("-inf"), 0.1, -0.0):
        point = metrics_pb2.NumberDataPoint(as_double=value, time_unix_nano=2**63)
        assert fastjson.message_to_dict(point) == json_format.MessageToDict(point)
    lost = flow_pb2.LostEvent(cpu={"value": 0}, num_events_lost=2**64 - 1)
    assert fastjson.message_to_dict(lost) == json_format.MessageToDict(lost)
