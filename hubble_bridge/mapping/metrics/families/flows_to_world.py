"""`flows-to-world`: hubble_flows_to_world_total{protocol, verdict, [port], <context>}.

Flows whose destination carries the reserved:world label (or its per-family
variants). Options: `any-drop` counts every drop, not only policy drops;
`port` adds the destination port; `syn-only` counts only TCP SYNs that are
not replies (one per connection).
"""

from __future__ import annotations

from hubble_bridge.mapping.metrics.base import Family, bool_flag
from hubble_bridge.mapping.metrics.facts import IS_REPLY, L4, FlowFacts, Handler
from hubble_bridge.mapping.metrics.names import DROPPED, POLICY_DENIED, WORLD_LABELS
from hubble_bridge.mapping.metrics.options import ContextOptions
from hubble_bridge.mapping.metrics.series import Counter, Series

_PORTED = frozenset({"TCP", "UDP", "SCTP"})


class FlowsToWorldFamily(Family):
    name = "flows-to-world"
    flags = frozenset({"any-drop", "port", "syn-only"})

    def __init__(self, context: ContextOptions, flags: dict[str, str], limit: int, errors: list[str]) -> None:
        super().__init__(context, flags, limit, errors)
        self.any_drop = bool_flag(self.name, flags, "any-drop", errors)
        self.port = bool_flag(self.name, flags, "port", errors)
        self.syn_only = bool_flag(self.name, flags, "syn-only", errors)
        self.reads = frozenset({IS_REPLY, L4}) if self.port or self.syn_only else frozenset({IS_REPLY})
        labels = ("protocol", "verdict", *(("port",) if self.port else ()), *context.label_names)
        help_text = "Total number of flows to reserved:world"
        self.flows = Counter("hubble.flows_to_world", help_text, labels, limit)

    def handler(self, kind: FlowFacts) -> Handler | None:
        l4_kind = kind.l4_kind
        if l4_kind is None or (self.syn_only and l4_kind != "TCP"):
            return None
        dropped = kind.verdict == DROPPED
        policy_drops_only = dropped and not self.any_drop
        syn_only = self.syn_only
        ported = self.port and l4_kind in _PORTED
        prefix: tuple[str, ...] = (kind.protocol, kind.verdict_name)
        if self.port and not ported:
            prefix += ("",)
        inc = self.flows.inc
        context = self.context if self.has_context else None

        # Cheapest test first: the destination's labels are the costliest read of all.
        def count(facts: FlowFacts) -> None:
            is_reply = facts.is_reply
            if is_reply and not dropped:
                return
            flow = facts.flow
            if policy_drops_only and flow.drop_reason_desc != POLICY_DENIED:
                return
            if syn_only and (is_reply or not facts.l4.flags.SYN):
                return
            if WORLD_LABELS.isdisjoint(flow.destination.labels):
                return
            key = prefix
            if ported:
                key += (str(facts.l4.destination_port),)
            inc(key if context is None else key + context.values(facts))

        return count

    def series(self) -> list[Series]:
        return [self.flows]
