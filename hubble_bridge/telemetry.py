"""Telemetry records: what mapping produces and sinks consume.

Plain, slot-based records rather than OpenTelemetry SDK objects, so that the
per-flow path stays cheap (an SDK span costs ~100 us here, a dataclass ~1 us)
and sinks can encode a whole batch at once. Numbering follows OTLP
(SpanKind, StatusCode, SeverityNumber) so encoding is a direct copy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import IntEnum

AttrValue = str | bool | int | float | Sequence[str]
Attributes = dict[str, AttrValue]
# A resource is a sorted tuple of (key, value) pairs, hashable so records can be grouped by it.
Resource = tuple[tuple[str, str], ...]
# Metric point attributes: a hashable tuple of (key, value) pairs in the family's label order. Values are
# strings, but ints where the semantic conventions say int (http.response.status_code, server.port).
PointAttributes = tuple[tuple[str, str | int], ...]


def make_resource(attributes: dict[str, str]) -> Resource:
    """A resource from attributes, dropping empty values."""
    return tuple(sorted((k, v) for k, v in attributes.items() if v))


class SpanKind(IntEnum):
    UNSPECIFIED = 0
    INTERNAL = 1
    SERVER = 2
    CLIENT = 3
    PRODUCER = 4
    CONSUMER = 5


class StatusCode(IntEnum):
    UNSET = 0
    OK = 1
    ERROR = 2


class Severity(IntEnum):
    """OpenTelemetry SeverityNumber values used by the bridge."""

    DEBUG = 5
    INFO = 9
    WARN = 13
    ERROR = 17


@dataclass(slots=True)
class SpanRecord:
    resource: Resource
    trace_id: bytes  # 16 bytes
    span_id: bytes  # 8 bytes
    parent_span_id: bytes  # b"" for a root span
    name: str
    kind: SpanKind
    start_time_ns: int
    end_time_ns: int
    attributes: Attributes
    status: StatusCode = StatusCode.UNSET
    status_message: str = ""
    trace_state: str = ""


@dataclass(slots=True)
class LogRecord:
    resource: Resource
    time_ns: int
    severity: Severity
    body: str
    attributes: Attributes
    event_name: str = ""
    trace_id: bytes = b""
    span_id: bytes = b""


class MetricKind(IntEnum):
    COUNTER = 1  # cumulative, monotonic sum
    GAUGE = 2
    HISTOGRAM = 3  # cumulative, explicit bounds


@dataclass(slots=True)
class Exemplar:
    value: float
    time_ns: int
    trace_id: bytes
    span_id: bytes = b""


@dataclass(slots=True)
class NumberPoint:
    attributes: PointAttributes
    value: float | int


@dataclass(slots=True)
class ExponentialBuckets:
    """Base-2 exponential buckets: bucket i holds base**i < |v| <= base**(i+1), base = 2**2**-scale."""

    scale: int
    zero_count: int
    positive_offset: int = 0
    positive: list[int] = field(default_factory=list)  # counts of buckets positive_offset, +1, ...
    negative_offset: int = 0
    negative: list[int] = field(default_factory=list)


@dataclass(slots=True)
class HistogramPoint:
    attributes: PointAttributes
    count: int
    sum: float
    bucket_counts: list[int]  # len(bounds) + 1, not cumulative
    exemplars: list[Exemplar] = field(default_factory=list)
    # The same observations in exponential buckets, kept when OTLP asks for base-2 exponential
    # histograms; the explicit buckets stay for Prometheus.
    exponential: ExponentialBuckets | None = None


@dataclass(slots=True)
class MetricFamily:
    """One metric with all its points, cumulative since start_time_ns (or, `delta`, since then only).

    `name` is the OpenTelemetry name ("hubble.flows_processed"); the Prometheus
    sink derives Hubble's exposition name from it ("hubble_flows_processed_total").
    """

    name: str
    description: str
    unit: str
    kind: MetricKind
    points: list[NumberPoint] | list[HistogramPoint]
    start_time_ns: int
    bounds: tuple[float, ...] = ()
    # Read from components at snapshot time (an asynchronous counter, in the SDK's terms) rather than
    # counted per flow: low-memory temporality keeps these cumulative.
    observed: bool = False
    delta: bool = False  # points cover start_time_ns..time only (set by the OTLP exporter's conversion)


@dataclass(slots=True)
class MetricsSnapshot:
    resource: Resource
    time_ns: int
    families: list[MetricFamily]
