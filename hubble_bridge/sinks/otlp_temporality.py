"""Delta temporality for OTLP: cumulative snapshots in, the change since the last accepted export out.

OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE, as the specification's
table has it for the instruments the bridge has (counters, histograms, and
counters read from components at snapshot time, the `observed` families):

- cumulative: everything cumulative (the default);
- delta: counters, histograms and observed counters as deltas;
- lowmemory: counters and histograms as deltas, observed counters cumulative.

Gauges stay gauges. The mapping keeps counting cumulatively (Prometheus needs
that), so the conversion lives here, at the OTLP exporter only: per series it
keeps the cumulative value last *accepted* by the backend, and a point covers
from that export's time to now. `commit` is called only after the backend
accepted the request, so a failed or dropped export is not lost: the next
delta covers both intervals, and nothing is counted twice. A series that went
down (its source restarted) or whose family start time moved is a reset: its
whole cumulative value since the new start is the delta. A new process starts
with no state, so its first deltas run from its own start: the previous
process's exports and this one's never overlap. Series that did not change
are left out, as the SDK leaves out delta streams without measurements.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

from hubble_bridge.mapping.metrics.expo import subtract_buckets
from hubble_bridge.telemetry import (
    HistogramPoint,
    MetricFamily,
    MetricKind,
    MetricsSnapshot,
    NumberPoint,
    PointAttributes,
    Resource,
)

Temporality = Literal["cumulative", "delta", "lowmemory"]
TEMPORALITIES: tuple[Temporality, ...] = ("cumulative", "delta", "lowmemory")
_SeriesKey = tuple[Resource, str, PointAttributes]


@dataclass
class _Last:
    start_time_ns: int  # of the cumulative family the value came from
    point: NumberPoint | HistogramPoint


@dataclass
class Pending:
    """What a conversion would make the new baseline, once the backend accepted it."""

    last: dict[_SeriesKey, _Last]
    times: dict[Resource, int]


def wants_delta(preference: str, family: MetricFamily) -> bool:
    if family.kind is MetricKind.GAUGE or preference == "cumulative":
        return False
    return preference == "delta" or not family.observed


class DeltaConverter:
    def __init__(self, preference: Temporality) -> None:
        self.preference = preference
        self._last: dict[_SeriesKey, _Last] = {}
        self._times: dict[Resource, int] = {}  # the snapshot time of the last accepted export
        self._lock = threading.Lock()

    def convert(self, snapshots: Sequence[MetricsSnapshot]) -> tuple[list[MetricsSnapshot], Pending]:
        """The snapshots as the preference wants them; pass the Pending to commit once accepted."""
        pending = Pending({}, {})
        out: list[MetricsSnapshot] = []
        with self._lock:
            for snapshot in snapshots:
                since = self._times.get(snapshot.resource, 0)
                families = [self._family(snapshot.resource, f, since, pending) for f in snapshot.families]
                pending.times[snapshot.resource] = snapshot.time_ns
                out.append(replace(snapshot, families=families))
        return out, pending

    def commit(self, pending: Pending) -> None:
        with self._lock:
            self._last.update(pending.last)
            self._times.update(pending.times)

    def _family(self, resource: Resource, family: MetricFamily, since: int, pending: Pending) -> MetricFamily:
        if not wants_delta(self.preference, family):
            return family
        points: list[NumberPoint | HistogramPoint] = []
        for point in family.points:
            key = (resource, family.name, point.attributes)
            last = self._last.get(key)
            pending.last[key] = _Last(family.start_time_ns, point)
            base = last.point if last is not None and last.start_time_ns == family.start_time_ns else None
            delta = _difference(point, base)
            if delta is not None:
                points.append(delta)
        # Each point runs from the last accepted export, or from the family's start when it (re)started
        # later; one start per family, as every series of a family was last exported at the same time.
        return replace(
            family,
            points=points,  # type: ignore[arg-type]
            start_time_ns=max(since, family.start_time_ns),
            delta=True,
        )


def _difference(
    point: NumberPoint | HistogramPoint, base: NumberPoint | HistogramPoint | None
) -> NumberPoint | HistogramPoint | None:
    """point - base, the whole point when base is None or larger (a reset), None when nothing changed."""
    if isinstance(point, NumberPoint):
        assert base is None or isinstance(base, NumberPoint)
        value = point.value if base is None or point.value < base.value else point.value - base.value
        return NumberPoint(point.attributes, value) if value else None
    assert base is None or isinstance(base, HistogramPoint)
    if base is not None and point.count >= base.count and len(point.bucket_counts) == len(base.bucket_counts):
        buckets = [a - b for a, b in zip(point.bucket_counts, base.bucket_counts, strict=True)]
        exponential = point.exponential
        if exponential is not None and base.exponential is not None:
            exponential = subtract_buckets(exponential, base.exponential)
        reset = min(buckets, default=0) < 0 or (point.exponential is not None and exponential is None)
        if not reset:
            if point.count == base.count:
                return None
            seen = {(e.value, e.time_ns, e.trace_id) for e in base.exemplars}
            exemplars = [e for e in point.exemplars if (e.value, e.time_ns, e.trace_id) not in seen]
            return HistogramPoint(
                point.attributes,
                point.count - base.count,
                point.sum - base.sum,
                buckets,
                exemplars,
                exponential,
            )
    return point if point.count else None
