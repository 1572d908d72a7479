"""Metric snapshots from several workers merged into one stream, without double counting.

Each flow is read by exactly one worker, so cumulative data adds up:
- counters: values summed per series (same name, same attributes);
- histograms: count, sum and every bucket summed (bounds must agree, as the workers
  share one configuration); per bucket the newest exemplar of any worker is kept;
  exponential buckets are merged at the coarser of the two scales;
- gauges: a level per worker, merged by `GAUGE_MERGE`: "sum" where the parts add up to
  a whole (events queued, requests unanswered), "max" for latencies (the worst worker),
  and "worker" (one series per worker, with a `hubble_otlp.worker` attribute) otherwise.

`SnapshotMerger` adds what this cannot see: a worker that restarts starts its counters
again at zero with a new start time. The last totals of its previous life are kept as an
offset and added to every later snapshot, so merged totals never go backwards.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from hubble_bridge.mapping.metrics.expo import merge_buckets
from hubble_bridge.telemetry import (
    Exemplar,
    HistogramPoint,
    MetricFamily,
    MetricKind,
    MetricsSnapshot,
    NumberPoint,
    PointAttributes,
    Resource,
)

GaugeMerge = Literal["sum", "max", "worker"]
GAUGE_MERGE: dict[str, GaugeMerge] = {
    "hubble_otlp.queue.depth": "sum",
    "hubble_otlp.spans.unanswered": "sum",
    "hubble_otlp.metrics.overflow": "sum",
    "hubble_otlp.export.latency": "max",
}
DEFAULT_GAUGE_MERGE: GaugeMerge = "worker"
WORKER_ATTRIBUTE = "hubble_otlp.worker"


@dataclass
class _Family:
    template: MetricFamily
    start_time_ns: int
    points: dict[PointAttributes, NumberPoint | HistogramPoint] = field(default_factory=dict)


def merge_families(parts: Mapping[str, Iterable[MetricFamily]], *, gauges: bool = True) -> list[MetricFamily]:
    """Families of every part (worker id -> families) merged; the earliest start time wins."""
    merged: dict[tuple[str, MetricKind], _Family] = {}
    for worker, families in parts.items():
        for family in families:
            if family.kind == MetricKind.GAUGE and not gauges:
                continue
            key = (family.name, family.kind)
            into = merged.get(key)
            if into is None:
                into = merged[key] = _Family(family, family.start_time_ns)
            elif family.kind == MetricKind.HISTOGRAM and family.bounds != into.template.bounds:
                raise ValueError(f"{family.name}: histogram bounds differ between workers")
            into.start_time_ns = min(into.start_time_ns, family.start_time_ns)
            _add_points(into, family, worker)
    return [
        MetricFamily(
            f.template.name,
            f.template.description,
            f.template.unit,
            f.template.kind,
            list(f.points.values()),  # type: ignore[arg-type]
            f.start_time_ns,
            f.template.bounds,
            observed=f.template.observed,
        )
        for f in merged.values()
    ]


def _add_points(into: _Family, family: MetricFamily, worker: str) -> None:
    points = into.points
    if family.kind == MetricKind.HISTOGRAM:
        for hp in family.points:
            assert isinstance(hp, HistogramPoint)
            have = points.get(hp.attributes)
            if have is None:
                have = points[hp.attributes] = HistogramPoint(
                    hp.attributes, 0, 0.0, [0] * len(hp.bucket_counts), []
                )
            assert isinstance(have, HistogramPoint)
            have.count += hp.count
            have.sum += hp.sum
            have.bucket_counts = [a + b for a, b in zip(have.bucket_counts, hp.bucket_counts, strict=True)]
            have.exemplars = _newest_per_bucket(have.exemplars + hp.exemplars, family.bounds)
            if hp.exponential is not None:
                theirs = hp.exponential
                have.exponential = (
                    theirs if have.exponential is None else merge_buckets(have.exponential, theirs)
                )
        return
    how = GAUGE_MERGE.get(family.name, DEFAULT_GAUGE_MERGE) if family.kind == MetricKind.GAUGE else "sum"
    for np in family.points:
        assert isinstance(np, NumberPoint)
        attributes = np.attributes
        if how == "worker":
            attributes = (*attributes, (WORKER_ATTRIBUTE, worker))
        have = points.get(attributes)
        if have is None:
            points[attributes] = NumberPoint(attributes, np.value)
        else:
            assert isinstance(have, NumberPoint)
            have.value = max(have.value, np.value) if how == "max" else have.value + np.value


def _newest_per_bucket(exemplars: list[Exemplar], bounds: tuple[float, ...]) -> list[Exemplar]:
    newest: dict[int, Exemplar] = {}
    for exemplar in exemplars:
        bucket = bisect_left(bounds, exemplar.value)
        kept = newest.get(bucket)
        if kept is None or exemplar.time_ns > kept.time_ns:
            newest[bucket] = exemplar
    return [newest[b] for b in sorted(newest)]


def merge_snapshots(parts: Mapping[str, MetricsSnapshot]) -> MetricsSnapshot:
    """Worker id -> snapshot, merged; resource of the first part, time of the newest."""
    if not parts:
        raise ValueError("nothing to merge")
    first = next(iter(parts.values()))
    families = merge_families({w: s.families for w, s in parts.items()})
    return MetricsSnapshot(first.resource, max(s.time_ns for s in parts.values()), families)


def _start_of(snapshot: MetricsSnapshot) -> int | None:
    return min((f.start_time_ns for f in snapshot.families), default=None)


class SnapshotMerger:
    """The latest snapshot of every worker, and offsets for workers that restarted.

    A restart shows as a new start time on the worker's cumulative families. Merged
    families carry `start_time_ns` (the parent's start), earlier than any worker's.
    """

    def __init__(self, resource: Resource, start_time_ns: int) -> None:
        self.resource = resource
        self.start_time_ns = start_time_ns
        self._latest: dict[str, MetricsSnapshot] = {}
        self._offsets: dict[str, list[MetricFamily]] = {}
        self.restarts_seen = 0

    def update(self, worker: str, snapshot: MetricsSnapshot) -> None:
        start = _start_of(snapshot)
        if start is None:
            return  # nothing counted yet: keep the previous life's totals where they are
        previous = self._latest.get(worker)
        if previous is not None and _start_of(previous) != start:
            self._offsets[worker] = merge_families(
                {worker: self._offsets.get(worker, []), f"{worker}.": previous.families}, gauges=False
            )
            self.restarts_seen += 1
        self._latest[worker] = snapshot

    def forget_gauges(self, worker: str) -> None:
        """A worker that is gone reports no levels; its cumulative totals stay."""
        previous = self._latest.get(worker)
        if previous is not None:
            kept = [f for f in previous.families if f.kind != MetricKind.GAUGE]
            self._latest[worker] = MetricsSnapshot(previous.resource, previous.time_ns, kept)

    def merged(self, time_ns: int) -> MetricsSnapshot:
        parts: dict[str, list[MetricFamily]] = {}
        for worker, snapshot in self._latest.items():
            parts[worker] = snapshot.families
            if worker in self._offsets:
                parts[f"{worker}:before-restart"] = self._offsets[worker]
        families = merge_families(parts)
        for family in families:
            family.start_time_ns = self.start_time_ns
        return MetricsSnapshot(self.resource, time_ns, families)


def family_total(snapshot: MetricsSnapshot, name: str) -> float:
    """The sum of a metric's points over all attributes (for a histogram, of its counts)."""
    total: float = 0
    for family in snapshot.families:
        if family.name == name:
            for point in family.points:
                total += point.count if isinstance(point, HistogramPoint) else point.value
    return total
