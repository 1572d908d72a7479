"""A deterministic generator of realistic Hubble flows, for tests, demos and benchmarks.

It simulates a small Cilium 1.19 cluster (shop, data, monitoring, kube-system and
ingress namespaces over 3-5 nodes) and yields what Hubble Relay would stream:
L7 HTTP/DNS/Kafka, L3/L4 traces, policy verdicts, drops, socket translations, and
now and then lost events and node status changes.
"""

from hubble_bridge.generator.output import run_generate, write_jsonl
from hubble_bridge.generator.stream import DEFAULT_START_NS, generate_responses

__all__ = ["DEFAULT_START_NS", "generate_responses", "run_generate", "write_jsonl"]
