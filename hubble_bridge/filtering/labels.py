"""Hubble label selectors over Cilium labels.

Flow labels look like "k8s:app=foo" or "reserved:host" (source, key, value). Selectors are
Kubernetes label selectors whose keys may carry a Cilium source ("k8s:app=foo"); a key without
one ("app=foo") matches labels of any source. Comma-separated requirements are ANDed.
Supported requirements: `key`, `!key`, `key=v`, `key==v`, `key!=v`, `key in (a,b)`,
`key notin (a,b)`, `key>1`, `key<1`. An empty selector matches everything, as in Kubernetes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from functools import lru_cache

Labels = Sequence[str]
Requirement = Callable[[Labels], bool]

ANY_SOURCE = "any"
_UNSPEC_SOURCE = "unspec"
_RESERVED_SOURCE = "reserved"

_KEY = r"(?:[A-Za-z0-9_.\-]+:)?[A-Za-z0-9](?:[-A-Za-z0-9_./]*[A-Za-z0-9])?"
_VALUE = r"(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?)?"
_VALUE_RE = re.compile(_VALUE)
_NOT_EXISTS = re.compile(rf"\s*!\s*({_KEY})\s*")
_EXISTS = re.compile(rf"\s*({_KEY})\s*")
_EQUALITY = re.compile(rf"\s*({_KEY})\s*(==|=|!=)\s*({_VALUE})\s*")
_SET = re.compile(rf"\s*({_KEY})\s+(in|notin)\s*\(([^()]*)\)\s*")
_NUMERIC = re.compile(rf"\s*({_KEY})\s*([<>])\s*(-?[0-9]+)\s*")


@lru_cache(maxsize=16384)
def parse_label(text: str) -> tuple[str, str, str]:
    """(source, key, value) the way Cilium parses a label string ("$host" is reserved:host)."""
    if text.startswith("$"):
        source, rest = _RESERVED_SOURCE, text[1:]
    elif ":" in text:
        source, _, rest = text.partition(":")
    elif text.startswith("reserved."):
        source, rest = _RESERVED_SOURCE, text[len("reserved.") :]
    else:
        source, rest = _UNSPEC_SOURCE, text
    key, eq, value = rest.partition("=")
    if eq and not key and source == _RESERVED_SOURCE:
        return source, value, ""
    return source, key, value


def _selector_key(key: str) -> tuple[str, str]:
    # Hubble rewrites "src:key" to "src.key" (bare keys to "any.key") and splits at the first dot.
    dotted = key.replace(":", ".", 1) if ":" in key else f"{ANY_SOURCE}.{key}"
    source, _, name = dotted.partition(".")
    return source, name


def _lookup(labels: Labels, source: str, key: str) -> str | None:
    for text in labels:
        label_source, label_key, value = parse_label(text)
        if label_key == key and (source == ANY_SOURCE or label_source == source):
            return value
    return None


def _split_requirements(selector: str) -> list[str]:
    parts: list[str] = []
    depth = 0
    start = 0
    for index, char in enumerate(selector):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                raise ValueError("unbalanced parentheses")
        elif char == "," and depth == 0:
            parts.append(selector[start:index])
            start = index + 1
    if depth:
        raise ValueError("unbalanced parentheses")
    parts.append(selector[start:])
    return parts


def _requirement(text: str) -> Requirement:
    if match := _NOT_EXISTS.fullmatch(text):
        source, key = _selector_key(match[1])
        return lambda labels: _lookup(labels, source, key) is None
    if match := _EXISTS.fullmatch(text):
        source, key = _selector_key(match[1])
        return lambda labels: _lookup(labels, source, key) is not None
    if match := _EQUALITY.fullmatch(text):
        return _set_requirement(match[1], match[2] != "!=", frozenset((match[3],)))
    if match := _SET.fullmatch(text):
        values = [value.strip() for value in match[3].split(",")]
        if values == [""]:
            raise ValueError(f"'{match[2]}' needs at least one value")
        if bad := [value for value in values if not _VALUE_RE.fullmatch(value)]:
            raise ValueError(f"invalid label value {bad[0]!r}")
        return _set_requirement(match[1], match[2] == "in", frozenset(values))
    if match := _NUMERIC.fullmatch(text):
        bound = _int64(match[3])
        if bound is None:
            raise ValueError(f"{match[3][:20]!r} is not a 64-bit integer")
        return _numeric_requirement(match[1], match[2], bound)
    raise ValueError(f"cannot parse requirement {text.strip()!r}")


def _set_requirement(raw_key: str, inside: bool, values: frozenset[str]) -> Requirement:
    source, key = _selector_key(raw_key)
    if inside:
        return lambda labels: _lookup(labels, source, key) in values
    return lambda labels: _lookup(labels, source, key) not in values


def _numeric_requirement(raw_key: str, op: str, bound: int) -> Requirement:
    source, key = _selector_key(raw_key)

    def check(labels: Labels) -> bool:
        value = _lookup(labels, source, key)
        number = _int64(value) if value is not None else None
        if number is None:
            return False
        return number > bound if op == ">" else number < bound

    return check


def _int64(text: str) -> int | None:
    """The value as Go's strconv.ParseInt(text, 10, 64) reads it (Kubernetes compares so), else None."""
    if not re.fullmatch(r"[+-]?[0-9]+", text):
        return None
    # Checked before int(): a label value may hold more digits than int() accepts.
    digits = text.lstrip("+-").lstrip("0") or "0"
    if len(digits) > 19:
        return None
    number = -int(digits) if text.startswith("-") else int(digits)
    return number if -(2**63) <= number < 2**63 else None


def compile_selector(selector: str) -> Requirement:
    """One selector as a predicate over a list of label strings; ValueError if malformed."""
    if not selector.strip():
        return lambda labels: True
    requirements = tuple(_requirement(part) for part in _split_requirements(selector))
    if len(requirements) == 1:
        return requirements[0]
    return lambda labels: all(req(labels) for req in requirements)
