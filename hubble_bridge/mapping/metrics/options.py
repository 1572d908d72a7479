"""Hubble's metric option syntax and its context options, parsed once at start.

A family is configured as in Cilium's `hubble-metrics` list:
`name` or `name:key=value;key;key=value`. Keys are case-insensitive. The
context options (`sourceContext=namespace|pod`, `labelsContext=...`, and the
per-direction `sourceEgressContext` ...) become one ContextOptions from which
both the label names and, per flow, the label values come.

Everything follows cilium pkg/hubble/metrics/api/context.go, quirks included:
`pod` is "namespace/" for an endpoint with a namespace and no pod (so `pod|namespace`
stops there); the `source`/`destination` label exists only with `sourceContext`/
`destinationContext`, a direction-specific context overriding it per flow; and for a
family that reads a response as its request (httpV2), each side's value is computed on
the flow as it is and the two values are then swapped. The one deliberate difference:
unknown options and malformed values are errors (Hubble ignores them).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from hubble_bridge.api import flow_pb2
from hubble_bridge.mapping.metrics.facts import FlowFacts
from hubble_bridge.mapping.metrics.names import DIRECTION_LOWER, EGRESS, INGRESS

Flow = flow_pb2.Flow
Endpoint = flow_pb2.Endpoint
# (endpoint, flow, endpoint_is_the_flow_source) -> label value
ContextFn = Callable[[Endpoint, Flow, bool], str]
LabelFn = Callable[[Flow, bool], str]

_SHORT_POD = re.compile(r"^(.+?)(-[a-z0-9]+){1,2}$")
_APP_LABEL_PREFIXES = ("k8s:app.kubernetes.io/name=", "k8s:k8s-app=", "k8s:app=")


@dataclass(frozen=True)
class FamilySpec:
    """One entry of the metric list: family name and its raw options (keys lower-cased)."""

    name: str
    options: dict[str, str]
    text: str


def parse_metric_list(entries: list[str], errors: list[str]) -> list[FamilySpec]:
    specs: list[FamilySpec] = []
    seen: set[str] = set()
    for entry in entries:
        if not isinstance(entry, str) or not entry.strip():
            errors.append(f"metrics: invalid family entry {entry!r}")
            continue
        name, _, rest = entry.strip().partition(":")
        if name in seen:
            errors.append(f"metrics: family {name!r} is listed twice")
            continue
        seen.add(name)
        options: dict[str, str] = {}
        for item in rest.split(";"):
            if item:
                key, _, value = item.partition("=")
                options[key.strip().lower()] = value.strip()
        specs.append(FamilySpec(name, options, entry))
    return specs


def _namespaced(ep: Endpoint, name: str) -> str:
    ns = ep.namespace
    return f"{ns}/{name}" if ns else name


def _pod(ep: Endpoint, flow: Flow, src: bool) -> str:
    return _namespaced(ep, ep.pod_name)


def _pod_short(ep: Endpoint, flow: Flow, src: bool) -> str:
    return _namespaced(ep, _SHORT_POD.sub(r"\1", ep.pod_name))


def _reserved_identity(ep: Endpoint, flow: Flow, src: bool) -> str:
    labels = ep.labels
    if "reserved:kube-apiserver" in labels:
        return "reserved:kube-apiserver"
    return next((label for label in labels if label.startswith("reserved:")), "")


def _workload(ep: Endpoint) -> str:
    workloads = ep.workloads
    return workloads[0].name if workloads else ""


def _workload_kind(ep: Endpoint) -> str:
    workloads = ep.workloads
    return workloads[0].kind if workloads else ""


def app_label(ep: Endpoint) -> str:
    """The first of the endpoint's labels that is an app label with a value (Hubble's order)."""
    for label in ep.labels:
        for prefix in _APP_LABEL_PREFIXES:
            if label.startswith(prefix) and len(label) > len(prefix):
                return label[len(prefix) :]
    return ""


_IDENTIFIERS: dict[str, ContextFn] = {
    "identity": lambda ep, flow, src: ",".join(ep.labels),
    "namespace": lambda ep, flow, src: ep.namespace,
    "pod": _pod,
    "pod-short": _pod_short,
    "pod-name": lambda ep, flow, src: ep.pod_name,
    "dns": lambda ep, flow, src: ",".join(flow.source_names if src else flow.destination_names),
    "ip": lambda ep, flow, src: flow.IP.source if src else flow.IP.destination,
    "reserved-identity": _reserved_identity,
    "workload": lambda ep, flow, src: _namespaced(ep, _workload(ep)),
    "workload-name": lambda ep, flow, src: _workload(ep),
    "app": lambda ep, flow, src: app_label(ep),
}


def _side(flow: Flow, source: bool, invert: bool) -> Endpoint:
    return flow.source if source != invert else flow.destination


def _ip(flow: Flow, source: bool, invert: bool) -> str:
    return flow.IP.source if source != invert else flow.IP.destination


def _direction(direction: int) -> str:
    return DIRECTION_LOWER.get(direction, str(direction)) if direction else "unknown"


# labelsContext labels in Hubble's fixed order; each reads the flow, swapping sides when inverted.
_LABELS: dict[str, LabelFn] = {
    "source_ip": lambda flow, inv: _ip(flow, True, inv),
    "source_pod": lambda flow, inv: _side(flow, True, inv).pod_name,
    "source_namespace": lambda flow, inv: _side(flow, True, inv).namespace,
    "source_workload": lambda flow, inv: _workload(_side(flow, True, inv)),
    "source_workload_kind": lambda flow, inv: _workload_kind(_side(flow, True, inv)),
    "source_app": lambda flow, inv: app_label(_side(flow, True, inv)),
    "destination_ip": lambda flow, inv: _ip(flow, False, inv),
    "destination_pod": lambda flow, inv: _side(flow, False, inv).pod_name,
    "destination_namespace": lambda flow, inv: _side(flow, False, inv).namespace,
    "destination_workload": lambda flow, inv: _workload(_side(flow, False, inv)),
    "destination_workload_kind": lambda flow, inv: _workload_kind(_side(flow, False, inv)),
    "destination_app": lambda flow, inv: app_label(_side(flow, False, inv)),
    "traffic_direction": lambda flow, inv: _direction(flow.traffic_direction),
}

_CONTEXT_KEYS = {
    "sourcecontext": ("source", 0),
    "sourceingresscontext": ("source", INGRESS),
    "sourceegresscontext": ("source", EGRESS),
    "destinationcontext": ("destination", 0),
    "destinationingresscontext": ("destination", INGRESS),
    "destinationegresscontext": ("destination", EGRESS),
}
CONTEXT_OPTION_KEYS = frozenset({*_CONTEXT_KEYS, "labelscontext"})


class ContextOptions:
    """Parsed context options: label names once, label values per flow (cached per flow)."""

    def __init__(self, options: dict[str, str], errors: list[str], where: str) -> None:
        # side -> direction (0 = any) -> identifier functions, tried in order until one is non-empty
        self._ids: dict[str, dict[int, tuple[ContextFn, ...]]] = {"source": {}, "destination": {}}
        self._label_fns: tuple[LabelFn, ...] = ()
        names: list[str] = []
        for key, value in sorted(options.items()):
            if key == "labelscontext":
                wanted = [v.strip() for v in value.split(",")]
                unknown = [w for w in wanted if w not in _LABELS]
                if unknown or not value:
                    bad = unknown or [value]
                    errors.append(f"{where}: invalid labelsContext value(s) {bad}; known: {list(_LABELS)}")
                    continue
                names = [label for label in _LABELS if label in wanted]
                self._label_fns = tuple(_LABELS[label] for label in names)
            elif key in _CONTEXT_KEYS:
                side, direction = _CONTEXT_KEYS[key]
                idents = [v.strip().lower() for v in value.split("|")]
                unknown = [i for i in idents if i not in _IDENTIFIERS]
                if unknown or not value:
                    bad = unknown or [value]
                    errors.append(f"{where}: unknown context {bad} in {key}; known: {list(_IDENTIFIERS)}")
                    continue
                self._ids[side][direction] = tuple(_IDENTIFIERS[i] for i in idents)
        # Only the direction-less option adds the label; the others override it per flow.
        self._source = 0 in self._ids["source"]
        self._destination = 0 in self._ids["destination"]
        self.label_names: tuple[str, ...] = (
            *names,
            *(("source",) if self._source else ()),
            *(("destination",) if self._destination else ()),
        )
        self.empty = not self.label_names
        # Several families share one instance, so a flow's values are computed once.
        self._seq = self._inv_seq = -1
        self._values: tuple[str, ...] = ()
        self._inv_values: tuple[str, ...] = ()

    def values(self, facts: FlowFacts, invert: bool = False) -> tuple[str, ...]:
        """Label values in label_names order; `invert` reads a response as its request (httpV2)."""
        if invert:
            if self._inv_seq != facts.seq:
                self._inv_values = self._compute(facts, True)
                self._inv_seq = facts.seq
            return self._inv_values
        if self._seq != facts.seq:
            self._values = self._compute(facts, False)
            self._seq = facts.seq
        return self._values

    def _compute(self, facts: FlowFacts, invert: bool) -> tuple[str, ...]:
        flow = facts.flow
        out = [fn(flow, invert) for fn in self._label_fns]
        if self._source or self._destination:
            source = self._context(flow, "source", facts.direction)
            destination = self._context(flow, "destination", facts.direction)
            if invert:  # Hubble swaps the two values, each computed with its own side's options
                source, destination = destination, source
            if self._source:
                out.append(source)
            if self._destination:
                out.append(destination)
        return tuple(out)

    def _context(self, flow: Flow, side: str, direction: int) -> str:
        by_direction = self._ids[side]
        fns = by_direction.get(direction) or by_direction.get(0, ())
        is_source = side == "source"
        ep = flow.source if is_source else flow.destination
        for fn in fns:
            value = fn(ep, flow, is_source)
            if value:
                return value
        return ""
