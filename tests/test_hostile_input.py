"""Hostile input: random bytes, random text and extreme-but-valid flows through decoder and mapping.

Properties, whatever arrives:
- the JSON decoder raises FlowDecodeError or nothing;
- bytes protobuf accepts go through every mapper without an exception;
- span and log records stay within AttributeLimits (UTF-8 bytes per string, list items,
  attribute count), hold only encodable values (valid UTF-8, int64 ints, uint64 times, well
  formed ids), and spans never end before they start;
- metric label values are strings (ints where the conventions say so) and no metric grows past
  the cardinality limit plus its one overflow series, even when every flow brings new label values.

Derandomized so a failure reproduces in CI; examples kept few enough for a few seconds.
The strategies and record checks here are shared by the other test_hostile_* files.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Iterator
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hubble_bridge.api import flow_pb2, observer_pb2
from hubble_bridge.errors import FlowDecodeError
from hubble_bridge.filters import FlowFilterSet, filters_from_json
from hubble_bridge.flows.codec import parse_json_line, to_json_line
from hubble_bridge.mapping.limits import AttributeLimits, LimitCounts, apply_limits, limit_str
from hubble_bridge.mapping.logs import LogConfig, flow_log, lost_events_log, node_status_log
from hubble_bridge.mapping.metrics import MetricsAggregator, MetricsConfig
from hubble_bridge.mapping.redact import RedactConfig
from hubble_bridge.mapping.spans import SpanConfig, SpanMapper
from hubble_bridge.mapping.summary import compact_summary
from hubble_bridge.sinks.otlp_encode import encode_logs, encode_metrics, encode_traces
from hubble_bridge.telemetry import HistogramPoint, LogRecord, MetricsSnapshot, NumberPoint, SpanRecord
from tests.conftest import flow_files

GetFlowsResponse = observer_pb2.GetFlowsResponse

HYPOTHESIS = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)
LIMITS = AttributeLimits(max_value_length=64, max_attributes=24, max_list_items=5)
CARDINALITY = 7
INT64 = (-(2**63), 2**63 - 1)
UINT64_MAX = 2**64 - 1
# Every family, with contexts that put endpoint-controlled strings into labels.
FAMILIES = [
    "flow:sourceContext=pod|ip;destinationContext=dns|identity;labelsContext=source_ip,destination_pod",
    "drop:sourceContext=identity;destinationContext=workload-name",
    "tcp:sourceContext=pod-short",
    "port-distribution:destinationContext=app",
    "icmp:sourceContext=reserved-identity",
    "dns:query;sourceContext=namespace",
    "httpV2:exemplars=true;sourceContext=pod;destinationContext=pod-name",
    "kafka:sourceContext=ip",
    "policy:sourceContext=pod",
    "flows-to-world:any-drop;port;destinationContext=ip",
]
FILTERS = filters_from_json(
    [
        {"source_ip": ["10.0.0.0/8", "fd00::1"], "destination_port": ["80", "53"]},
        {"source_label": ["k8s:app=web", "!reserved:world"], "verdict": ["DROPPED"]},
        {"destination_fqdn": ["*.example.com"], "node_name": ["kind-*"]},
        {"http_status_code": ["5+"], "http_path": ["^/api"], "event_type": [{"type": 129}]},
        {"dns_query": ["a.*"], "source_pod": ["shop/"], "tcp_flags": [{"SYN": True}]},
        {"reply": [False], "drop_reason_desc": ["POLICY_DENIED"], "trace_id": ["x"], "uuid": [""]},
    ]
)
FILTER_SETS = [
    FlowFilterSet(FILTERS[:3], FILTERS[3:]),
    FlowFilterSet(FILTERS[3:]),
    FlowFilterSet((), FILTERS),
]

# ---------------------------------------------------------------------------------------------
# Strategies: small domains with their extremes sampled on purpose, so few examples reach them.


def _ints(low: int, high: int, *special: int) -> st.SearchStrategy[int]:
    return st.one_of(st.sampled_from([low, high, low + 1, high - 1, *special]), st.integers(low, high))


U32 = _ints(0, 2**32 - 1, 80, 53, 443)
U64 = _ints(0, UINT64_MAX, 2**63, 2**63 - 1, 1_000_000)
I32 = _ints(-(2**31), 2**31 - 1, -1, 0)
I64 = _ints(*INT64, -1, 0, 1_700_000_000)
# Proto3 enums are open: any int32 may arrive, known or not.
ENUM = st.one_of(st.sampled_from([0, 1, 2, 3, 4, 5, 6, 7, 42, 77, 101, 133, 181, 9999, 60000]), I32)


def _enum(*likely: int) -> st.SearchStrategy[int]:
    """Mostly the values that lead somewhere (two draws in three), else any int32."""
    return st.one_of(st.sampled_from(likely), st.sampled_from(likely), ENUM)


FLOW_TYPE = _enum(0, 1, 2, 2, 2)
L7_TYPE = _enum(1, 2, 2, 3)
DIRECTION = _enum(0, 1, 2)
VERDICT = _enum(1, 2, 3, 4)

_ALPHABETS = [
    st.characters(codec="ascii"),
    st.characters(categories=["Cc", "Cf", "Zl", "Zp"]),  # control, format, line separators
    st.characters(min_codepoint=0x80, max_codepoint=0x10FFFF, exclude_categories=["Cs"]),
    st.sampled_from("=:/.?&#@%-*\\\"' \t\n\r\x00\u2028\ufeff\U0001f600"),
]
SHORT = st.text(st.one_of(*_ALPHABETS), max_size=12)
TEXT = st.one_of(
    st.sampled_from(["", "a", "reserved:world", "k8s:app=web", "GET", "A", "user-agent", "x-request-id"]),
    SHORT,
    # Long strings by repetition: hypothesis would spend a long time drawing them char by char.
    st.builds(lambda s, n: (s or "é") * n, SHORT, st.integers(50, 3000)),
)
# Many kept header names, so that a record can carry more attributes than the limit allows.
KEPT_HEADERS = tuple(f"x-h{i}" for i in range(30))
REDACT = RedactConfig(keep_headers=("user-agent", "x-request-id", "authorization", *KEPT_HEADERS))
HEADER_NAMES = st.one_of(
    st.sampled_from(["traceparent", "tracestate", "x-request-id", "b3", "x-b3-traceid", "x-b3-spanid",
                     "user-agent", "authorization", "cookie", "X-Request-Id", ""]),
    st.sampled_from(KEPT_HEADERS),
)  # fmt: skip
HEX_IDS = st.one_of(
    st.sampled_from(["", "0" * 32, "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", "zz" * 16]), TEXT
)
TRACEPARENTS = st.one_of(
    st.sampled_from(["00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "ff-" + "1" * 52]),
    st.builds(lambda t, s: f"00-{t}-{s}-01", HEX_IDS, HEX_IDS),
    TEXT,
)


def _lists(elements: st.SearchStrategy[Any], big: int = 200) -> st.SearchStrategy[list[Any]]:
    # Mostly short; sometimes far beyond any limit, by repetition to stay cheap.
    return st.one_of(
        st.lists(elements, max_size=4),
        st.builds(lambda items, n: (items or [""]) * n, st.lists(elements, min_size=1, max_size=3),
                  st.integers(big // 4, big)),
    )  # fmt: skip


@st.composite
def timestamps(draw: st.DrawFn) -> Timestamp:
    seconds = draw(st.one_of(st.sampled_from([0, 1_700_000_000, 253402300799, 2**40]), I64))
    nanos = draw(st.one_of(st.sampled_from([0, 999_999_999]), I32))
    return Timestamp(seconds=seconds, nanos=nanos)


@st.composite
def endpoints(draw: st.DrawFn) -> flow_pb2.Endpoint:
    ep = flow_pb2.Endpoint(
        ID=draw(U32),
        identity=draw(st.one_of(st.sampled_from([0, 1, 2, 7, 11]), U32)),
        namespace=draw(TEXT),
        pod_name=draw(TEXT),
        cluster_name=draw(TEXT),
    )
    ep.labels.extend(draw(_lists(TEXT, 300)))
    for _ in range(draw(st.integers(0, 2))):
        ep.workloads.add(name=draw(TEXT), kind=draw(st.one_of(st.sampled_from(["Deployment", "job"]), TEXT)))
    return ep


@st.composite
def l4s(draw: st.DrawFn) -> flow_pb2.Layer4 | None:
    arm = draw(st.sampled_from([None, "TCP", "UDP", "SCTP", "ICMPv4", "ICMPv6", "VRRP", "IGMP"]))
    l4 = flow_pb2.Layer4()
    if arm is None:
        return None
    if arm in ("TCP", "UDP", "SCTP"):
        ports = getattr(l4, arm)
        ports.source_port, ports.destination_port = draw(U32), draw(U32)
        if arm == "TCP" and draw(st.booleans()):
            for flag in ("FIN", "SYN", "RST", "ACK", "NS"):
                setattr(l4.TCP.flags, flag, draw(st.booleans()))
    elif arm.startswith("ICMP"):
        icmp = getattr(l4, arm)
        icmp.type, icmp.code = draw(U32), draw(U32)
    elif arm == "VRRP":
        l4.VRRP.type, l4.VRRP.vrid, l4.VRRP.priority = draw(U32), draw(U32), draw(U32)
    else:
        l4.IGMP.type, l4.IGMP.group_address = draw(U32), draw(TEXT)
    return l4


@st.composite
def l7s(draw: st.DrawFn) -> flow_pb2.Layer7 | None:
    record = draw(st.sampled_from([None, "none", "http", "http", "dns", "kafka"]))
    if record is None:
        return None
    l7 = flow_pb2.Layer7(type=draw(L7_TYPE), latency_ns=draw(U64))
    if record == "http":
        http = l7.http
        http.code, http.method = draw(U32), draw(st.one_of(st.sampled_from(["GET", "POST", "get"]), TEXT))
        http.url = draw(st.one_of(st.sampled_from(["http://u:p@h/p?q=1#f", "/a?b=c&d", "//x@y"]), TEXT))
        http.protocol = draw(st.one_of(st.sampled_from(["HTTP/1.1", "HTTP/2", "HTTP/"]), TEXT))
        headers = draw(
            st.one_of(
                _lists(st.tuples(HEADER_NAMES, st.one_of(TRACEPARENTS, TEXT)), 200),
                st.builds(lambda value: [(name, value) for name in KEPT_HEADERS], TEXT),
            )
        )
        for key, value in headers:
            http.headers.add(key=key, value=value)
    elif record == "dns":
        dns = l7.dns
        dns.query, dns.ttl, dns.rcode = draw(TEXT), draw(U32), draw(U32)
        dns.observation_source = draw(TEXT)
        for name in ("ips", "cnames", "qtypes", "rrtypes"):
            getattr(dns, name).extend(draw(_lists(TEXT)))
    elif record == "kafka":
        kafka = l7.kafka
        kafka.error_code, kafka.api_version, kafka.correlation_id = draw(I32), draw(I32), draw(I32)
        kafka.api_key = draw(st.one_of(st.sampled_from(["produce", "fetch"]), TEXT))
        kafka.topic = draw(TEXT)
    return l7


def _policies(draw: st.DrawFn, target: Any) -> None:
    for _ in range(draw(st.sampled_from([0, 0, 1, 3, 80]))):
        policy = target.add(name=draw(SHORT), namespace=draw(SHORT), revision=draw(U64), kind=draw(SHORT))
        policy.labels.extend(draw(st.lists(SHORT, max_size=3)))


@st.composite
def flows(draw: st.DrawFn) -> flow_pb2.Flow:
    flow = flow_pb2.Flow(
        uuid=draw(st.one_of(st.just(""), TEXT)),
        verdict=draw(VERDICT),
        drop_reason=draw(U32),
        drop_reason_desc=draw(ENUM),
        auth_type=draw(ENUM),
        Type=draw(FLOW_TYPE),
        node_name=draw(TEXT),
        traffic_direction=draw(DIRECTION),
        policy_match_type=draw(U32),
        trace_observation_point=draw(ENUM),
        trace_reason=draw(ENUM),
        debug_capture_point=draw(ENUM),
        sock_xlate_point=draw(ENUM),
        socket_cookie=draw(U64),
        cgroup_id=draw(U64),
        proxy_port=draw(U32),
        Summary=draw(TEXT),
    )
    if draw(st.booleans()):
        flow.time.CopyFrom(draw(timestamps()))
    if draw(st.booleans()):
        flow.IP.source, flow.IP.destination = draw(TEXT), draw(TEXT)
        flow.IP.ipVersion, flow.IP.encrypted = draw(ENUM), draw(st.booleans())
    if draw(st.booleans()):
        flow.ethernet.source, flow.ethernet.destination = draw(SHORT), draw(SHORT)
    for name, strategy in (("l4", l4s()), ("l7", l7s())):
        value = draw(strategy)
        if value is not None:
            getattr(flow, name).CopyFrom(value)
    for side in ("source", "destination"):
        if draw(st.booleans()):
            getattr(flow, side).CopyFrom(draw(endpoints()))
        if draw(st.booleans()):
            service = getattr(flow, f"{side}_service")
            service.name, service.namespace = draw(TEXT), draw(SHORT)
        getattr(flow, f"{side}_names").extend(draw(_lists(TEXT)))
    flow.node_labels.extend(draw(_lists(SHORT)))
    if draw(st.booleans()):
        flow.event_type.type = draw(st.one_of(st.sampled_from([1, 4, 5, 7, 129, 3]), I32))
        flow.event_type.sub_type = draw(st.one_of(st.sampled_from([0, 3, 133, 181]), I32))
    if draw(st.booleans()):
        flow.is_reply.value = draw(st.booleans())
    if draw(st.booleans()):
        flow.trace_context.parent.trace_id = draw(HEX_IDS)
    if draw(st.booleans()):
        flow.ip_trace_id.trace_id, flow.ip_trace_id.ip_option_type = draw(U64), draw(U32)
    if draw(st.booleans()):
        flow.interface.index, flow.interface.name = draw(U32), draw(SHORT)
    for name in ("ingress_allowed_by", "egress_allowed_by", "ingress_denied_by", "egress_denied_by"):
        _policies(draw, getattr(flow, name))
    flow.policy_log.extend(draw(st.lists(SHORT, max_size=2)))
    return flow


@st.composite
def responses(draw: st.DrawFn) -> GetFlowsResponse:
    response = GetFlowsResponse(node_name=draw(TEXT))
    if draw(st.booleans()):
        response.time.CopyFrom(draw(timestamps()))
    kind = draw(st.sampled_from(["flow", "flow", "flow", "lost_events", "node_status", None]))
    if kind == "flow":
        response.flow.CopyFrom(draw(flows()))
    elif kind == "lost_events":
        lost = response.lost_events
        lost.source, lost.num_events_lost = draw(ENUM), draw(U64)
        if draw(st.booleans()):
            lost.cpu.value = draw(I32)
        for name in ("first", "last"):
            if draw(st.booleans()):
                getattr(lost, name).CopyFrom(draw(timestamps()))
    elif kind == "node_status":
        status = response.node_status
        status.state_change, status.message = draw(ENUM), draw(TEXT)
        status.node_names.extend(draw(_lists(TEXT)))
    return response


@st.composite
def exchanges(draw: st.DrawFn) -> list[GetFlowsResponse]:
    """A REQUEST and its RESPONSE as Hubble reports them (5-tuple and endpoints swapped), so they join."""
    request = draw(flows())
    request.Type = flow_pb2.L7
    request.l7.type = flow_pb2.REQUEST
    if not request.l7.WhichOneof("record"):
        request.l7.http.method = "GET"
    response = flow_pb2.Flow()
    response.CopyFrom(request)
    response.l7.type = flow_pb2.RESPONSE
    response.l7.latency_ns = draw(U64)
    if request.l7.WhichOneof("record") == "http":
        response.l7.http.code = draw(st.one_of(st.sampled_from([200, 404, 503]), U32))
    ip = response.IP
    ip.source, ip.destination = request.IP.destination, request.IP.source
    arm = request.l4.WhichOneof("protocol")
    if arm in ("TCP", "UDP", "SCTP"):
        ports = getattr(response.l4, arm)
        ports.source_port, ports.destination_port = ports.destination_port, ports.source_port
    response.source.CopyFrom(request.destination)
    response.destination.CopyFrom(request.source)
    if draw(st.booleans()):
        response.time.CopyFrom(draw(timestamps()))
    node = draw(st.one_of(st.just(""), TEXT))
    return [GetFlowsResponse(flow=request, node_name=node), GetFlowsResponse(flow=response, node_name=node)]


EVENTS = st.lists(st.one_of(responses().map(lambda r: [r]), exchanges()), min_size=1, max_size=5).map(
    lambda groups: [event for group in groups for event in group]
)


# ---------------------------------------------------------------------------------------------
# Invariants


def _check_string(value: str, where: str, max_bytes: int) -> None:
    assert isinstance(value, str), where
    encoded = value.encode("utf-8")  # raises on lone surrogates: the OTLP encoder would too
    assert len(encoded) <= max_bytes, f"{where}: {len(encoded)} UTF-8 bytes > {max_bytes}"


def check_attributes(attributes: dict[str, Any], limits: AttributeLimits, where: str) -> None:
    assert len(attributes) <= limits.max_attributes, f"{where}: {len(attributes)} attributes"
    for key, value in attributes.items():
        _check_string(key, f"{where} key", 1024)
        at = f"{where}[{key}]"
        if isinstance(value, str):
            _check_string(value, at, limits.max_value_length)
        elif isinstance(value, bool | float):
            pass
        elif isinstance(value, int):
            assert INT64[0] <= value <= INT64[1], f"{at}: {value} is not an int64"
        else:
            assert isinstance(value, list | tuple), f"{at}: unexpected {type(value).__name__}"
            assert len(value) <= limits.max_list_items, f"{at}: {len(value)} items"
            for item in value:
                _check_string(item, at, limits.max_value_length)


def check_resource(resource: tuple[tuple[str, str], ...], limits: AttributeLimits, where: str) -> None:
    check_attributes(dict(resource), limits, f"{where} resource")


def _check_time(ns: int, where: str) -> None:
    assert isinstance(ns, int) and 0 <= ns <= UINT64_MAX, f"{where}: {ns} is not a uint64 time"


def check_span(span: SpanRecord, limits: AttributeLimits) -> None:
    where = f"span {span.name[:40]!r}"
    check_attributes(span.attributes, limits, where)
    check_resource(span.resource, limits, where)
    _check_string(span.name, f"{where} name", limits.max_value_length)
    _check_string(span.status_message, f"{where} status", limits.max_value_length)
    _check_string(span.trace_state, f"{where} trace_state", 512)
    _check_time(span.start_time_ns, f"{where} start")
    _check_time(span.end_time_ns, f"{where} end")
    assert span.end_time_ns >= span.start_time_ns, f"{where}: negative duration"
    assert len(span.trace_id) == 16 and any(span.trace_id), f"{where}: trace id {span.trace_id!r}"
    assert len(span.span_id) == 8 and any(span.span_id), f"{where}: span id {span.span_id!r}"
    assert span.parent_span_id == b"" or (len(span.parent_span_id) == 8 and any(span.parent_span_id))


def check_log(record: LogRecord, limits: AttributeLimits) -> None:
    where = f"log {record.event_name}"
    check_attributes(record.attributes, limits, where)
    check_resource(record.resource, limits, where)
    _check_string(record.body, f"{where} body", limits.max_value_length)
    _check_time(record.time_ns, f"{where} time")
    assert record.trace_id == b"" or (len(record.trace_id) == 16 and any(record.trace_id))


def check_metrics(aggregator: MetricsAggregator) -> None:
    for family in aggregator.snapshot():
        assert len(family.points) <= CARDINALITY + 1, f"{family.name}: {len(family.points)} series"
        assert sum(p.attributes == (("otel.metric.overflow", "true"),) for p in family.points) <= 1
        for point in family.points:
            for key, value in point.attributes:
                # strings, or ints in int64 where the conventions say int (status code, port)
                assert isinstance(key, str), f"{family.name}: {key!r}"
                if isinstance(value, int):
                    assert INT64[0] <= value <= INT64[1], f"{family.name}: {key}={value!r}"
                else:
                    assert isinstance(value, str), f"{family.name}: {key}={value!r}"
                    value.encode("utf-8")
            if isinstance(point, NumberPoint):
                assert 0 <= point.value <= INT64[1], f"{family.name}: counter value {point.value}"
            else:
                assert isinstance(point, HistogramPoint)
                assert point.count == sum(point.bucket_counts) and point.sum >= 0
                for exemplar in point.exemplars:
                    _check_time(exemplar.time_ns, f"{family.name} exemplar")
                    assert len(exemplar.trace_id) == 16


class Mapping:
    """Every mapper the bridge runs, fed the same events, checking each record as it comes out;
    `finish` also encodes everything as the OTLP sinks would, the final judge of "encodable"."""

    def __init__(self) -> None:
        self.spans = SpanMapper(
            SpanConfig(limits=LIMITS, redact=REDACT, l3l4_spans=True, max_pending=5, join_window_s=1.0),
            rng=random.Random(1),
        )
        self.metrics = MetricsAggregator(
            MetricsConfig(families=list(FAMILIES), cardinality_limit=CARDINALITY), 1
        )
        self.logs = LogConfig(limits=LIMITS, redact=REDACT, all_flows=True)
        self.span_records: list[SpanRecord] = []
        self.log_records: list[LogRecord] = []

    def feed(self, events: Iterable[GetFlowsResponse]) -> None:
        for event in events:
            self.metrics.process(event)
            self._spans(self.spans.process(event))
            self._spans(self.spans.expire(self.spans.watermark_ns))
            kind = event.WhichOneof("response_types")
            if kind == "flow":
                record = flow_log(event, self.logs)
                assert record is not None  # all_flows: every flow makes a record
            elif kind == "lost_events":
                record = lost_events_log(event, self.logs)
            elif kind == "node_status":
                record = node_status_log(event, self.logs)
            else:
                record = None
            if record is not None:
                check_log(record, LIMITS)
                self.log_records.append(record)
            assert isinstance(compact_summary(event), str)
            assert isinstance(compact_summary(event, lambda url: url.upper()), str)
            for filter_set in FILTER_SETS:
                assert isinstance(filter_set.matches(event), bool)

    def finish(self) -> None:
        self._spans(self.spans.drain())
        assert self.spans.pending == 0
        check_metrics(self.metrics)
        snapshot = MetricsSnapshot((("service.name", "hubble-otlp"),), 2, self.metrics.snapshot())
        for request in (
            encode_traces(self.span_records),
            encode_logs(self.log_records),
            encode_metrics([snapshot]),
        ):
            request.SerializeToString()

    def _spans(self, spans: list[SpanRecord]) -> None:
        for span in spans:
            check_span(span, LIMITS)
        self.span_records += spans


# ---------------------------------------------------------------------------------------------
# (1) random bytes and text


def _recorded_lines(per_file: int = 4) -> list[bytes]:
    lines: list[bytes] = []
    for path in flow_files():
        lines += path.read_bytes().splitlines()[:per_file]
    return lines


RECORDED_LINES = _recorded_lines()
RECORDED_WIRE = [parse_json_line(line).SerializeToString() for line in RECORDED_LINES]  # type: ignore[union-attr]


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    """A recorded event with a few bytes set, inserted, deleted or cut off: mostly still parses."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["set", "set", "insert", "delete", "truncate"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "set" and data:
            data[at] = draw(st.integers(0, 255))
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 8))]
        else:
            del data[at:]
    return bytes(data)


@HYPOTHESIS
@given(st.one_of(st.binary(max_size=300), st.text(max_size=300), mutated(RECORDED_LINES)))
def test_decoder_raises_only_flow_decode_error_on_random_input(line: bytes | str) -> None:
    try:
        parse_json_line(line)
    except FlowDecodeError as exc:
        assert str(exc) and "\n" not in str(exc)  # one line, as the CLI prints it


def _json_values(depth: int) -> st.SearchStrategy[Any]:
    leaves = st.one_of(
        st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False), SHORT,
        st.sampled_from(["DROPPED", "1e400", "-1", "18446744073709551616", "2023-13-99T00:00:00Z", "NaN"]),
    )  # fmt: skip

    def nest(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        return st.lists(inner, max_size=3) | st.dictionaries(SHORT, inner, max_size=3)

    return st.recursive(leaves, nest, max_leaves=depth)


_FLOW_KEYS = ["time", "verdict", "IP", "l4", "source", "destination", "Type", "node_name", "l7",
              "is_reply", "event_type", "drop_reason_desc", "trace_context", "Summary", "uuid"]  # fmt: skip


@HYPOTHESIS
@given(
    st.dictionaries(st.sampled_from(_FLOW_KEYS), _json_values(6), max_size=5),
    st.sampled_from(["flow", "bare", "lost_events", "node_status", "agent_event"]),
)
def test_decoder_raises_only_flow_decode_error_on_wrongly_typed_json(
    fields: dict[str, Any], shape: str
) -> None:
    if shape == "bare":
        event: Any = fields
    elif shape == "flow":
        event = {"flow": fields, "node_name": "n", "time": "2024-01-01T00:00:00Z"}
    else:
        event = {shape: fields}
    try:
        decoded = parse_json_line(json.dumps(event))  # json, not orjson: it writes ints beyond 64 bits
    except FlowDecodeError:
        return
    if decoded is not None:
        Mapping().feed([decoded])


@HYPOTHESIS
@given(st.lists(st.one_of(st.binary(max_size=200), mutated(RECORDED_WIRE)), min_size=1, max_size=8))
def test_random_wire_bytes_map_without_error(payloads: list[bytes]) -> None:
    mapping = Mapping()
    mapping.feed(_parsed(payloads))
    mapping.finish()


def _parsed(payloads: Iterable[bytes]) -> Iterator[GetFlowsResponse]:
    for payload in payloads:
        try:
            yield GetFlowsResponse.FromString(payload)
        except DecodeError:
            continue


# ---------------------------------------------------------------------------------------------
# (2) valid but extreme messages


@settings(HYPOTHESIS, max_examples=40)
@given(EVENTS)
def test_extreme_events_map_within_limits(events: list[GetFlowsResponse]) -> None:
    mapping = Mapping()
    # Twice: the second round finds requests pending and joins responses against them.
    mapping.feed(events + events)
    mapping.finish()


@settings(HYPOTHESIS, max_examples=30)
@given(st.lists(flows(), min_size=1, max_size=3))
def test_extreme_flows_survive_the_wire_and_json_round_trips(flow_list: list[flow_pb2.Flow]) -> None:
    events = [GetFlowsResponse(flow=flow, node_name="n") for flow in flow_list]
    wire = [GetFlowsResponse.FromString(e.SerializeToString()) for e in events]
    assert wire == events
    decoded: list[GetFlowsResponse] = []
    for event in events:
        try:
            line = to_json_line(event)
        except (json_format.SerializeToJsonError, ValueError):  # Timestamps outside 0001..9999 have no JSON
            continue
        again = parse_json_line(line)
        assert again is not None
        decoded.append(again)
    mapping = Mapping()
    mapping.feed(wire + decoded)
    mapping.finish()


# ---------------------------------------------------------------------------------------------
# The bounding functions themselves, on any Python string (lone surrogates included)

_ANY_CHAR = st.one_of(st.characters(), st.characters(categories=["Cs"]))
ANY_TEXT = st.one_of(
    st.text(_ANY_CHAR, max_size=40),
    st.builds(lambda s, n: s * n, st.text(_ANY_CHAR, min_size=1, max_size=3), st.integers(1, 500)),
)


@HYPOTHESIS
@given(ANY_TEXT, st.integers(1, 300))
def test_limit_str_is_valid_utf8_within_the_bytes_and_a_prefix(value: str, max_bytes: int) -> None:
    cut = limit_str(value, max_bytes)
    encoded = cut.encode("utf-8")  # never raises: surrogates were replaced
    repaired = value.encode("utf-8", "replace").decode("utf-8")
    if len(repaired.encode("utf-8")) <= max_bytes:
        assert cut == repaired
    else:  # cut on a character boundary: at most a partial character (< 4 bytes) lost
        assert repaired.startswith(cut) and max_bytes - 4 < len(encoded) <= max_bytes


@HYPOTHESIS
@given(
    st.dictionaries(
        SHORT,
        st.one_of(ANY_TEXT, st.binary(max_size=50), st.lists(st.one_of(ANY_TEXT, st.binary()), max_size=9),
                  st.integers(), st.booleans(), st.floats()),
        max_size=40,
    ),
    st.integers(1, 100), st.integers(1, 30), st.integers(1, 10),
)  # fmt: skip
def test_apply_limits_bounds_any_attributes(
    attrs: dict[str, Any], length: int, count: int, items: int
) -> None:
    limits = AttributeLimits(max_value_length=length, max_attributes=count, max_list_items=items)
    before = dict(attrs)
    counts = LimitCounts()
    out = apply_limits(attrs, limits, counts)
    assert out is attrs and list(out) == list(before)[:count]
    assert counts.attributes == max(len(before) - count, 0)
    for key, value in out.items():
        if isinstance(value, list | tuple):
            assert len(value) <= items
            for item in value:
                assert isinstance(item, str) and len(item.encode("utf-8")) <= length
        elif isinstance(value, str):
            assert len(value.encode("utf-8")) <= length
        else:
            assert value is before[key]
