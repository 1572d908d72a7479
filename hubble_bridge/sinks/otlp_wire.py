"""OTLP traces and logs written straight to protobuf wire bytes.

Building ExportTraceServiceRequest messages cost ~27 us per span (one upb
KeyValue per attribute, then a serialization pass); writing the bytes from the
records costs a fraction of that. The output parses back into a message equal
to `otlp_encode.encode_traces` / `encode_logs` (fields in field-number order,
so the bytes match upb's serialization too), the tests hold it to that.

Most attribute values repeat (namespaces, pods, methods, status codes), so the
encoded KeyValue of a (key, value) pair is cached; see FragmentCache for the
bound that keeps unique values from growing memory. Resources and the scope
are encoded once and cached as well.

Field numbers and wire types are read from the opentelemetry-proto
descriptors at import rather than written down, so a renumbered field cannot
silently produce wrong bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any, TypeVar

from google.protobuf.descriptor import FieldDescriptor
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.logs.v1 import logs_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from hubble_bridge import __version__
from hubble_bridge.telemetry import Attributes, AttrValue, LogRecord, Resource, Severity, SpanRecord

__all__ = ["SCOPE_NAME", "FragmentCache", "logs_bytes", "traces_bytes"]

SCOPE_NAME = "hubble-otlp"

_WIRE_TYPE = {
    FieldDescriptor.TYPE_BOOL: 0,
    FieldDescriptor.TYPE_INT64: 0,
    FieldDescriptor.TYPE_ENUM: 0,
    FieldDescriptor.TYPE_FIXED64: 1,
    FieldDescriptor.TYPE_DOUBLE: 1,
    FieldDescriptor.TYPE_STRING: 2,
    FieldDescriptor.TYPE_BYTES: 2,
    FieldDescriptor.TYPE_MESSAGE: 2,
}


def varint(n: int) -> bytes:
    """An unsigned varint; n must be >= 0."""
    if n < 0x80:
        return _SMALL[n]
    if n < 0x4000:
        return bytes(((n & 0x7F) | 0x80, n >> 7))
    if n < 0x200000:
        return bytes(((n & 0x7F) | 0x80, ((n >> 7) & 0x7F) | 0x80, n >> 14))
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_SMALL = [bytes((i,)) for i in range(0x80)]
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def int64(value: int) -> bytes:
    """An int64 (or enum) varint: a negative value is its 64-bit two's complement, ten bytes long."""
    if value < 0:
        if value < _INT64_MIN:
            raise ValueError(f"Value out of range: {value}")
        return varint(value + 2**64)
    if value > _INT64_MAX:
        raise ValueError(f"Value out of range: {value}")
    return varint(value)


def tag(message: Any, field: str) -> bytes:
    """The key (field number and wire type) of `field` of a generated message class, from its descriptor."""
    descriptor = message.DESCRIPTOR.fields_by_name[field]
    return varint(descriptor.number << 3 | _WIRE_TYPE[descriptor.type])


def length_delimited(key: bytes, payload: bytes) -> bytes:
    return key + varint(len(payload)) + payload


_fixed64 = struct.Struct("<Q").pack
_double = struct.Struct("<d").pack

# AnyValue, ArrayValue, KeyValue
_STRING_VALUE = tag(common_pb2.AnyValue, "string_value")
_BOOL_VALUE = tag(common_pb2.AnyValue, "bool_value")
_TRUE, _FALSE = _BOOL_VALUE + b"\x01", _BOOL_VALUE + b"\x00"
_INT_VALUE = tag(common_pb2.AnyValue, "int_value")
_DOUBLE_VALUE = tag(common_pb2.AnyValue, "double_value")
_ARRAY_VALUE = tag(common_pb2.AnyValue, "array_value")
_ARRAY_VALUES = tag(common_pb2.ArrayValue, "values")
_KV_KEY = tag(common_pb2.KeyValue, "key")
_KV_VALUE = tag(common_pb2.KeyValue, "value")
# Resource, scope, the envelopes
_RESOURCE_ATTRIBUTES = tag(resource_pb2.Resource, "attributes")
_SCOPE_NAME = tag(common_pb2.InstrumentationScope, "name")
_SCOPE_VERSION = tag(common_pb2.InstrumentationScope, "version")
_RESOURCE_SPANS = tag(ExportTraceServiceRequest, "resource_spans")
_RS_RESOURCE = tag(trace_pb2.ResourceSpans, "resource")
_RS_SCOPE_SPANS = tag(trace_pb2.ResourceSpans, "scope_spans")
_SS_SCOPE = tag(trace_pb2.ScopeSpans, "scope")
_SS_SPANS = tag(trace_pb2.ScopeSpans, "spans")
_RESOURCE_LOGS = tag(ExportLogsServiceRequest, "resource_logs")
_RL_RESOURCE = tag(logs_pb2.ResourceLogs, "resource")
_RL_SCOPE_LOGS = tag(logs_pb2.ResourceLogs, "scope_logs")
_SL_SCOPE = tag(logs_pb2.ScopeLogs, "scope")
_SL_LOG_RECORDS = tag(logs_pb2.ScopeLogs, "log_records")
# Span
_TRACE_ID = tag(trace_pb2.Span, "trace_id")
_SPAN_ID = tag(trace_pb2.Span, "span_id")
_TRACE_STATE = tag(trace_pb2.Span, "trace_state")
_PARENT_SPAN_ID = tag(trace_pb2.Span, "parent_span_id")
_NAME = tag(trace_pb2.Span, "name")
_KIND = tag(trace_pb2.Span, "kind")
_START = tag(trace_pb2.Span, "start_time_unix_nano")
_END = tag(trace_pb2.Span, "end_time_unix_nano")
_SPAN_ATTRIBUTES = tag(trace_pb2.Span, "attributes")
_STATUS = tag(trace_pb2.Span, "status")
_STATUS_MESSAGE = tag(trace_pb2.Status, "message")
_STATUS_CODE = tag(trace_pb2.Status, "code")
# LogRecord
_TIME = tag(logs_pb2.LogRecord, "time_unix_nano")
_SEVERITY_NUMBER = tag(logs_pb2.LogRecord, "severity_number")
_SEVERITY_TEXT = tag(logs_pb2.LogRecord, "severity_text")
_BODY = tag(logs_pb2.LogRecord, "body")
_LOG_ATTRIBUTES = tag(logs_pb2.LogRecord, "attributes")
_LOG_TRACE_ID = tag(logs_pb2.LogRecord, "trace_id")
_LOG_SPAN_ID = tag(logs_pb2.LogRecord, "span_id")
_OBSERVED_TIME = tag(logs_pb2.LogRecord, "observed_time_unix_nano")
_EVENT_NAME = tag(logs_pb2.LogRecord, "event_name")
# The usual ids: 16 and 8 bytes long, so their keys and lengths are one constant each.
_TRACE_ID_16 = _TRACE_ID + varint(16)
_SPAN_ID_8 = _SPAN_ID + varint(8)
_PARENT_SPAN_ID_8 = _PARENT_SPAN_ID + varint(8)
_LOG_TRACE_ID_16 = _LOG_TRACE_ID + varint(16)
_LOG_SPAN_ID_8 = _LOG_SPAN_ID + varint(8)


def _string(key: bytes, value: str) -> bytes:
    """A string field, or nothing for "" (proto3 leaves default values out)."""
    return length_delimited(key, value.encode()) if value else b""


def _bytes(key: bytes, value: bytes) -> bytes:
    return length_delimited(key, value) if value else b""


def any_value(value: AttrValue) -> bytes:
    """An AnyValue's content, as otlp_encode.any_value types it: bool before int, lists as arrays.

    The oneof member is written even for "", False, 0 and 0.0: a oneof field has presence.
    """
    kind = type(value)
    if kind is str:
        return length_delimited(_STRING_VALUE, value.encode())  # type: ignore[union-attr]
    if kind is int:
        return _INT_VALUE + int64(value)  # type: ignore[arg-type]
    if kind is bool:
        return _TRUE if value else _FALSE
    if kind is float:
        return _DOUBLE_VALUE + _double(value)  # type: ignore[arg-type]
    if isinstance(value, str):
        return length_delimited(_STRING_VALUE, str.encode(value))
    if isinstance(value, bool):
        return _TRUE if value else _FALSE
    if isinstance(value, int):
        return _INT_VALUE + int64(int(value))
    if isinstance(value, float):
        return _DOUBLE_VALUE + _double(value)
    if isinstance(value, (list, tuple)):
        items = b"".join(length_delimited(_ARRAY_VALUES, any_value(v)) for v in value)
        return length_delimited(_ARRAY_VALUE, items)
    return length_delimited(_STRING_VALUE, str(value).encode())


def key_value(field: bytes, key: str, value: AttrValue) -> bytes:
    """One KeyValue as an element of the repeated field whose key is `field`."""
    return length_delimited(field, _string(_KV_KEY, key) + length_delimited(_KV_VALUE, any_value(value)))


def _escape(fragment: bytes) -> bytes:
    return fragment.replace(b"%", b"%%")


class _KeyFragments(dict[Any, bytes]):
    """One key's encoded KeyValues by value, with what encoding a new value of that key needs."""

    __slots__ = ("cached", "key", "key_part", "short_int", "short_list", "short_string")

    def __init__(self, field: bytes, key: str) -> None:
        super().__init__()
        self.key = key
        self.cached = True  # False once the key proved to have too many distinct values
        self.key_part = _string(_KV_KEY, key)
        # Most new values fit one %-format, every length being one byte: a string, an int, or a
        # list of one string (a header value).
        prefix = _escape(field) + b"%c" + _escape(self.key_part) + _escape(_KV_VALUE) + b"%c"
        self.short_string = prefix + _escape(_STRING_VALUE) + b"%c%b"
        self.short_int = prefix + _escape(_INT_VALUE) + b"%b"
        array, values = _escape(_ARRAY_VALUE), _escape(_ARRAY_VALUES)
        self.short_list = prefix + array + b"%c" + values + b"%c" + _escape(_STRING_VALUE) + b"%c%b"


class FragmentCache:
    """Encoded KeyValues of one repeated attributes field, by key and value, with a bounded size.

    Cached: str and int values, and lists of strings (keyed as a tuple, which
    never equals a str or an int). Not bools, floats or lists holding anything
    else: 1 would be found for True and 1.0, which are equal and hash alike but
    encode differently.

    Bound: a fragment longer than `max_fragment` bytes is not kept, and when
    `max_entries` fragments or `max_bytes` of them are held, or `max_entries`
    distinct keys, everything is cleared and starts over. Memory therefore
    stays under about twice max_bytes (the fragments, and the attribute values
    keying them) plus ~200 bytes per entry and ~500 per key, whatever the
    attributes are.

    Keys whose values hardly repeat (flow uuids, client ports, request ids)
    would fill the cache with entries never found again and force clears that
    evict the useful ones. A key that gathers `max_per_key` values is therefore
    no longer cached until the next clear: its values are encoded each time,
    which costs what a miss costs.

    Threads may share a cache: a lookup racing a clear is just a miss, and a
    race on the counts only moves a clear a little.
    """

    def __init__(
        self,
        field: bytes,
        max_entries: int = 8192,
        max_bytes: int = 2 << 20,
        max_fragment: int = 2048,
        max_per_key: int = 1024,
    ) -> None:
        self.field = field
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.max_fragment = max_fragment
        self.max_per_key = max_per_key
        self.clears = 0
        self._entries = 0
        self._bytes = 0
        self._keys: dict[str, _KeyFragments] = {}

    def __len__(self) -> int:
        return self._entries

    @property
    def size_bytes(self) -> int:
        """Bytes of the cached fragments."""
        return self._bytes

    @property
    def keys(self) -> int:
        """Attribute keys known to the cache, those no longer cached included."""
        return len(self._keys)

    def write(self, out: bytearray, attributes: Attributes) -> None:
        """Append every attribute to `out`, in order."""
        keys = self._keys
        for key, value in attributes.items():
            kind = type(value)
            if kind is str or kind is int:
                fragments = keys.get(key)
                if fragments is None:
                    fragments = self._key(key)
                fragment = fragments.get(value)
                if fragment is None:
                    fragment = self._scalar(fragments, key, value)  # type: ignore[arg-type]
            elif kind is list or kind is tuple:
                fragments = keys.get(key)
                if fragments is None:
                    fragments = self._key(key)
                try:
                    items_key = tuple(value)  # type: ignore[arg-type]
                    fragment = fragments.get(items_key)
                except TypeError:  # holds a list: unhashable, never cached
                    fragment = key_value(self.field, key, value)
                if fragment is None:
                    fragment = self._list(fragments, key, items_key)
            else:
                fragment = key_value(self.field, key, value)
            out += fragment

    def _key(self, key: str) -> _KeyFragments:
        # Keys count too: values too long to keep would otherwise let new keys pile up unseen.
        if len(self._keys) >= self.max_entries:
            self._clear()
        fragments = self._keys[key] = _KeyFragments(self.field, key)
        return fragments

    def _clear(self) -> None:
        self._keys.clear()
        self._entries = self._bytes = 0
        self.clears += 1

    def _scalar(self, fragments: _KeyFragments, key: str, value: str | int) -> bytes:
        if type(value) is str:
            encoded = value.encode()
            size = len(encoded)
            total = len(fragments.key_part) + size + 4
            if total < 0x80:
                fragment = fragments.short_string % (total, size + 2, size, encoded)
            else:
                fragment = self._long_string(fragments.key_part, encoded)
        else:
            number = varint(value) if 0 <= value <= _INT64_MAX else int64(value)
            total = len(fragments.key_part) + len(number) + 3
            if total < 0x80:
                fragment = fragments.short_int % (total, len(number) + 1, number)
            else:
                fragment = key_value(self.field, key, value)
        if fragments.cached:
            self._add(fragments, value, fragment)
        return fragment

    def _long_string(self, key_part: bytes, encoded: bytes) -> bytes:
        """A string KeyValue with lengths of any size (URLs, user agents), in one join."""
        size = varint(len(encoded))
        any_size = len(_STRING_VALUE) + len(size) + len(encoded)
        value_size = varint(any_size)
        total = len(key_part) + len(_KV_VALUE) + len(value_size) + any_size
        return b"".join(
            (self.field, varint(total), key_part, _KV_VALUE, value_size, _STRING_VALUE, size, encoded)
        )

    def _list(self, fragments: _KeyFragments, key: str, items: tuple[Any, ...]) -> bytes:
        fragment = None
        if len(items) == 1 and type(items[0]) is str:
            encoded = items[0].encode()
            size = len(encoded)
            total = len(fragments.key_part) + size + 8
            if total < 0x80:
                fragment = fragments.short_list % (total, size + 6, size + 4, size + 2, size, encoded)
        elif not all(type(item) is str for item in items):
            return key_value(self.field, key, items)
        if fragment is None:
            fragment = key_value(self.field, key, items)
        if fragments.cached:
            self._add(fragments, items, fragment)
        return fragment

    def _add(self, fragments: _KeyFragments, value: str | int | tuple[str, ...], fragment: bytes) -> None:
        size = len(fragment)
        if size > self.max_fragment:
            return
        if self._entries >= self.max_entries or self._bytes + size > self.max_bytes:
            self._clear()
            fragments.clear()
            self._keys[fragments.key] = fragments
        if len(fragments) >= self.max_per_key:
            fragments.cached = False
            self._entries -= len(fragments)
            self._bytes -= sum(map(len, fragments.values()))
            fragments.clear()
            return
        fragments[value] = fragment
        self._entries += 1
        self._bytes += size


_SPAN_ATTRIBUTE_CACHE = FragmentCache(_SPAN_ATTRIBUTES)
_LOG_ATTRIBUTE_CACHE = FragmentCache(_LOG_ATTRIBUTES)


@lru_cache(maxsize=4096)
def _resource(field: bytes, resource: Resource) -> bytes:
    """The resource as the `field` of a Resource{Spans,Logs}, written even when it has no attributes."""
    attributes = b"".join(key_value(_RESOURCE_ATTRIBUTES, k, v) for k, v in resource)
    return length_delimited(field, attributes)


@lru_cache(maxsize=64)
def _scope(field: bytes, name: str, version: str) -> bytes:
    return length_delimited(field, _string(_SCOPE_NAME, name) + _string(_SCOPE_VERSION, version))


_Record = TypeVar("_Record", SpanRecord, LogRecord)
_Writer = Callable[[bytearray, _Record, FragmentCache], None]


def _request(
    records: Sequence[_Record],
    write: _Writer[_Record],
    cache: FragmentCache,
    entry_field: bytes,
    resource_field: bytes,
    scoped_field: bytes,
    scope: bytes,
) -> bytes:
    """An export request: one entry per resource (first-seen order) holding one scope entry."""
    try:
        groups = _write_grouped(records, write, cache, by_identity=True)
        if len({resource for resource, _ in groups}) < len(groups):
            # Equal resources in distinct tuples: group again by value, which hashes every resource.
            groups = _write_grouped(records, write, cache, by_identity=False)
    except struct.error:
        raise ValueError("Value out of range: a timestamp is not a uint64") from None
    parts: list[bytes | bytearray] = []  # joined once: the records are copied a single time
    for resource, encoded in groups:
        resource_entry = _resource(resource_field, resource)
        scoped_len = len(scope) + len(encoded)
        scoped_key = scoped_field + varint(scoped_len)
        entry_len = varint(len(resource_entry) + len(scoped_key) + scoped_len)
        parts += (entry_field, entry_len, resource_entry, scoped_key, scope, encoded)
    return b"".join(parts)


def _write_grouped(
    records: Sequence[_Record], write: _Writer[_Record], cache: FragmentCache, by_identity: bool
) -> list[tuple[Resource, bytearray]]:
    """Records encoded in their own order (the order they sit in memory: measurably faster than
    group by group) into one buffer per resource. Grouping by the resource tuple's identity saves
    hashing it per record; mappers share one tuple per endpoint, so it usually groups fully.
    """
    groups: dict[object, tuple[Resource, bytearray]] = {}
    for record in records:
        resource = record.resource
        key = id(resource) if by_identity else resource
        group = groups.get(key)
        if group is None:
            group = groups[key] = (resource, bytearray())
        write(group[1], record, cache)
    return list(groups.values())


def traces_bytes(
    spans: Sequence[SpanRecord],
    scope_name: str = SCOPE_NAME,
    scope_version: str = __version__,
    cache: FragmentCache = _SPAN_ATTRIBUTE_CACHE,
) -> bytes:
    """A serialized ExportTraceServiceRequest, equal to encode_traces(spans, ...) once parsed."""
    scope = _scope(_SS_SCOPE, scope_name, scope_version)
    return _request(spans, _write_span, cache, _RESOURCE_SPANS, _RS_RESOURCE, _RS_SCOPE_SPANS, scope)


def _open(out: bytearray, field: bytes) -> int:
    """Start a length-delimited entry whose length is not known yet; _close writes it.

    Two bytes are reserved for the length, what a span or a log record needs: writing in place
    saves encoding each record into a buffer of its own and copying that.
    """
    out += field
    out += b"\0\0"
    return len(out)


def _close(out: bytearray, start: int) -> None:
    size = len(out) - start
    if 0x80 <= size < 0x4000:
        out[start - 2] = (size & 0x7F) | 0x80
        out[start - 1] = size >> 7
    else:
        out[start - 2 : start] = varint(size)


# Span names repeat (methods, DNS and Kafka names): encoded ones are kept, a bounded number.
_NAMES: dict[str, bytes] = {}
_MAX_NAMES = 4096


def _name(name: str) -> bytes:
    encoded = _string(_NAME, name)
    if len(_NAMES) >= _MAX_NAMES:
        _NAMES.clear()
    if len(encoded) <= 256:
        _NAMES[name] = encoded
    return encoded


_times = struct.Struct(f"<{len(_START)}sQ{len(_END)}sQ").pack


def _write_span(out: bytearray, span: SpanRecord, cache: FragmentCache) -> None:
    start = _open(out, _SS_SPANS)
    trace_id = span.trace_id
    if len(trace_id) == 16:
        out += _TRACE_ID_16
        out += trace_id
    else:
        out += _bytes(_TRACE_ID, trace_id)
    span_id = span.span_id
    if len(span_id) == 8:
        out += _SPAN_ID_8
        out += span_id
    else:
        out += _bytes(_SPAN_ID, span_id)
    if span.trace_state:
        out += _string(_TRACE_STATE, span.trace_state)
    parent = span.parent_span_id
    if len(parent) == 8:
        out += _PARENT_SPAN_ID_8
        out += parent
    elif parent:
        out += _bytes(_PARENT_SPAN_ID, parent)
    name = span.name
    if name:
        encoded_name = _NAMES.get(name)
        if encoded_name is None:
            encoded_name = _name(name)
        out += encoded_name
    kind = span.kind
    if kind:
        out += _KIND
        out += _SMALL[kind] if 0 < kind < 0x80 else _enum(kind)
    start_ns, end_ns = span.start_time_ns, span.end_time_ns
    if start_ns and end_ns:
        out += _times(_START, start_ns, _END, end_ns)
    elif start_ns:
        out += _START + _fixed64(start_ns)
    elif end_ns:
        out += _END + _fixed64(end_ns)
    cache.write(out, span.attributes)
    if span.status or span.status_message:
        status = _string(_STATUS_MESSAGE, span.status_message)
        if span.status:
            status += _STATUS_CODE + _enum(span.status)
        out += length_delimited(_STATUS, status)
    _close(out, start)


_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1


def _enum(value: int) -> bytes:
    """An enum field (int32 in the wire format); out-of-range values fail as upb fails them."""
    value = int(value)
    if 0 <= value < 0x80:
        return _SMALL[value]
    if not _INT32_MIN <= value <= _INT32_MAX:
        raise ValueError(f"Value out of range: {value}")
    return int64(value)


def _severity(severity: Severity) -> bytes:
    """Severity number and text; like encode_logs, a plain int has no name and fails."""
    number = int(severity)
    prefix = _SEVERITY_NUMBER + _enum(number) if number else b""
    return prefix + _string(_SEVERITY_TEXT, severity.name)


# Looked up only for Severity members: a plain int equal to one must still fail in _severity.
_SEVERITIES = {severity: _severity(severity) for severity in Severity}


def logs_bytes(
    logs: Sequence[LogRecord],
    scope_name: str = SCOPE_NAME,
    scope_version: str = __version__,
    cache: FragmentCache = _LOG_ATTRIBUTE_CACHE,
) -> bytes:
    """A serialized ExportLogsServiceRequest, equal to encode_logs(logs, ...) once parsed."""
    scope = _scope(_SL_SCOPE, scope_name, scope_version)
    return _request(logs, _write_log, cache, _RESOURCE_LOGS, _RL_RESOURCE, _RL_SCOPE_LOGS, scope)


def _write_log(out: bytearray, log: LogRecord, cache: FragmentCache) -> None:
    start = _open(out, _SL_LOG_RECORDS)
    time = _fixed64(log.time_ns) if log.time_ns else b""
    if time:
        out += _TIME
        out += time
    severity = log.severity
    fields = _SEVERITIES.get(severity) if type(severity) is Severity else None
    out += fields if fields is not None else _severity(severity)
    # The body is a message field that encode_logs always sets: written even for "".
    out += length_delimited(_BODY, length_delimited(_STRING_VALUE, log.body.encode()))
    cache.write(out, log.attributes)
    trace_id = log.trace_id
    if len(trace_id) == 16:
        out += _LOG_TRACE_ID_16
        out += trace_id
    elif trace_id:
        out += _bytes(_LOG_TRACE_ID, trace_id)
    span_id = log.span_id
    if len(span_id) == 8:
        out += _LOG_SPAN_ID_8
        out += span_id
    elif span_id:
        out += _bytes(_LOG_SPAN_ID, span_id)
    if time:
        # The bridge observes a flow when Hubble recorded it: there is no later observation time.
        out += _OBSERVED_TIME
        out += time
    if log.event_name:
        out += _string(_EVENT_NAME, log.event_name)
    _close(out, start)
