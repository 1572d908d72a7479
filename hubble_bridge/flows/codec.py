"""Hubble's JSON form (`hubble observe -o json`, exporter files) to and from messages.

The JSON is protojson with proto field names: one GetFlowsResponse (or
exporter ExportEvent) per line, or a bare Flow with Hubble's legacy output.
Unknown fields are errors, never silently ignored.
"""

from __future__ import annotations

import re
from typing import Any

import orjson
from google.protobuf import json_format
from google.protobuf.timestamp_pb2 import Timestamp

from hubble_bridge.api import flow_pb2, observer_pb2
from hubble_bridge.errors import FlowDecodeError
from hubble_bridge.flows.fastjson import message_to_dict, parse_dict

GetFlowsResponse = observer_pb2.GetFlowsResponse

# The envelope's oneof keys; a line with none of them is a bare Flow (which has node_name and time too).
_ENVELOPE_KEYS = frozenset({"flow", "node_status", "lost_events", "agent_event", "debug_event"})
# Exporter events that are not part of the flow stream.
_NON_FLOW_EVENTS = frozenset({"agent_event", "debug_event"})


def parse_json_line(line: str | bytes) -> GetFlowsResponse | None:
    """Decode one JSON line; None for exporter agent/debug events, which carry no flow.

    Raises FlowDecodeError with the reason when the line is not a Hubble event.
    """
    try:
        data = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise FlowDecodeError(f"invalid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise FlowDecodeError(f"expected a JSON object, got {type(data).__name__}")
    return parse_event_dict(data)


def parse_event_dict(data: dict[str, Any]) -> GetFlowsResponse | None:
    if not data.keys() & _ENVELOPE_KEYS and data.keys() - {"node_name", "time"}:
        return _bare_flow(data)
    if data.keys() & _NON_FLOW_EVENTS:
        _parse(data, observer_pb2.ExportEvent)  # still validated, then skipped
        return None
    response = _parse(data, GetFlowsResponse)
    if not response.WhichOneof("response_types"):
        raise FlowDecodeError("no flow, node_status or lost_events in the event")
    return response


def _bare_flow(data: dict[str, Any]) -> GetFlowsResponse:
    flow = _parse(data, flow_pb2.Flow)
    response = GetFlowsResponse(node_name=flow.node_name)
    response.flow.CopyFrom(flow)
    response.time.CopyFrom(flow.time)
    return response


def _parse(data: dict[str, Any], message_type: Any) -> Any:
    try:
        # json_format's rules and errors, decoded several times faster (see fastjson).
        return parse_dict(data, message_type)
    except json_format.ParseError as exc:
        raise FlowDecodeError(_value_free(str(exc).splitlines()[0], message_type, data)) from None
    except (TypeError, ValueError, AttributeError) as exc:  # type errors deep in ParseDict
        raise FlowDecodeError(
            f"invalid value in {message_type.DESCRIPTOR.name} ({type(exc).__name__})"
        ) from None


_FAILED_FIELD = re.compile(r"Failed to parse (\w+) field")
_AT_PATH = re.compile(r' at "?([\w.]+?)\.?"?\.?$')
_ENUM_TYPE = re.compile(r"for enum type ([\w.]+)")
_UNKNOWN_FIELD = re.compile(r'has no field named "([^"]{1,64})"')


def _value_free(message: str, message_type: Any, data: dict[str, Any]) -> str:
    """ParseError's message without the values it quotes: a line's value may be a credential.

    protobuf's text repeats the offending value ("... which is {'Authorization': 'Bearer ...'}",
    "invalid literal for int(): '...'"); only the field's path and the kind of problem are kept.
    """
    at = _AT_PATH.search(message)
    path = at.group(1).removeprefix(message_type.DESCRIPTOR.name + ".") if at else ""
    unknown = _UNKNOWN_FIELD.search(message)
    if unknown:  # a field name, not a value; the path is the message that lacks it
        return f'unknown field "{unknown.group(1)}" in {path or "the event"}'
    # The message names some of the fields it went through; the line says where they are.
    chain = _FAILED_FIELD.findall(message)
    path = _key_path(data, chain) or path or ".".join(chain) or message_type.DESCRIPTOR.name
    enum = _ENUM_TYPE.search(message)
    if enum:
        return f"invalid value in field {path}: not a {enum.group(1)} name or number"
    return f"invalid value in field {path}"


def _key_path(data: Any, chain: list[str], prefix: str = "") -> str:
    """The dotted keys in `data` leading to chain[-1] through every name of `chain`, in order."""
    if not chain or not isinstance(data, dict):
        return ""
    for key, value in data.items():
        here = f"{prefix}.{key}" if prefix else str(key)
        rest = chain[1:] if key == chain[0] else chain
        if not rest:
            return here
        items = value if isinstance(value, list) else [value]
        for i, item in enumerate(items):
            found = _key_path(item, rest, f"{here}[{i}]" if isinstance(value, list) else here)
            if found:
                return found
    return ""


def to_json_dict(message: Any) -> dict[str, Any]:
    """The protojson form Hubble prints: proto field names, enums as names, no defaults."""
    return message_to_dict(message, proto_names=True)  # json_format's output, faster


def to_json_line(message: Any) -> bytes:
    return orjson.dumps(to_json_dict(message))


def timestamp_ns(ts: Timestamp) -> int:
    return ts.seconds * 1_000_000_000 + ts.nanos


def timestamp_from_ns(ns: int) -> Timestamp:
    return Timestamp(seconds=ns // 1_000_000_000, nanos=ns % 1_000_000_000)


def event_time_ns(response: GetFlowsResponse) -> int:
    """The event's time: the response time, else the flow's own time."""
    if response.HasField("time"):
        return timestamp_ns(response.time)
    if response.HasField("flow"):
        return timestamp_ns(response.flow.time)
    return 0


def enum_name(enum: Any, value: int) -> str:
    """The enum value's name, or its number for values newer than our schema."""
    try:
        return str(enum.Name(value))
    except ValueError:
        return str(value)
