"""Base-2 exponential histogram buckets, as the OpenTelemetry metrics SDK specification defines them.

At scale s a bucket's bounds grow by base = 2**2**-s: bucket i holds
base**i < |v| <= base**(i+1). Recording starts at MAX_SCALE (20) and lowers the
scale just enough that each side (positive, negative) spans at most MAX_SIZE
(160) buckets; lowering the scale by c merges 2**c neighbours, index i -> i >> c.
So the relative error stays bounded without any bucket configuration.

`ExponentialBuckets` (telemetry) is the point form; the helpers here merge two
of them (several workers) and subtract one from another (delta temporality).
"""

from __future__ import annotations

import math

from hubble_bridge.telemetry import ExponentialBuckets

MAX_SIZE = 160  # the specification's default max_size
MAX_SCALE = 20  # and max_scale


def bucket_index(value: float, scale: int) -> int:
    """The bucket of a positive, finite value; exact at powers of two, where a bucket ends."""
    mantissa, exponent = math.frexp(value)  # value = mantissa * 2**exponent, mantissa in [0.5, 1)
    if mantissa == 0.5:  # value = 2**(exponent - 1) exactly: the upper bound of the bucket below
        if scale <= 0:
            return (exponent - 2) >> -scale
        return ((exponent - 1) << scale) - 1
    if scale <= 0:
        return (exponent - 1) >> -scale
    # log2 near a bucket boundary may be off by one ulp; the specification accepts that.
    return math.ceil(math.log2(value) * (1 << scale)) - 1


def _change_for(low: int, high: int, max_size: int) -> int:
    """How much the scale must drop for indices low..high to fit max_size buckets."""
    change = 0
    while (high >> change) - (low >> change) + 1 > max_size:
        change += 1
    return change


class ExponentialAccumulator:
    """The exponential buckets of one series, recorded value by value."""

    __slots__ = ("max_size", "negative", "positive", "scale", "zero_count")

    def __init__(self, max_size: int = MAX_SIZE, max_scale: int = MAX_SCALE) -> None:
        self.max_size = max_size
        self.scale = max_scale
        self.zero_count = 0
        self.positive: dict[int, int] = {}
        self.negative: dict[int, int] = {}

    def record(self, value: float) -> None:
        if value > 0:
            side = self.positive
        elif value < 0:
            side = self.negative
            value = -value
        else:
            if value == 0:
                self.zero_count += 1
            return  # NaN: the explicit buckets and the sum keep it; no exponential bucket can
        if value == math.inf:
            return
        index = bucket_index(value, self.scale)
        count = side.get(index)
        if count is not None:  # the usual case, once a series has seen its range
            side[index] = count + 1
            return
        if side:
            change = _change_for(min(index, min(side)), max(index, max(side)), self.max_size)
            if change:
                positive = side is self.positive
                self._downscale(change)  # makes new dicts
                index >>= change
                side = self.positive if positive else self.negative
        side[index] = side.get(index, 0) + 1

    def _downscale(self, change: int) -> None:
        self.scale -= change
        self.positive = _shifted(self.positive, change)
        self.negative = _shifted(self.negative, change)

    def buckets(self) -> ExponentialBuckets:
        positive_offset, positive = _dense(self.positive)
        negative_offset, negative = _dense(self.negative)
        return ExponentialBuckets(
            self.scale, self.zero_count, positive_offset, positive, negative_offset, negative
        )


def _dense(side: dict[int, int]) -> tuple[int, list[int]]:
    if not side:
        return 0, []
    low = min(side)
    return low, [side.get(i, 0) for i in range(low, max(side) + 1)]


def _shifted(side: dict[int, int], change: int) -> dict[int, int]:
    """Buckets at a scale `change` lower: index i goes to i >> change."""
    if not change:
        return side
    out: dict[int, int] = {}
    for index, count in side.items():
        out[index >> change] = out.get(index >> change, 0) + count
    return out


def _sparse(offset: int, counts: list[int], change: int) -> dict[int, int]:
    return _shifted({offset + i: c for i, c in enumerate(counts) if c}, change)


def _combine(
    a: ExponentialBuckets, b: ExponentialBuckets, sign: int, max_size: int
) -> ExponentialBuckets | None:
    """a + b (sign 1) or a - b (sign -1) at the coarser scale; None when a - b is negative somewhere."""
    scale = min(a.scale, b.scale)
    sides: list[tuple[dict[int, int], dict[int, int]]] = [
        (
            _sparse(a.positive_offset, a.positive, a.scale - scale),
            _sparse(b.positive_offset, b.positive, b.scale - scale),
        ),
        (
            _sparse(a.negative_offset, a.negative, a.scale - scale),
            _sparse(b.negative_offset, b.negative, b.scale - scale),
        ),
    ]
    combined: list[dict[int, int]] = []
    for left, right in sides:
        out = dict(left)
        for index, count in right.items():
            out[index] = out.get(index, 0) + sign * count
        if any(c < 0 for c in out.values()):
            return None
        combined.append({i: c for i, c in out.items() if c})
    zero = a.zero_count + sign * b.zero_count
    if zero < 0:
        return None
    change = max(
        (_change_for(min(side), max(side), max_size) for side in combined if side),
        default=0,
    )
    if change:
        scale -= change
        combined = [_shifted(side, change) for side in combined]
    positive_offset, positive = _dense(combined[0])
    negative_offset, negative = _dense(combined[1])
    return ExponentialBuckets(scale, zero, positive_offset, positive, negative_offset, negative)


def merge_buckets(
    a: ExponentialBuckets, b: ExponentialBuckets, max_size: int = MAX_SIZE
) -> ExponentialBuckets:
    """Both histograms' observations in one, at the coarser scale (lower still if the span needs it)."""
    size = max(max_size, len(a.positive), len(b.positive), len(a.negative), len(b.negative))
    merged = _combine(a, b, 1, size)
    assert merged is not None  # a sum of counts is never negative
    return merged


def subtract_buckets(later: ExponentialBuckets, earlier: ExponentialBuckets) -> ExponentialBuckets | None:
    """What `later` (cumulative) recorded since `earlier`; None when that is negative somewhere (a reset)."""
    return _combine(later, earlier, -1, max(len(later.positive), len(later.negative), MAX_SIZE))
