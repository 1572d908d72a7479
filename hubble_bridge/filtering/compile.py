"""FlowFilter lists compiled once into predicates: AND within a filter, OR across a list,
result = whitelist minus blacklist (an empty whitelist allows everything).

Populated fields are found generically (ListFields, plus any wire fields unknown to this
build), so a field nobody evaluates raises UnsupportedFilterError instead of matching all.
"""

from __future__ import annotations

from collections.abc import Sequence

from google.protobuf.message import Message
from google.protobuf.unknown_fields import UnknownFieldSet

from hubble_bridge.api import flow_pb2, observer_pb2
from hubble_bridge.filtering import cel, endpoints, fields, l7
from hubble_bridge.filtering.errors import InvalidFilterError, UnsupportedFilterError
from hubble_bridge.filtering.fields import Flow, Predicate

BUILDERS = {**fields.BUILDERS, **endpoints.BUILDERS, **l7.BUILDERS}
# Message-valued holder of experimental options; each option inside is built by name.
_EXPERIMENTAL = "experimental"
_EXPERIMENTAL_BUILDERS = {"cel_expression": cel.build}


def _always(_: Flow) -> bool:
    return True


def compile_filter(ff: flow_pb2.FlowFilter) -> Predicate:
    """One FlowFilter as a predicate over flows: every populated field must match."""
    _reject_unknown_fields(ff, "")
    predicates: list[Predicate] = []
    for descriptor, value in ff.ListFields():
        name = descriptor.name
        if name == _EXPERIMENTAL:
            for option, option_value in value.ListFields():
                field = f"{name}.{option.name}"
                experimental = _EXPERIMENTAL_BUILDERS.get(option.name)
                if experimental is None:
                    raise UnsupportedFilterError(field)
                predicates.append(experimental(field, option_value))
            continue
        builder = BUILDERS.get(name)
        if builder is None:
            raise UnsupportedFilterError(name)
        predicates.append(builder(name, value, ff))
    if not predicates:
        return _always
    if len(predicates) == 1:
        return predicates[0]
    ordered = tuple(predicates)

    def match_all(flow: Flow) -> bool:
        # Plain loops here and below: no generator set-up per flow on the hot path.
        for predicate in ordered:  # noqa: SIM110
            if not predicate(flow):
                return False
        return True

    return match_all


def _reject_unknown_fields(message: Message, path: str) -> None:
    # A newer client may send fields this schema lacks; matching as if unset would widen the result.
    for unknown in UnknownFieldSet(message):
        raise UnsupportedFilterError(f"{path}#{unknown.field_number}")
    for descriptor, value in message.ListFields():
        if descriptor.message_type is None:
            continue
        for item in value if descriptor.is_repeated else (value,):
            _reject_unknown_fields(item, f"{path}{descriptor.name}.")


def _compile_list(filters: Sequence[flow_pb2.FlowFilter], where: str) -> tuple[Predicate, ...]:
    compiled: list[Predicate] = []
    for index, ff in enumerate(filters):
        try:
            compiled.append(compile_filter(ff))
        except (InvalidFilterError, UnsupportedFilterError) as exc:
            exc.where = f"{where}[{index}]"
            raise
    return tuple(compiled)


class FlowFilterSet:
    """Hubble's whitelist/blacklist pair, compiled once; `matches` is on the per-flow path."""

    __slots__ = ("_blacklist", "_whitelist")

    def __init__(
        self,
        whitelist: Sequence[flow_pb2.FlowFilter] = (),
        blacklist: Sequence[flow_pb2.FlowFilter] = (),
    ) -> None:
        self._whitelist = _compile_list(whitelist, "whitelist")
        self._blacklist = _compile_list(blacklist, "blacklist")

    @classmethod
    def from_request(cls, request: observer_pb2.GetFlowsRequest) -> FlowFilterSet:
        return cls(request.whitelist, request.blacklist)

    @property
    def is_empty(self) -> bool:
        return not self._whitelist and not self._blacklist

    def matches(self, response: observer_pb2.GetFlowsResponse) -> bool:
        """Flows are filtered; node status and lost-events notices always pass."""
        if not response.HasField("flow"):
            return True
        return self.matches_flow(response.flow)

    def matches_flow(self, flow: flow_pb2.Flow) -> bool:
        whitelist = self._whitelist
        if whitelist:
            for predicate in whitelist:
                if predicate(flow):
                    break
            else:
                return False
        for predicate in self._blacklist:  # noqa: SIM110
            if predicate(flow):
                return False
        return True
