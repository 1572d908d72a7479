"""Trace context for L7 spans: incoming W3C/B3 context, correlation keys, new ids.

Precedence for the incoming context of an exchange:

1. trace id: `flow.trace_context.parent.trace_id` (Hubble's own parse of traceparent),
   else the `traceparent` header, else B3 (`b3`, or `x-b3-traceid` + `x-b3-spanid`,
   as Istio/Zipkin send them);
2. parent span id: the span id of the same header, used only when its trace id
   agrees with (1);
3. otherwise a new trace.

New ids: when the flow carries a `uuid` (Cilium >= 1.14), trace and span ids are the
BLAKE2b digest of it, so replaying the same flows gives the same ids (a re-export
replaces spans in the backend instead of duplicating them); older flows get random
ids from the mapper's `random.Random`.
"""

from __future__ import annotations

import random
from hashlib import blake2b

from hubble_bridge.api import flow_pb2

# Headers the span mapper reads besides the kept ones; scanned in the same pass.
X_REQUEST_ID = "x-request-id"
TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
B3 = "b3"
B3_TRACE_ID = "x-b3-traceid"
B3_SPAN_ID = "x-b3-spanid"
USER_AGENT = "user-agent"
WANTED_HEADERS = frozenset({X_REQUEST_ID, TRACEPARENT, TRACESTATE, B3, B3_TRACE_ID, B3_SPAN_ID, USER_AGENT})

_ZERO_TRACE = bytes(16)
_ZERO_SPAN = bytes(8)


def incoming_context(flow: flow_pb2.Flow, found: dict[str, str]) -> tuple[bytes, bytes, str]:
    """(trace_id, parent_span_id, trace_state) the request arrived with; b"" where unknown."""
    trace_id = _hex_id(flow.trace_context.parent.trace_id, 16) if flow.HasField("trace_context") else b""
    if not found:
        return trace_id, b"", ""
    header_trace, parent, state = b"", b"", ""
    traceparent = found.get(TRACEPARENT)
    if traceparent:
        header_trace, parent = parse_traceparent(traceparent)
        state = found.get(TRACESTATE, "") if parent else ""
    if not header_trace:
        header_trace, parent = _parse_b3(found)
    if not trace_id:
        return header_trace, parent, state
    if header_trace == trace_id:
        return trace_id, parent, state
    return trace_id, b"", ""


def parse_traceparent(value: str) -> tuple[bytes, bytes]:
    """(trace_id, span_id) from "00-<32 hex>-<16 hex>-<2 hex>"; (b"", b"") when invalid."""
    value = value.strip()
    # Later versions may append fields after the flags; version ff is forbidden.
    if len(value) < 55 or value[2] != "-" or value[35] != "-" or value[52] != "-" or value[:2] == "ff":
        return b"", b""
    if value[:2] == "00" and len(value) != 55:
        return b"", b""
    trace_id = _hex_id(value[3:35], 16)
    span_id = _hex_id(value[36:52], 8)
    if not trace_id or not span_id:
        return b"", b""
    return trace_id, span_id


def header_correlation_key(found: dict[str, str]) -> tuple[str, ...] | None:
    """What the client and the server side of one exchange share, when a header says it.

    x-request-id and traceparent are unique per outgoing call. Without them, see
    trace_correlation_key.
    """
    if found:
        request_id = found.get(X_REQUEST_ID)
        if request_id:
            return ("x", request_id)
        traceparent = found.get(TRACEPARENT)
        if traceparent:
            return ("p", traceparent)
        b3 = found.get(B3) or found.get(B3_SPAN_ID)
        if b3:
            return ("b", b3)
    return None


def trace_correlation_key(trace_id: bytes, server_identity: int) -> tuple[str, ...]:
    """The correlation key from the incoming trace id, for an exchange without the headers:
    a trace has many calls, so the server's identity narrows it down."""
    return ("t", trace_id.hex(), str(server_identity))


class IdGenerator:
    def __init__(self, rng: random.Random) -> None:
        self._rng = rng

    def new_ids(self, uuid: str) -> tuple[bytes, bytes]:
        """(trace_id, span_id): derived from the flow uuid when there is one, else random."""
        if uuid:
            digest = blake2b(uuid.encode(), digest_size=24).digest()
            trace_id, span_id = digest[:16], digest[16:]
            if trace_id != _ZERO_TRACE and span_id != _ZERO_SPAN:
                return trace_id, span_id
        bits = self._rng.getrandbits
        return (bits(128) or 1).to_bytes(16, "big"), (bits(64) or 1).to_bytes(8, "big")


def _parse_b3(found: dict[str, str]) -> tuple[bytes, bytes]:
    single = found.get(B3)
    if single:
        # b3: {trace}-{span}[-{sampled}[-{parent}]], or just a sampling decision ("0", "1", "d").
        parts = single.strip().split("-")
        if len(parts) >= 2:
            return _b3_trace(parts[0]), _hex_id(parts[1], 8)
        return b"", b""
    trace = found.get(B3_TRACE_ID)
    if not trace:
        return b"", b""
    trace_id = _b3_trace(trace.strip())
    span = found.get(B3_SPAN_ID, "")
    return trace_id, (_hex_id(span.strip(), 8) if trace_id else b"")


def _b3_trace(text: str) -> bytes:
    # B3 allows 64-bit trace ids; OpenTelemetry pads them on the left.
    return _hex_id(text.rjust(32, "0") if len(text) == 16 else text, 16)


def _hex_id(text: str, size: int) -> bytes:
    if len(text) != size * 2:
        return b""
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        return b""
    # fromhex skips whitespace, so the length is checked again on the bytes.
    return b"" if len(raw) != size or raw == bytes(size) else raw
