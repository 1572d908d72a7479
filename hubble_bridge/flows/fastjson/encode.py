"""Messages to protojson dicts: `json_format.MessageToDict`'s output, several times faster.

The same idea as decoding: a table per message type and options, derived once
from the descriptors, says how each set field becomes JSON; `ListFields()` gives
only what is set, as json_format walks it. Well-known types (Timestamp,
wrappers, Any...) keep json_format's own forms, and a message type this does
not cover (maps, extensions, closed enums) goes to json_format whole.
"""

from __future__ import annotations

import base64
import math
import threading
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.internal import type_checkers
from google.protobuf.message import Message

from hubble_bridge.flows.fastjson.decode import INT64_TYPES

__all__ = ["message_to_dict"]

_T = FieldDescriptor

# How a set field's value becomes JSON.
_O_PASS, _O_MSG, _O_WKT, _O_ENUM, _O_INT64, _O_BYTES, _O_HEX, _O_DOUBLE, _O_FLOAT = range(9)
_Options = tuple[bool, bool, frozenset[str]]
_SPECIAL_FLOATS = {math.inf: "Infinity", -math.inf: "-Infinity"}


class _Out:
    __slots__ = ("fields", "whole")

    def __init__(self) -> None:
        self.fields: dict[FieldDescriptor, tuple[str, int, bool, Any]] = {}
        self.whole = False  # json_format converts this message type


_OUT_TABLES: dict[tuple[Descriptor, _Options], _Out] = {}
_LOCK = threading.Lock()


def message_to_dict(
    message: Message,
    *,
    proto_names: bool = False,
    enums_as_ints: bool = False,
    hex_bytes: frozenset[str] = frozenset(),
) -> Any:
    """`json_format.MessageToDict` with the same options, several times faster and equal in output.

    Bytes fields whose proto name is in `hex_bytes` are written as lowercase hex instead of
    base64 (OTLP/JSON's trace and span ids).
    """
    options = (proto_names, enums_as_ints, hex_bytes)
    descriptor = message.DESCRIPTOR
    if descriptor.full_name.startswith("google.protobuf."):
        return _json_format_dict(message, options)
    table = _OUT_TABLES.get((descriptor, options))
    if table is None:
        with _LOCK:
            building: dict[tuple[Descriptor, _Options], _Out] = {}
            table = _out_table(descriptor, options, building)
            _OUT_TABLES.update(building)
    return _to_json(message, table, options)


def _to_json(message: Message, table: _Out, options: _Options) -> Any:
    if table.whole:
        return _json_format_dict(message, options)
    fields = table.fields
    out: dict[str, Any] = {}
    for field, value in message.ListFields():
        spec = fields.get(field)
        if spec is None:  # an extension
            return _json_format_dict(message, options)
        name, kind, repeated, arg = spec
        if kind == _O_PASS:
            out[name] = list(value) if repeated else value
        elif kind == _O_MSG:
            out[name] = (
                [_to_json(v, arg, options) for v in value] if repeated else _to_json(value, arg, options)
            )
        elif repeated:
            out[name] = [_value(kind, arg, item, options) for item in value]
        else:
            out[name] = _value(kind, arg, value, options)
    return out


def _value(kind: int, arg: Any, value: Any, options: _Options) -> Any:
    if kind == _O_INT64:
        return str(value)
    if kind == _O_ENUM:
        return arg.get(value, value)
    if kind == _O_HEX:
        return value.hex()
    if kind == _O_BYTES:
        return base64.b64encode(value).decode()
    if kind in (_O_DOUBLE, _O_FLOAT):
        if value != value:
            return "NaN"
        if value in _SPECIAL_FLOATS:
            return _SPECIAL_FLOATS[value]
        return value if kind == _O_DOUBLE else type_checkers.ToShortestFloat(value)
    # Well-known types (Timestamp, wrappers, Any...) have their own JSON forms.
    return json_format.MessageToDict(
        value, preserving_proto_field_name=options[0], use_integers_for_enums=options[1]
    )


def _json_format_dict(message: Message, options: _Options) -> Any:
    if options[2]:  # json_format would write those ids as base64
        raise ValueError(
            f"{message.DESCRIPTOR.full_name}: hex_bytes needs messages without maps or extensions"
        )
    return json_format.MessageToDict(
        message, preserving_proto_field_name=options[0], use_integers_for_enums=options[1]
    )


def _out_table(
    descriptor: Descriptor, options: _Options, building: dict[tuple[Descriptor, _Options], _Out]
) -> _Out:
    table = building[(descriptor, options)] = _Out()  # registered first: OTLP's AnyValue nests itself
    proto_names, enums_as_ints, hex_bytes = options
    for field in descriptor.fields:
        kind, arg = _O_PASS, None
        t = field.type
        if t == _T.TYPE_MESSAGE:
            sub = field.message_type
            if sub.GetOptions().map_entry:
                table.whole = True
            elif sub.full_name.startswith("google.protobuf."):
                kind = _O_WKT
            else:
                key = (sub, options)
                kind, arg = (
                    _O_MSG,
                    _OUT_TABLES.get(key) or building.get(key) or _out_table(sub, options, building),
                )
        elif t == _T.TYPE_ENUM:
            if field.enum_type.is_closed or field.enum_type.full_name == "google.protobuf.NullValue":
                table.whole = True
            elif not enums_as_ints:
                kind, arg = _O_ENUM, {v.number: v.name for v in field.enum_type.values}
        elif t in INT64_TYPES:
            kind = _O_INT64
        elif t == _T.TYPE_BYTES:
            kind = _O_HEX if field.name in hex_bytes else _O_BYTES
        elif t == _T.TYPE_DOUBLE:
            kind = _O_DOUBLE
        elif t == _T.TYPE_FLOAT:
            kind = _O_FLOAT
        table.fields[field] = (field.name if proto_names else field.json_name, kind, field.is_repeated, arg)
    return table
