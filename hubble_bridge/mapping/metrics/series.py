"""Counters and histograms as plain dicts from label-value tuples, with a cardinality limit.

Beyond `limit` series a metric sends further new label sets to one overflow
series, attributes (("otel.metric.overflow", "true"),), as the OpenTelemetry
SDK does; `overflowed` counts the data points that went there.
"""

from __future__ import annotations

from bisect import bisect_left

from hubble_bridge.mapping.metrics.expo import ExponentialAccumulator
from hubble_bridge.telemetry import (
    Exemplar,
    HistogramPoint,
    MetricFamily,
    MetricKind,
    NumberPoint,
    PointAttributes,
)

OVERFLOW_ATTRIBUTES: PointAttributes = (("otel.metric.overflow", "true"),)
# Prometheus client_golang DefBuckets, which Hubble's duration histograms use.
PROMETHEUS_DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class _Series:
    def __init__(
        self,
        name: str,
        description: str,
        unit: str,
        label_names: tuple[str, ...],
        limit: int,
        omit_empty: bool,
    ) -> None:
        self.name = name
        self.description = description
        self.unit = unit
        self.label_names = label_names
        self.limit = limit
        self.overflowed = 0
        # Semantic-convention metrics leave out attributes without a value; Hubble's keep "".
        self._omit_empty = omit_empty

    def _attributes(self, key: tuple[str, ...] | None) -> PointAttributes:
        if key is None:
            return OVERFLOW_ATTRIBUTES
        if self._omit_empty:
            return tuple((n, v) for n, v in zip(self.label_names, key, strict=True) if v)
        return tuple(zip(self.label_names, key, strict=True))


class Counter(_Series):
    def __init__(
        self, name: str, description: str, label_names: tuple[str, ...], limit: int, unit: str = "1"
    ) -> None:
        super().__init__(name, description, unit, label_names, limit, omit_empty=False)
        self.points: dict[tuple[str, ...], int] = {}
        self._overflow = 0

    def inc(self, key: tuple[str, ...], n: int = 1) -> None:
        try:
            self.points[key] += n
        except KeyError:
            if len(self.points) < self.limit:
                self.points[key] = n
            else:
                self._overflow += n
                self.overflowed += 1

    def admit(self, key: tuple[str, ...]) -> bool:
        """Make key's series ahead of its first inc (at 0); False when beyond the limit."""
        if key not in self.points:
            if len(self.points) >= self.limit:
                return False
            self.points[key] = 0
        return True

    def family(self, start_time_ns: int) -> MetricFamily:
        points = [NumberPoint(self._attributes(k), v) for k, v in self.points.items()]
        if self._overflow:
            points.append(NumberPoint(OVERFLOW_ATTRIBUTES, self._overflow))
        return MetricFamily(self.name, self.description, self.unit, MetricKind.COUNTER, points, start_time_ns)


class Count:
    """A handler adding 1 under one fixed key for each flow of its kind.

    The aggregator admits the key when it plans the kind, right before that
    kind's first flow counts, and then adds to the series inline.
    """

    __slots__ = ("counter", "key")

    def __init__(self, counter: Counter, key: tuple[str, ...]) -> None:
        self.counter = counter
        self.key = key

    def __call__(self, facts: object) -> None:
        self.counter.inc(self.key)


class Histogram(_Series):
    """Explicit buckets: a series is [count per bucket..., sum]; bucket i holds values <= bounds[i]."""

    def __init__(
        self,
        name: str,
        description: str,
        label_names: tuple[str, ...],
        limit: int,
        bounds: tuple[float, ...],
        unit: str = "s",
        omit_empty: bool = False,
    ) -> None:
        super().__init__(name, description, unit, label_names, limit, omit_empty)
        self.bounds = bounds
        self.points: dict[tuple[str, ...] | None, list[float]] = {}
        # Latest exemplar per bucket per series, only for series that ever had one, as
        # (value, time_ns, trace_id): an Exemplar is built only for snapshots, not for every flow.
        self.exemplars: dict[tuple[str, ...] | None, list[tuple[float, int, bytes] | None]] = {}
        # Base-2 exponential buckets per series, beside the explicit ones, once use_exponential is called.
        self.exponential: dict[tuple[str, ...] | None, ExponentialAccumulator] | None = None

    def use_exponential(self) -> None:
        """Also record every observation in base-2 exponential buckets (OTLP's exponential histogram)."""
        if self.exponential is None:
            self.exponential = {}

    def observe(self, key: tuple[str, ...], value: float, trace_id: bytes = b"", time_ns: int = 0) -> None:
        bucket = bisect_left(self.bounds, value)
        series_key: tuple[str, ...] | None = key
        cell = self.points.get(key)
        if cell is None:
            series_key = self._admit(key)
            cell = self.points[series_key]
        cell[bucket] += 1
        cell[-1] += value
        if self.exponential is not None:
            accumulator = self.exponential.get(series_key)
            if accumulator is None:
                accumulator = self.exponential[series_key] = ExponentialAccumulator()
            accumulator.record(value)
        if trace_id:
            slots = self.exemplars.get(series_key)
            if slots is None:
                slots = self.exemplars[series_key] = [None] * (len(self.bounds) + 1)
            slots[bucket] = (value, time_ns, trace_id)

    def _admit(self, key: tuple[str, ...]) -> tuple[str, ...] | None:
        """Create the series for a new key; None (the overflow series) once the limit is reached."""
        regular = len(self.points) - (None in self.points)
        admitted = key if regular < self.limit else None
        if admitted is None:
            self.overflowed += 1
        if admitted not in self.points:
            self.points[admitted] = [0] * (len(self.bounds) + 1) + [0.0]
        return admitted

    def family(self, start_time_ns: int) -> MetricFamily:
        points: list[HistogramPoint] = []
        for key, cell in self.points.items():
            buckets = [int(c) for c in cell[:-1]]
            exemplars = [Exemplar(*e) for e in self.exemplars.get(key, ()) if e is not None]
            point = HistogramPoint(self._attributes(key), sum(buckets), cell[-1], buckets, exemplars)
            if self.exponential is not None:
                accumulator = self.exponential.get(key)
                point.exponential = (accumulator or ExponentialAccumulator()).buckets()
            points.append(point)
        points.sort(key=lambda p: p.attributes == OVERFLOW_ATTRIBUTES)
        return MetricFamily(
            self.name, self.description, self.unit, MetricKind.HISTOGRAM, points, start_time_ns, self.bounds
        )


Series = Counter | Histogram
