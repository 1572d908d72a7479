"""GetFlowsRequest semantics, independent of gRPC: validation, selection, field masks.

Mirrors Hubble: `number` is the last N matching events (the first N with
`first`), `since`/`until` bound event time and exclude `number`, `follow`
continues with new events, filters are whitelist minus blacklist, and the
field mask keeps only the listed Flow fields.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from google.protobuf.field_mask_pb2 import FieldMask

from hubble_bridge.api import flow_pb2, observer_pb2
from hubble_bridge.errors import BridgeError
from hubble_bridge.filters import FlowFilterSet
from hubble_bridge.flows.codec import event_time_ns, timestamp_ns

GetFlowsResponse = observer_pb2.GetFlowsResponse


class InvalidRequestError(BridgeError):
    """A GetFlowsRequest Hubble would refuse with INVALID_ARGUMENT."""


@dataclass(frozen=True)
class FlowQuery:
    filters: FlowFilterSet
    number: int
    first: bool
    follow: bool
    since_ns: int | None
    until_ns: int | None
    mask: FieldMask | None

    @classmethod
    def from_request(cls, request: observer_pb2.GetFlowsRequest) -> FlowQuery:
        """Raises InvalidRequestError (or the filter engine's BridgeError) for what Hubble refuses."""
        since = timestamp_ns(request.since) if request.HasField("since") else None
        until = timestamp_ns(request.until) if request.HasField("until") else None
        if request.number and (since is not None or until is not None):
            raise InvalidRequestError("number cannot be combined with since or until")
        if request.first and request.follow:
            raise InvalidRequestError("first cannot be combined with follow")
        if since is not None and until is not None and since > until:
            raise InvalidRequestError("since is after until")
        mask = None
        if request.HasField("field_mask") and request.field_mask.paths:
            mask = request.field_mask
            for path in mask.paths:
                if not FieldMask(paths=[path]).IsValidForDescriptor(flow_pb2.Flow.DESCRIPTOR):
                    raise InvalidRequestError(f"field_mask: {path!r} is not a field path of flow.Flow")
        filters = FlowFilterSet(list(request.whitelist), list(request.blacklist))
        return cls(filters, request.number, request.first, request.follow, since, until, mask)

    def accepts(self, response: GetFlowsResponse) -> bool:
        """Time bounds and filters; events other than flows (lost events, node status) pass filters."""
        if self.since_ns is not None or self.until_ns is not None:
            when = event_time_ns(response)
            if self.since_ns is not None and when < self.since_ns:
                return False
            if self.until_ns is not None and when > self.until_ns:
                return False
        return not response.HasField("flow") or self.filters.matches(response)

    def past_until(self, response: GetFlowsResponse) -> bool:
        """A followed event beyond `until` ends the stream."""
        return self.until_ns is not None and event_time_ns(response) > self.until_ns

    def initial(self, buffered: list[GetFlowsResponse]) -> list[GetFlowsResponse]:
        """The buffered events to send before following (or before the stream ends)."""
        if self.first:
            return _take(self, buffered, self.number)
        if self.number:
            return _take(self, reversed(buffered), self.number)[::-1]
        if self.follow and self.since_ns is None:
            return []  # follow alone: only what arrives from now on
        return [event for event in buffered if self.accepts(event)]

    def shape(self, response: GetFlowsResponse) -> GetFlowsResponse:
        """The response as sent: with the field mask applied to its flow."""
        if self.mask is None or not response.HasField("flow"):
            return response
        shaped = GetFlowsResponse(node_name=response.node_name)
        if response.HasField("time"):
            shaped.time.CopyFrom(response.time)
        shaped.flow.SetInParent()
        self.mask.MergeMessage(response.flow, shaped.flow)
        return shaped


def _take(query: FlowQuery, events: Iterable[GetFlowsResponse], limit: int) -> list[GetFlowsResponse]:
    taken: list[GetFlowsResponse] = []
    for event in events:
        if query.accepts(event):
            taken.append(event)
            if limit and len(taken) >= limit:
                break
    return taken
