"""Hubble metric families (cilium pkg/hubble/metrics) aggregated in plain structures.

Configure with Hubble's own list syntax, e.g.
`["flow", "drop:sourceContext=namespace;destinationContext=namespace", "dns:query;ignoreAAAA"]`;
metric and label names are Hubble's, so its Grafana dashboards keep working.
"""

from hubble_bridge.mapping.metrics.aggregator import DEFAULT_FAMILIES, MetricsAggregator, MetricsConfig
from hubble_bridge.mapping.metrics.registry import FAMILIES

__all__ = ["DEFAULT_FAMILIES", "FAMILIES", "MetricsAggregator", "MetricsConfig"]
