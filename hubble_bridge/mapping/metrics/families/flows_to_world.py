"""`flows-to-world`: hubble_flows_to_world_total{protocol, verdict, [port], <context>}.

Flows whose destination carries the reserved:world label (or its per-family
variants). Options: `any-drop` counts every drop, not only policy drops;
`port` adds the destination port; `syn-only` counts only TCP SYNs that are
not replies (one per connection). As Hubble's handler (cilium
pkg/hubble/metrics/flows-to-world/handler.go), a flow without an event type is
not counted, even where the other families infer one.
"""

from __future__ import annotations

from hubble_bridge.mapping.metrics.base import Family, bool_flag
from hubble_bridge.mapping.metrics.facts import IS_REPLY, L4, FlowFacts, Handler
from hubble_bridge.mapping.metrics.names import DROPPED, POLICY_DENIED, WORLD_LABELS
from hubble_bridge.mapping.metrics.options import ContextOptions
from hubble_bridge.mapping.metrics.series import Counter, Series

_PORTED = frozenset({"TCP", "UDP", "SCTP"})
# Label keys kept per kind: the ports a cluster talks to are few, a port scan must not grow the cache.
MAX_PORT_KEYS = 1024
# Destinations whose world-ness is remembered: a cluster's endpoints, each pod its own.
MAX_DESTINATIONS = 8192


def _port_key(keys: dict[int, tuple[str, ...]], prefix: tuple[str, ...], port: int) -> tuple[str, ...]:
    key = (*prefix, str(port))
    if len(keys) < MAX_PORT_KEYS:
        keys[port] = key
    return key


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
        # Whether a destination carries a world label, by its serialized Endpoint: serializing
        # costs half of turning each label into a str, and the bytes fix the labels exactly.
        self._world: dict[bytes, bool] = {}

    def handler(self, kind: FlowFacts) -> Handler | None:
        l4_kind = kind.l4_kind
        if l4_kind is None or (self.syn_only and l4_kind != "TCP"):
            return None
        dropped = kind.verdict == DROPPED
        is_reply = kind.is_reply
        if (is_reply and not dropped) or (self.syn_only and is_reply):
            return None
        policy_drops_only = dropped and not self.any_drop
        syn_only = self.syn_only
        ported = self.port and l4_kind in _PORTED
        prefix: tuple[str, ...] = (kind.protocol, kind.verdict_name)
        if self.port and not ported:
            prefix += ("",)
        inc = self.flows.inc
        context = self.context if self.has_context else None
        keys: dict[int, tuple[str, ...]] = {}  # by destination port, when ported
        world = self._world

        # Cheapest test first: the destination is the costliest read of all.
        def count(facts: FlowFacts) -> None:
            flow = facts.flow
            if not flow.HasField("event_type"):
                return
            if policy_drops_only and flow.drop_reason_desc != POLICY_DENIED:
                return
            if syn_only and not facts.l4.flags.SYN:
                return
            destination = flow.destination
            serialized = destination.SerializeToString()
            to_world = world.get(serialized)
            if to_world is None:
                to_world = not WORLD_LABELS.isdisjoint(destination.labels)
                if len(world) < MAX_DESTINATIONS:
                    world[serialized] = to_world
            if not to_world:
                return
            key = prefix
            if ported:
                port = facts.l4.destination_port
                key = keys.get(port) or _port_key(keys, prefix, port)
            inc(key if context is None else key + context.values(facts))

        return count

    def series(self) -> list[Series]:
        return [self.flows]
