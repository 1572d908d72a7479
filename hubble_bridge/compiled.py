"""Which modules a regular install compiles with Cython (setup.py), and which are compiled here.

They are plain Python modules; compiling them changes nothing but the CPU they
take (docs/performance.md). setup.py reads HOT from this file without importing
the package, so this module imports nothing of the package itself.
"""

from __future__ import annotations

import importlib
from importlib.machinery import EXTENSION_SUFFIXES

HOT = (
    "hubble_bridge.pipeline",
    "hubble_bridge.sources.resilient",
    "hubble_bridge.sources.relay",
    "hubble_bridge.sources.reader_process",
    "hubble_bridge.mapping.limits",
    "hubble_bridge.mapping.logs",
    "hubble_bridge.mapping.redact",
    "hubble_bridge.mapping.resource",
    "hubble_bridge.mapping.spans",
    "hubble_bridge.mapping.spans_attrs",
    "hubble_bridge.mapping.spans_context",
    "hubble_bridge.mapping.spans_join",
    "hubble_bridge.mapping.summary",
    "hubble_bridge.mapping.metrics.aggregator",
    "hubble_bridge.mapping.metrics.base",
    "hubble_bridge.mapping.metrics.facts",
    "hubble_bridge.mapping.metrics.http_semconv",
    "hubble_bridge.mapping.metrics.series",
    "hubble_bridge.mapping.metrics.families.dns",
    "hubble_bridge.mapping.metrics.families.drop",
    "hubble_bridge.mapping.metrics.families.flow",
    "hubble_bridge.mapping.metrics.families.flows_to_world",
    "hubble_bridge.mapping.metrics.families.http",
    "hubble_bridge.mapping.metrics.families.icmp",
    "hubble_bridge.mapping.metrics.families.kafka",
    "hubble_bridge.mapping.metrics.families.policy",
    "hubble_bridge.mapping.metrics.families.port_distribution",
    "hubble_bridge.mapping.metrics.families.service_graph",
    "hubble_bridge.mapping.metrics.families.tcp",
    "hubble_bridge.sinks.otlp_wire",
    # The file path (convert, a bridge over files): reading and parsing JSON lines, writing OTLP/JSON.
    "hubble_bridge.sources.files",
    "hubble_bridge.flows.codec",
    "hubble_bridge.flows.fastjson.decode",
    "hubble_bridge.sinks.otlp_json",
)


def compiled_modules() -> list[str]:
    """The HOT modules that this interpreter loads from compiled extension files."""
    compiled = []
    for name in HOT:
        origin = getattr(importlib.import_module(name), "__file__", None) or ""
        if origin.endswith(tuple(EXTENSION_SUFFIXES)):
            compiled.append(name)
    return compiled


def describe() -> str:
    """`compiled (32 modules)`, `pure Python`, or `partly compiled (n of 32)`, for the bench's table."""
    count = len(compiled_modules())
    if count == len(HOT):
        return f"compiled ({count} modules)"
    return "pure Python" if count == 0 else f"partly compiled ({count} of {len(HOT)})"
