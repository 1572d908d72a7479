"""Traces and logs written straight to OTLP wire bytes: the same requests encode_traces / encode_logs build.

Every check compares against the message path (otlp_encode), which stays the
reference: parsed back, the bytes must give an equal message, and since both
write fields in field-number order the bytes themselves must be equal too.
"""

from __future__ import annotations

import math
import random
from enum import IntEnum, StrEnum
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.logs.v1 import logs_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from hubble_bridge.generator import generate_responses
from hubble_bridge.mapping.logs import LogConfig, event_log
from hubble_bridge.mapping.spans import SpanConfig, SpanMapper
from hubble_bridge.sinks import otlp_wire
from hubble_bridge.sinks.otlp_encode import encode_logs, encode_traces
from hubble_bridge.sinks.otlp_wire import FragmentCache, logs_bytes, traces_bytes
from hubble_bridge.telemetry import (
    LogRecord,
    Resource,
    Severity,
    SpanKind,
    SpanRecord,
    StatusCode,
    make_resource,
)

POD_A = make_resource({"service.name": "frontend", "k8s.namespace.name": "shop"})
POD_B = make_resource({"service.name": "cart", "k8s.namespace.name": "shop", "k8s.pod.name": "cart-1"})
TRACE = bytes.fromhex("0af7651916cd43dd8448eb211c80319c")
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def span(resource: Resource = POD_A, n: int = 1, **fields: Any) -> SpanRecord:
    record = SpanRecord(
        resource=resource,
        trace_id=TRACE,
        span_id=bytes([n]) * 8,
        parent_span_id=b"\x01" * 8,
        name=f"GET /{n}",
        kind=SpanKind.SERVER,
        start_time_ns=1_700_000_000_000_000_000 + n,
        end_time_ns=1_700_000_000_500_000_000 + n,
        attributes={"http.request.method": "GET", "http.response.status_code": 200},
    )
    for name, value in fields.items():
        setattr(record, name, value)
    return record


def log(resource: Resource = POD_A, **fields: Any) -> LogRecord:
    record = LogRecord(
        resource=resource,
        time_ns=1_700_000_000_123_456_789,
        severity=Severity.WARN,
        body="shop/cart:8080 -> 10.0.0.9:53 DROPPED (POLICY_DENIED)",
        attributes={"hubble.drop_reason": "POLICY_DENIED"},
        event_name="hubble.flow.drop",
        trace_id=TRACE,
        span_id=b"\x05" * 8,
    )
    for name, value in fields.items():
        setattr(record, name, value)
    return record


def assert_same_traces(spans: list[SpanRecord], **kwargs: Any) -> None:
    expected = encode_traces(spans, **kwargs)
    wire = traces_bytes(spans, **kwargs)
    assert ExportTraceServiceRequest.FromString(wire) == expected
    assert wire == expected.SerializeToString()


def assert_same_logs(logs: list[LogRecord], **kwargs: Any) -> None:
    expected = encode_logs(logs, **kwargs)
    wire = logs_bytes(logs, **kwargs)
    assert ExportLogsServiceRequest.FromString(wire) == expected
    assert wire == expected.SerializeToString()


def mapped_records(count: int, seed: int) -> tuple[list[SpanRecord], list[LogRecord]]:
    """Spans and log records the real mappers make of the generated stream (every flow logged)."""
    mapper = SpanMapper(SpanConfig(l3l4_spans=True), rng=random.Random(seed))
    log_config = LogConfig(all_flows=True, cluster_name="prod-eu1")
    spans: list[SpanRecord] = []
    logs: list[LogRecord] = []
    for response in generate_responses(count, seed=seed):
        spans.extend(mapper.process(response))
        record = event_log(response, log_config)
        if record is not None:
            logs.append(record)
    spans.extend(mapper.drain())
    return spans, logs


def test_generated_spans_and_logs_encode_identically() -> None:
    spans, logs = mapped_records(3000, seed=1)
    assert len(spans) > 1000 and len(logs) > 1000
    assert any(type(v) is list for s in spans for v in s.attributes.values())  # the stream has header lists
    # Twice: the second pass reads what the first put in the caches.
    for _ in range(2):
        for start in range(0, len(spans), 300):
            assert_same_traces(spans[start : start + 300])
        for start in range(0, len(logs), 300):
            assert_same_logs(logs[start : start + 300])


def test_scope_name_and_version_are_passed_through() -> None:
    assert_same_traces([span()], scope_name="test", scope_version="9.9")
    assert_same_logs([log()], scope_name="", scope_version="")
    assert_same_traces([span()], scope_name="", scope_version="")


class Code(IntEnum):
    NOT_FOUND = 404


class Verdict(StrEnum):
    DROPPED = "DROPPED"


EDGE_ATTRIBUTES: list[dict[str, Any]] = [
    {},
    {"": ""},
    {"empty": "", "zero": 0, "false": False, "zero.float": 0.0, "negative.zero": -0.0},
    {"unicode": "naïve 日本語 🚀", "ключ": "значение", "nul": "a\x00b"},
    {"neg": -1, "min": INT64_MIN, "max": INT64_MAX, "big": 2**40, "small": -(2**40)},
    {"float": 0.25, "huge": 1e308, "tiny": 5e-324, "inf": math.inf, "-inf": -math.inf},
    {"true": True, "one": 1, "one.float": 1.0},  # equal values of distinct types
    {"list": [], "one": ["x"], "many": ["a", "", "é"], "tuple": ("t", "u")},
    {"mixed": ["a", 1, True, 2.5], "nested": [["a", ["b"]], []], "ints": [1, -1]},
    {"enum": Code.NOT_FOUND, "str.enum": Verdict.DROPPED, "none": None, "bytes": b"\x00\xff"},
    {"long": "x" * 300, "long.list": ["y" * 200], "long.key" * 20: "v", "many.long": ["z" * 90] * 3},
    {f"k{i}": f"v{i}" for i in range(200)},
]


@pytest.mark.parametrize("attributes", EDGE_ATTRIBUTES, ids=range(len(EDGE_ATTRIBUTES)))
def test_edge_attribute_values(attributes: dict[str, Any]) -> None:
    for _ in range(2):  # cold, then from the cache
        assert_same_traces([span(attributes=dict(attributes))])
        assert_same_logs([log(attributes=dict(attributes))])


@pytest.mark.parametrize(
    "fields",
    [
        {"name": "", "kind": SpanKind.UNSPECIFIED},
        {"name": "GET /ünïcødé", "kind": SpanKind.CONSUMER},
        {"parent_span_id": b""},  # a root span
        {"trace_id": b"", "span_id": b""},
        {"trace_id": b"\x01" * 3, "span_id": b"\x02" * 200, "parent_span_id": b"\x03"},
        {"start_time_ns": 0, "end_time_ns": 0},
        {"start_time_ns": 5},
        {"end_time_ns": 2**64 - 1},
        {"status": StatusCode.ERROR, "status_message": "HTTP 503"},
        {"status": StatusCode.OK},
        {"status_message": "message without a code"},
        {"trace_state": "vendor=1,other=two"},
        {"kind": 1000, "status": -1},  # enums outside their declared values
        {"name": "n" * 20000},  # a span longer than two length bytes hold
    ],
)
def test_edge_span_fields(fields: dict[str, Any]) -> None:
    assert_same_traces([span(**fields)])


@pytest.mark.parametrize(
    "fields",
    [
        {"body": ""},
        {"body": "b" * 20000},
        {"event_name": "", "trace_id": b"", "span_id": b""},
        {"time_ns": 0},
        {"severity": Severity.DEBUG},
        {"severity": Severity.ERROR, "trace_id": b"\x01" * 5, "span_id": b"\x02" * 3},
    ],
)
def test_edge_log_fields(fields: dict[str, Any]) -> None:
    assert_same_logs([log(**fields)])


def test_several_resources_in_first_seen_order() -> None:
    empty: Resource = ()
    spans = [span(POD_A, 1), span(POD_B, 2), span(empty, 3), span(POD_A, 4), span(POD_B, 5)]
    assert_same_traces(spans)
    request = ExportTraceServiceRequest.FromString(traces_bytes(spans))
    assert [len(rs.scope_spans[0].spans) for rs in request.resource_spans] == [2, 2, 1]
    assert_same_logs([log(POD_B), log(POD_A), log(empty), log(POD_B)])


def test_equal_resources_in_distinct_tuples_are_one_resource() -> None:
    """Records are grouped by the resource tuple's identity first; equal copies must still merge."""
    copy_a = tuple(list(POD_A))
    assert copy_a == POD_A and copy_a is not POD_A
    spans = [span(POD_A, 1), span(POD_B, 2), span(copy_a, 3), span(POD_A, 4), span(copy_a, 5)]
    assert_same_traces(spans)
    request = ExportTraceServiceRequest.FromString(traces_bytes(spans))
    assert [[s.name for s in rs.scope_spans[0].spans] for rs in request.resource_spans] == [
        ["GET /1", "GET /3", "GET /4", "GET /5"],
        ["GET /2"],
    ]
    assert_same_logs([log(POD_A), log(copy_a), log(POD_B), log(POD_A)])


def test_nothing_to_encode_gives_an_empty_request() -> None:
    assert traces_bytes([]) == encode_traces([]).SerializeToString() == b""
    assert logs_bytes([]) == b""


@pytest.mark.parametrize(
    "fields",
    [
        {"attributes": {"too.big": 2**63}},
        {"attributes": {"too.small": INT64_MIN - 1}},
        {"attributes": {"in.a.list": [2**64]}},
        {"start_time_ns": -1},
        {"end_time_ns": 2**64},
        {"kind": 2**31},
    ],
)
def test_values_protobuf_refuses_fail_the_same_way(fields: dict[str, Any]) -> None:
    record = span(**fields)
    with pytest.raises(ValueError):
        encode_traces([record])
    with pytest.raises(ValueError):
        traces_bytes([record])


def test_a_plain_int_severity_fails_as_encode_logs_does() -> None:
    record = log(severity=9)
    with pytest.raises(AttributeError):
        encode_logs([record])
    with pytest.raises(AttributeError):
        logs_bytes([record])


def test_field_keys_come_from_the_descriptors() -> None:
    assert otlp_wire.tag(trace_pb2.Span, "attributes") == bytes([9 << 3 | 2])
    assert otlp_wire.tag(trace_pb2.Span, "start_time_unix_nano") == bytes([7 << 3 | 1])
    assert otlp_wire.tag(logs_pb2.LogRecord, "observed_time_unix_nano") == bytes([11 << 3 | 1])
    assert otlp_wire.tag(common_pb2.AnyValue, "double_value") == bytes([4 << 3 | 1])
    assert otlp_wire.tag(trace_pb2.Span, "status") == bytes([15 << 3 | 2])


@pytest.mark.parametrize(
    ("value", "encoded"),
    [(0, b"\x00"), (127, b"\x7f"), (128, b"\x80\x01"), (300, b"\xac\x02"), (2**21, b"\x80\x80\x80\x01")],
)
def test_varint(value: int, encoded: bytes) -> None:
    assert otlp_wire.varint(value) == encoded


def test_int64_is_twos_complement() -> None:
    assert otlp_wire.int64(-1) == b"\xff" * 9 + b"\x01"
    assert otlp_wire.int64(INT64_MIN) == b"\x80" * 9 + b"\x01"


# Arbitrary records: every AttrValue type, nested lists, any text (hypothesis leaves out lone
# surrogates, which protobuf cannot encode either).
scalars = (
    st.text(max_size=40)
    | st.booleans()
    | st.integers(INT64_MIN, INT64_MAX)
    | st.floats(allow_nan=False)
    | st.sampled_from(["GET", "shop", "", "200"])
    | st.sampled_from([0, 1, -1, 200, 8080])
)
attr_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4), max_leaves=8)
attribute_keys = st.text(max_size=12) | st.sampled_from(["k", "http.method"])
attributes = st.dictionaries(attribute_keys, attr_values, max_size=8)
resources = st.lists(
    st.tuples(st.sampled_from(["service.name", "k8s.pod.name", ""]), st.text(max_size=10)), max_size=3
).map(tuple)
uint64 = st.integers(0, 2**64 - 1)
ids = st.binary(max_size=20) | st.binary(min_size=16, max_size=16) | st.binary(min_size=8, max_size=8)
span_records = st.builds(
    SpanRecord,
    resource=resources,
    trace_id=ids,
    span_id=ids,
    parent_span_id=ids,
    name=st.text(max_size=30),
    kind=st.sampled_from(SpanKind),
    start_time_ns=uint64,
    end_time_ns=uint64,
    attributes=attributes,
    status=st.sampled_from(StatusCode),
    status_message=st.text(max_size=10),
    trace_state=st.text(max_size=10),
)
log_records = st.builds(
    LogRecord,
    resource=resources,
    time_ns=uint64,
    severity=st.sampled_from(Severity),
    body=st.text(max_size=60),
    attributes=attributes,
    event_name=st.text(max_size=10),
    trace_id=ids,
    span_id=ids,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(span_records, max_size=6))
def test_arbitrary_spans(spans: list[SpanRecord]) -> None:
    assert_same_traces(spans)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(log_records, max_size=6))
def test_arbitrary_logs(logs: list[LogRecord]) -> None:
    assert_same_logs(logs)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(), min_size=1, max_size=5))
def test_any_float_keeps_its_bits(values: list[float]) -> None:
    """NaN included, which message equality cannot compare: the bytes can."""
    record = span(attributes={"f": values[0], "fs": values})
    assert traces_bytes([record]) == encode_traces([record]).SerializeToString()


def test_cache_bound_holds_under_unique_values() -> None:
    cache = FragmentCache(otlp_wire.tag(trace_pb2.Span, "attributes"), max_entries=64, max_per_key=1000)
    for i in range(5000):
        record = span(attributes={"uuid": f"id-{i}", "port": i, "list": [f"h-{i}"], f"key-{i}": "v"})
        expected = encode_traces([record]).SerializeToString()
        assert traces_bytes([record], cache=cache) == expected
        assert len(cache) <= 64 and cache.keys <= 64
    assert cache.clears > 0


def test_cache_bound_holds_in_bytes() -> None:
    cache = FragmentCache(otlp_wire.tag(trace_pb2.Span, "attributes"), max_bytes=10_000, max_fragment=1000)
    for i in range(500):
        record = span(attributes={"value": f"{i:05}" + "x" * 900, "too.long": "y" * 2000})
        assert traces_bytes([record], cache=cache) == encode_traces([record]).SerializeToString()
        assert cache.size_bytes <= 10_000
    assert cache.clears > 0


def test_keys_with_unique_values_stop_being_cached_and_keep_others_cached() -> None:
    cache = FragmentCache(otlp_wire.tag(trace_pb2.Span, "attributes"), max_entries=1000, max_per_key=50)
    for i in range(2000):
        record = span(attributes={"flow.uuid": f"uuid-{i}", "namespace": f"ns-{i % 10}"})
        assert traces_bytes([record], cache=cache) == encode_traces([record]).SerializeToString()
    # The uuids gave up their entries without clearing the namespaces out.
    assert cache.clears == 0
    assert len(cache) == 10
