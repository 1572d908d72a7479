"""Attribute limits: hostile or huge L7 data (URLs, headers, DNS names) stays bounded.

String values are cut to `max_value_length` UTF-8 bytes on a character boundary;
lists to `max_list_items`; a record to `max_attributes` keys (the first ones kept,
which is why mappers add semantic-convention keys before headers). Lone surrogates
and byte strings that are not UTF-8 are replaced, never raised on, because the
OTLP encoder would reject them later. For the same reason numbers from the wire
that OTLP cannot carry are clamped: times to fixed64, counts to int64.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hubble_bridge.errors import ConfigError

UINT64_MAX = (1 << 64) - 1
INT64_MAX = (1 << 63) - 1


@dataclass
class AttributeLimits:
    max_value_length: int = 4096  # UTF-8 bytes per string (and per list item)
    max_attributes: int = 128
    max_list_items: int = 64

    def validate(self) -> None:
        bad = [
            name
            for name in ("max_value_length", "max_attributes", "max_list_items")
            if getattr(self, name) < 1
        ]
        if bad:
            raise ConfigError(f"limits: {', '.join(bad)} must be at least 1")


@dataclass
class LimitCounts:
    """What `apply_limits` had to change, for self-metrics."""

    values: int = 0  # strings truncated or repaired
    lists: int = 0  # lists shortened
    attributes: int = 0  # keys dropped


def apply_limits(
    attrs: dict[str, Any], limits: AttributeLimits, counts: LimitCounts | None = None
) -> dict[str, Any]:
    """Bound `attrs` in place and return it; `counts` (if given) accumulates every change."""
    max_len = limits.max_value_length
    if _within(attrs, max_len, limits.max_list_items) and len(attrs) <= limits.max_attributes:
        return attrs
    for key, value in attrs.items():
        kind = type(value)
        if kind is str:
            if len(value) <= max_len and value.isascii():
                continue
            fixed = limit_str(value, max_len)
        elif kind is list or kind is tuple:
            fixed = _limit_list(value, limits, counts)
            if fixed is value:
                continue
            attrs[key] = fixed
            continue
        elif kind is bytes:
            fixed = limit_str(value.decode("utf-8", "replace"), max_len)
        else:
            continue
        if fixed is not value:
            attrs[key] = fixed
            if counts is not None:
                counts.values += 1
    if len(attrs) > limits.max_attributes:
        extra = list(attrs)[limits.max_attributes :]
        for key in extra:
            del attrs[key]
        if counts is not None:
            counts.attributes += len(extra)
    return attrs


def clamp_ns(ns: int) -> int:
    """A time in OTLP's fixed64 range: a Timestamp may carry any int64 seconds and int32 nanos."""
    return 0 if ns < 0 else min(ns, UINT64_MAX)


def clamp_int64(value: int) -> int:
    """A uint64 from the wire as an OTLP int attribute (int64)."""
    return min(value, INT64_MAX)


def limit_str(value: str, max_bytes: int) -> str:
    """`value` as valid UTF-8 of at most `max_bytes` bytes, cut on a character boundary.

    Returns the same object when nothing had to change.
    """
    if value.isascii():
        return value if len(value) <= max_bytes else value[:max_bytes]
    try:
        encoded = value.encode("utf-8")
        repaired = False
    except UnicodeEncodeError:  # lone surrogates, e.g. from surrogateescape decoding
        encoded = value.encode("utf-8", "replace")
        repaired = True
    if len(encoded) <= max_bytes:
        return encoded.decode("utf-8") if repaired else value
    # "ignore" drops the partial character the cut may leave at the end.
    return encoded[:max_bytes].decode("utf-8", "ignore")


def _within(attrs: dict[str, Any], max_len: int, max_items: int) -> bool:
    """True when no value needs a change: the usual record, checked without per-item calls.

    May say False for a record that needs no change (then the full pass changes nothing);
    never True for one that does.
    """
    texts: list[Any] = []
    for value in attrs.values():
        kind = type(value)
        if kind is str:
            texts.append(value)
        elif kind is list:
            if len(value) > max_items:
                return False
            texts += value
        elif kind is tuple or kind is bytes:
            return False
    try:
        text = "".join(texts)
    except TypeError:  # bytes or numbers among list items: the full check decides
        return False
    # Every string is at most as long as all of them together.
    return len(text) <= max_len and text.isascii()


def _limit_list(
    value: list[Any] | tuple[Any, ...], limits: AttributeLimits, counts: LimitCounts | None
) -> Any:
    items = value
    if len(items) > limits.max_list_items:
        items = items[: limits.max_list_items]
        if counts is not None:
            counts.lists += 1
    fixed_items = None
    for i, item in enumerate(items):
        if type(item) is bytes:
            fixed = limit_str(item.decode("utf-8", "replace"), limits.max_value_length)
        elif type(item) is str:
            fixed = limit_str(item, limits.max_value_length)
        else:
            continue
        if fixed is not item:
            if fixed_items is None:
                fixed_items = list(items)
            fixed_items[i] = fixed
            if counts is not None:
                counts.values += 1
    if fixed_items is not None:
        return fixed_items
    return items
