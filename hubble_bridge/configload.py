"""Build typed configuration dataclasses from plain data (YAML, flags), strictly.

Every component owns a dataclass with named defaults; this module turns nested
dicts into them, coercing strings from flags and environment variables, and
reports every unknown key or bad value with its dotted path in one error.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin, get_type_hints

import yaml

from hubble_bridge.errors import ConfigError

T = TypeVar("T")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def load_yaml(path: str | Path) -> dict[str, Any]:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"invalid YAML in {where}: {getattr(exc, 'problem', exc)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    return data


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge override into a copy of base (override wins)."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def build(cls: type[T], data: dict[str, Any], where: str = "") -> T:
    """Instantiate dataclass `cls` from `data`; unknown keys and bad values raise ConfigError."""
    errors: list[str] = []
    result = _build(cls, data, where, errors)
    if errors:
        raise ConfigError("invalid configuration: " + "; ".join(errors))
    return result


def build_collecting(cls: type[T], data: dict[str, Any], errors: list[str], where: str = "") -> T:
    """As build(), adding problems to `errors` instead of raising; bad values keep their defaults."""
    return _build(cls, data, where, errors)


def _build(cls: type[T], data: Any, where: str, errors: list[str]) -> T:
    if isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        errors.append(f"{where or 'config'}: expected a mapping, got {type(data).__name__}")
        return cls()
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else str(key)
        name = str(key).replace("-", "_")
        if name not in fields:
            errors.append(f"{path}: unknown key (known: {', '.join(sorted(fields))})")
            continue
        before = len(errors)
        coerced = _coerce(hints[name], value, path, errors)
        # A bad value keeps the default, so later checks do not report it again; a section keeps its
        # good keys (its bad ones kept their defaults inside).
        if len(errors) == before or dataclasses.is_dataclass(hints[name]):
            kwargs[name] = coerced
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        errors.append(f"{where or 'config'}: {exc}")
        return cls()


def _coerce(tp: Any, value: Any, path: str, errors: list[str]) -> Any:
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        options = [a for a in get_args(tp) if a is not type(None)]
        if value is None or (value == "" and type(None) in get_args(tp)):
            return None
        if len(options) == 1:
            return _coerce(options[0], value, path, errors)
        for option in options:  # first option that accepts the value without error
            trial: list[str] = []
            result = _coerce(option, value, path, trial)
            if not trial:
                return result
        errors.append(f"{path}: {value!r} is not a valid {tp}")
        return None
    if origin is Literal:
        allowed = get_args(tp)
        if value not in allowed:
            errors.append(f"{path}: {value!r} is not one of {', '.join(map(str, allowed))}")
        return value
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, path, errors)  # type: ignore[arg-type]
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
            return value.lower() in _TRUE
        errors.append(f"{path}: expected true or false, got {value!r}")
        return False
    if tp in (int, float):
        return _number(tp, value, path, errors)
    if tp is str:
        if isinstance(value, (dict, list)):
            errors.append(f"{path}: expected a string, got {type(value).__name__}")
            return ""
        return str(value)
    if origin in (list, tuple, frozenset, set):
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, (list, tuple, set, frozenset)):
            errors.append(f"{path}: expected a list, got {type(value).__name__}")
            return origin()
        args = [a for a in get_args(tp) if a is not Ellipsis] or [Any]
        converted = [_coerce(args[0], item, f"{path}[{i}]", errors) for i, item in enumerate(items)]
        return origin(converted)
    if origin is dict:
        if isinstance(value, str):
            value = parse_key_values(value, path, errors)
        if not isinstance(value, dict):
            errors.append(f"{path}: expected a mapping, got {type(value).__name__}")
            return {}
        return {str(k): str(v) for k, v in value.items()}
    return value


def _number(tp: type[int] | type[float], value: Any, path: str, errors: list[str]) -> int | float:
    """A finite number; for an int, a whole one (1.9 is refused, not truncated to 1)."""
    expected = "an integer" if tp is int else "a number"
    if isinstance(value, (bool, dict, list)):
        errors.append(f"{path}: expected {expected}, got {_shown(value)}")
        return tp()
    try:
        if tp is int and isinstance(value, str) and value.strip().lstrip("+-").isdigit():
            number: Any = int(value)
        elif isinstance(value, str) or tp is float:
            number = float(value)
        else:
            number = value
    except (TypeError, ValueError):
        errors.append(f"{path}: expected {expected}, got {_shown(value)}")
        return tp()
    if isinstance(number, float) and not math.isfinite(number):
        # NaN compares false with every bound, so a NaN timeout would pass every later check and
        # silently stop exports; infinity would wait forever.
        errors.append(f"{path}: expected a finite number, got {_shown(value)}")
        return tp()
    if tp is int:
        if isinstance(number, float):
            if not number.is_integer():
                errors.append(f"{path}: expected an integer, got {_shown(value)}")
                return 0
            return int(number)
        if not isinstance(number, int):
            errors.append(f"{path}: expected an integer, got {_shown(value)}")
            return 0
    return number


def _shown(value: Any) -> str:
    """A value in an error message, cut short: configuration values can be long."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def parse_key_values(text: str | list[str], path: str, errors: list[str]) -> dict[str, str]:
    """ "k=v,k2=v2" (or a list of "k=v") into a dict."""
    items = text.split(",") if isinstance(text, str) else text
    out: dict[str, str] = {}
    for number, item in enumerate(items, 1):
        if not item.strip():
            continue
        key, sep, val = item.partition("=")
        if not sep or not key.strip():
            # Not quoted: the item may be a header with its credential ("Authorization Bearer ...").
            errors.append(f"{path}: item {number} is not key=value")
            continue
        out[key.strip()] = val.strip()
    return out


def to_plain(obj: Any) -> Any:
    """A dataclass tree as plain YAML-able data."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.init}
    if isinstance(obj, (list, tuple, set, frozenset)):
        items = sorted(obj) if isinstance(obj, (set, frozenset)) else obj
        return [to_plain(v) for v in items]
    if isinstance(obj, dict):
        return {str(k): to_plain(v) for k, v in obj.items()}
    return obj


def validate_parts(parts: Iterable[Any], problems: list[str]) -> None:
    """Run each part's validate() and add what it reports to `problems`, so all are reported at once."""
    for part in parts:
        validate = getattr(part, "validate", None)
        if validate is None:
            continue
        try:
            validate()
        except ConfigError as exc:
            problems.append(str(exc).removeprefix("invalid configuration: "))
