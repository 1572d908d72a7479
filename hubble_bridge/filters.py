"""Hubble FlowFilter semantics, shared by replay, file sources and the sidecar.

The import point for hubble_bridge.filtering: FlowFilterSet (whitelist minus blacklist),
the two errors, and filters_from_json for the protojson form users write
(`{"destination_port": ["80"], "verdict": ["DROPPED"]}`, one object or a list).
"""

from __future__ import annotations

from typing import Any

import orjson
from google.protobuf import json_format

from hubble_bridge.api import flow_pb2
from hubble_bridge.filtering.compile import FlowFilterSet
from hubble_bridge.filtering.errors import InvalidFilterError, UnsupportedFilterError

__all__ = [
    "FlowFilterSet",
    "InvalidFilterError",
    "UnsupportedFilterError",
    "filters_from_json",
    "source_filters",
]


def source_filters(whitelist: list[Any], blacklist: list[Any]) -> FlowFilterSet | None:
    """The source's configured filters (protojson objects) as one set; None when there are none."""
    allow = filters_from_json(whitelist) if whitelist else []
    deny = filters_from_json(blacklist) if blacklist else []
    if not allow and not deny:
        return None
    return FlowFilterSet(allow, deny)


def filters_from_json(value: str | bytes | list[Any] | dict[str, Any]) -> list[flow_pb2.FlowFilter]:
    """FlowFilters from protojson: an object, a list of objects, or JSON text of either.

    List items may themselves be JSON text (one repeated flag value each).
    """
    items = _load(value, "filter JSON")
    if not isinstance(items, list):
        items = [items]
    filters: list[flow_pb2.FlowFilter] = []
    for index, item in enumerate(items):
        where = f"filter JSON[{index}]"
        item = _load(item, where)
        if not isinstance(item, dict):
            raise _error(where, f"expected a JSON object, got {type(item).__name__}")
        try:
            filters.append(json_format.ParseDict(item, flow_pb2.FlowFilter()))
        except json_format.ParseError as exc:
            raise _error(where, str(exc).splitlines()[0]) from None
        except (TypeError, ValueError, AttributeError) as exc:
            raise _error(where, f"invalid value: {exc}") from None
    return filters


def _load(value: Any, where: str) -> Any:
    if not isinstance(value, str | bytes):
        return value
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise _error(where, f"invalid JSON: {exc}") from None


def _error(where: str, reason: str) -> InvalidFilterError:
    exc = InvalidFilterError("", None, reason)
    exc.where = where
    return exc
