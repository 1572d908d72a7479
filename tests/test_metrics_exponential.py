"""Base-2 exponential histograms (the metrics SDK specification's aggregation, max_size 160, max_scale 20):
what a series records, under the cardinality limit, merged across workers, and turned into deltas."""

from __future__ import annotations

import math
import random

from hubble_bridge.mapping.merge import merge_families
from hubble_bridge.mapping.metrics import MetricsAggregator, MetricsConfig
from hubble_bridge.mapping.metrics.expo import MAX_SCALE, MAX_SIZE, ExponentialAccumulator, subtract_buckets
from hubble_bridge.mapping.metrics.series import OVERFLOW_ATTRIBUTES, Histogram
from hubble_bridge.sinks.otlp_temporality import DeltaConverter
from hubble_bridge.telemetry import ExponentialBuckets, HistogramPoint, MetricsSnapshot


def holds(buckets: ExponentialBuckets, value: float) -> bool:
    """Whether the bucket the definition puts `value` in (at the final scale) has a count."""
    position = math.log2(abs(value)) * 2.0**buckets.scale
    index = math.ceil(position) - 1
    offset, counts = (
        (buckets.positive_offset, buckets.positive)
        if value > 0
        else (buckets.negative_offset, buckets.negative)
    )
    # log2 may land a hair off a boundary: accept the neighbour there
    candidates = {index, index + 1} if abs(position - round(position)) < 1e-9 else {index}
    return any(0 <= i - offset < len(counts) and counts[i - offset] for i in candidates)


def test_wide_ranges_fit_max_size_and_keep_every_observation() -> None:
    rng = random.Random(15)
    values = [10 ** rng.uniform(-9, 9) for _ in range(2000)] + [
        -(10 ** rng.uniform(-3, 3)) for _ in range(300)
    ]
    acc = ExponentialAccumulator()
    for v in [*values, 0.0, 0.0]:
        acc.record(v)
    b = acc.buckets()
    assert len(b.positive) <= MAX_SIZE and len(b.negative) <= MAX_SIZE
    assert sum(b.positive) + sum(b.negative) + b.zero_count == len(values) + 2
    assert b.zero_count == 2
    assert all(holds(b, v) for v in values)
    # and the scale is the highest at which the range fits: one more would need more than 160 buckets
    low = min(math.log2(v) for v in values if v > 0)
    high = max(math.log2(v) for v in values if v > 0)
    assert (high - low) * 2.0 ** (b.scale + 1) > MAX_SIZE - 1


def test_a_narrow_range_keeps_the_maximum_scale() -> None:
    acc = ExponentialAccumulator()
    for v in (1.0000001, 1.0000002, 1.0000003):
        acc.record(v)
    assert acc.buckets().scale == MAX_SCALE


def test_every_histogram_of_every_family_gets_buckets_under_the_cardinality_limit() -> None:
    config = MetricsConfig(histogram_aggregation="base2_exponential_bucket_histogram", cardinality_limit=2)
    aggregator = MetricsAggregator(config, start_time_ns=1)
    histograms = [s for s in aggregator._series if isinstance(s, Histogram)]
    assert histograms and all(h.exponential is not None for h in histograms)
    h = histograms[0]
    for i in range(5):
        h.observe((f"k{i}",) * len(h.label_names), 0.01 * (i + 1))
    points = h.family(1).points
    overflow = [p for p in points if p.attributes == OVERFLOW_ATTRIBUTES]
    assert len(points) == 3 and len(overflow) == 1
    assert isinstance(overflow[0], HistogramPoint) and overflow[0].exponential is not None
    assert sum(overflow[0].exponential.positive) == overflow[0].count == 3
    assert all(holds(overflow[0].exponential, v) for v in (0.03, 0.04, 0.05))


def test_explicit_only_by_default() -> None:
    aggregator = MetricsAggregator(MetricsConfig(), start_time_ns=1)
    assert all(s.exponential is None for s in aggregator._series if isinstance(s, Histogram))


def _histogram(values: list[float]) -> Histogram:
    h = Histogram("d", "", ("k",), 10, (0.1, 1.0))
    h.use_exponential()
    for v in values:
        h.observe(("a",), v)
    return h


def test_workers_merge_at_the_coarser_scale() -> None:
    narrow = _histogram([1.0, 1.001])  # scale 20 would do, but 0.001..1000 needs a coarse one
    wide = _histogram([0.001, 1000.0])
    merged = merge_families({"w1": [narrow.family(1)], "w2": [wide.family(1)]})
    point = merged[0].points[0]
    assert isinstance(point, HistogramPoint) and point.exponential is not None
    wide_scale = wide.family(1).points[0].exponential.scale  # type: ignore[union-attr]
    assert point.exponential.scale == wide_scale
    assert sum(point.exponential.positive) == point.count == 4
    assert all(holds(point.exponential, v) for v in (1.0, 1.001, 0.001, 1000.0))


def test_deltas_across_a_scale_change_count_each_observation_once() -> None:
    h = _histogram([1.0, 1.01])
    first = h.family(1)
    for v in (0.001, 1000.0, 1.02):  # widens the range: the scale drops
        h.observe(("a",), v)
    second = h.family(1)
    converter = DeltaConverter("delta")
    _out, pending = converter.convert([MetricsSnapshot((), 10, [first])])
    converter.commit(pending)
    out2, _ = converter.convert([MetricsSnapshot((), 20, [second])])
    delta = out2[0].families[0].points[0]
    assert isinstance(delta, HistogramPoint) and delta.exponential is not None
    assert (delta.count, out2[0].families[0].start_time_ns) == (3, 10)
    assert sum(delta.exponential.positive) == 3
    assert all(holds(delta.exponential, v) for v in (0.001, 1000.0, 1.02))
    # a smaller cumulative histogram than the last one is a reset, not a negative delta
    assert subtract_buckets(first.points[0].exponential, second.points[0].exponential) is None  # type: ignore[union-attr, arg-type]
