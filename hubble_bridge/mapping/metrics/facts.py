"""What the metric families read from a flow: per kind of flow once, per flow the rest.

Every family needs the verdict, the event type, the L4/L7 kind or the
protocol; several need is_reply, whether there are extensions or the L7
record's type. These depend only on the few fields the aggregator's kind key
reads (MetricsAggregator.process_flow), so flows with equal kind keys have
equal facts: the aggregator loads FlowFacts once per kind and then only swaps
in each flow, its `seq` (which tells caches keyed on the flow, such as context
label values, that the flow changed) and the per-flow parts several families
share (`l4`, `l7` and the HTTP fields), read once instead of by each.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

from hubble_bridge.api import flow_pb2
from hubble_bridge.mapping.limits import UINT64_MAX, clamp_ns
from hubble_bridge.mapping.metrics.names import (
    DROPPED,
    EVENT_ACCESS_LOG,
    EVENT_CAPTURE,
    EVENT_DROP,
    EVENT_POLICY_VERDICT,
    EVENT_TRACE,
    L7_PROTOCOL,
    VERDICT,
)

_L4_EVENTS = frozenset({EVENT_DROP, EVENT_TRACE, EVENT_POLICY_VERDICT, EVENT_CAPTURE})

# Parts a family may take from FlowFacts (see Family.reads). L4 and HTTP are per flow; IS_REPLY and
# EXTENSIONS (whether the flow has extensions) are kind-level, but only read into the kind key when
# some family uses them, so a family must name them to rely on them.
L4 = "l4"
HTTP = "http"
IS_REPLY = "is_reply"
EXTENSIONS = "extensions"

# Read by MetricsAggregator.process_flow; it must cover every field load() reads but the per-flow parts.
KindKey = tuple[Hashable, ...]


def reply_state(flow: flow_pb2.Flow) -> bool | None:
    """flow.is_reply: None when unset, which Hubble's handlers treat apart from false."""
    if flow.is_reply.value:
        return True
    return False if flow.HasField("is_reply") else None


class FlowFacts:
    """The shared, already-decoded view of the current flow."""

    __slots__ = (
        "_exemplar",
        "_exemplar_seq",
        "direction",
        "event_type",
        "flow",
        "has_extensions",
        "http",
        "http_code",
        "http_method",
        "http_protocol",
        "is_reply",
        "l4",
        "l4_kind",
        "l7",
        "l7_kind",
        "l7_type",
        "latency_ns",
        "protocol",
        "seq",
        "sub_type",
        "verdict",
        "verdict_name",
    )

    def __init__(self) -> None:
        self.seq = 0
        self.flow = flow_pb2.Flow()
        self.verdict = 0
        self.verdict_name = ""
        self.direction = 0
        self.event_type = 0
        self.sub_type = 0
        self.l4_kind: str | None = None  # the l4 oneof arm: "TCP", "UDP", "ICMPv4", ...
        self.l7_kind: str | None = None  # the l7 oneof arm: "dns", "http", "kafka"
        self.l7_type: int | None = None  # flow.l7.type, for flows with an l7 arm only
        self.protocol = ""
        self.is_reply: bool | None = None  # reply_state(flow)
        self.has_extensions = False
        # Per flow:
        self.l7: Any = None  # flow.l7 when the flow has it
        # Only when a family that reads them counts the flow's kind:
        self.l4: Any = None  # the l4 arm's message (flow.l4.TCP, ...), None without an arm
        # HTTP, for kinds with an http arm: the flow.l7.http message and the fields everyone reads
        self.http: Any = None
        self.http_method = ""
        self.http_protocol = ""
        self.http_code = 0
        self.latency_ns = 0  # flow.l7.latency_ns
        self._exemplar: tuple[bytes, int] = (b"", 0)
        self._exemplar_seq = -1

    def load(self, flow: flow_pb2.Flow) -> None:
        self.seq += 1
        self.flow = flow
        verdict = self.verdict = flow.verdict
        self.verdict_name = VERDICT.get(verdict) or str(verdict)
        self.direction = flow.traffic_direction
        l4_kind = self.l4_kind = flow.l4.WhichOneof("protocol")
        self.l4 = getattr(flow.l4, l4_kind) if l4_kind else None
        self.is_reply = reply_state(flow)
        self.has_extensions = flow.HasField("extensions")
        self.l7 = l7 = flow.l7 if flow.HasField("l7") else None
        l7_kind = self.l7_kind = l7.WhichOneof("record") if l7 is not None else None
        self.l7_type = l7.type if l7_kind else None
        if l7_kind == "http":
            self.read_http(l7)
        if flow.HasField("event_type"):
            event = flow.event_type
            event_type = self.event_type = event.type
            self.sub_type = event.sub_type
            if event_type == EVENT_ACCESS_LOG:
                self.protocol = L7_PROTOCOL[l7_kind] if l7_kind else "Unknown L7"
            elif event_type in _L4_EVENTS:
                self.protocol = l4_kind or "Unknown L4"
            else:
                self.protocol = "Unknown flow"
            return
        # Field-masked exporter output often lacks event_type: infer what the rest of the flow shows.
        self.sub_type = 0
        if l7_kind or flow.HasField("l7"):
            self.event_type = EVENT_ACCESS_LOG
        elif verdict == DROPPED:
            self.event_type = EVENT_DROP
        else:
            self.event_type = 0
        if l7_kind:
            self.protocol = L7_PROTOCOL[l7_kind]
        else:
            self.protocol = l4_kind or "Unknown flow"

    def read_http(self, l7: Any) -> None:
        """The HTTP fields of an http flow's l7 record, for the families that share them."""
        http = self.http = l7.http
        self.http_method = http.method
        self.http_protocol = http.protocol
        self.http_code = http.code
        self.latency_ns = l7.latency_ns

    def exemplar(self) -> tuple[bytes, int]:
        """The flow's trace id (b"" without one) and, with one, its time: read once for all histograms."""
        if self._exemplar_seq != self.seq:
            flow = self.flow
            tid = trace_id(flow)
            self._exemplar = (tid, time_ns(flow) if tid else 0)
            self._exemplar_seq = self.seq
        return self._exemplar


# What a metric family does with each flow of one kind (see Family.handler).
Handler = Callable[[FlowFacts], None]


def trace_id(flow: flow_pb2.Flow) -> bytes:
    """The W3C trace id of the flow as 16 bytes, or b"" when absent or malformed."""
    # An unset trace_context reads as trace id "", which fromhex turns into b"": no HasField needed.
    text = flow.trace_context.parent.trace_id
    if not text:
        return b""
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        return b""
    return raw if len(raw) == 16 and any(raw) else b""


def time_ns(flow: flow_pb2.Flow) -> int:
    ts = flow.time
    ns = ts.seconds * 1_000_000_000 + ts.nanos
    # clamp_ns, inline: a time within OTLP's fixed64 range (nearly always) as it is
    return ns if 0 <= ns <= UINT64_MAX else clamp_ns(ns)
