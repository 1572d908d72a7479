"""Metric families by name, and building the enabled ones from Hubble's option list."""

from __future__ import annotations

from hubble_bridge.mapping.metrics.base import Family
from hubble_bridge.mapping.metrics.families.dns import DnsFamily
from hubble_bridge.mapping.metrics.families.drop import DropFamily
from hubble_bridge.mapping.metrics.families.flow import FlowFamily
from hubble_bridge.mapping.metrics.families.flows_to_world import FlowsToWorldFamily
from hubble_bridge.mapping.metrics.families.http import HttpFamily, HttpV2Family
from hubble_bridge.mapping.metrics.families.icmp import IcmpFamily
from hubble_bridge.mapping.metrics.families.kafka import KafkaFamily
from hubble_bridge.mapping.metrics.families.policy import PolicyFamily
from hubble_bridge.mapping.metrics.families.port_distribution import PortDistributionFamily
from hubble_bridge.mapping.metrics.families.service_graph import ServiceGraphFamily
from hubble_bridge.mapping.metrics.families.sidecar_bytes import SidecarBytesFamily
from hubble_bridge.mapping.metrics.families.tcp import TcpFamily
from hubble_bridge.mapping.metrics.options import CONTEXT_OPTION_KEYS, ContextOptions, parse_metric_list

FAMILIES: dict[str, type[Family]] = {
    cls.name: cls
    for cls in (
        FlowFamily,
        DropFamily,
        TcpFamily,
        PortDistributionFamily,
        IcmpFamily,
        DnsFamily,
        HttpFamily,
        HttpV2Family,
        KafkaFamily,
        PolicyFamily,
        FlowsToWorldFamily,
        SidecarBytesFamily,
        ServiceGraphFamily,
    )
}


def build_families(entries: list[str], limit: int, errors: list[str]) -> list[Family]:
    """The families named in `entries`, in order; every problem is appended to `errors`."""
    specs = parse_metric_list(entries, errors)
    names = {spec.name for spec in specs}
    # Families with identical context options share one ContextOptions, so its per-flow cache is shared.
    contexts: dict[frozenset[tuple[str, str]], ContextOptions] = {}
    families: list[Family] = []
    for spec in specs:
        where = f"metrics family {spec.name!r}"
        cls = FAMILIES.get(spec.name)
        if cls is None:
            known = sorted(FAMILIES)
            errors.append(f"metrics: unknown family {spec.name!r} in {spec.text!r}; known: {known}")
            continue
        clash = sorted(cls.conflicts & names)
        if clash and spec.name < clash[0]:  # report a conflicting pair once
            errors.append(f"{where} conflicts with {clash[0]!r}; enable only one")
        unknown = sorted(set(spec.options) - CONTEXT_OPTION_KEYS - cls.flags)
        if unknown:
            known = sorted(CONTEXT_OPTION_KEYS | cls.flags)
            errors.append(f"{where}: unknown option(s) {unknown} in {spec.text!r}; known: {known}")
        context_items = frozenset((k, v) for k, v in spec.options.items() if k in CONTEXT_OPTION_KEYS)
        context = contexts.get(context_items)
        if context is None:
            context = contexts[context_items] = ContextOptions(dict(context_items), errors, where)
        flags = {k: v for k, v in spec.options.items() if k in cls.flags}
        families.append(cls(context, flags, limit, errors))
    return families
