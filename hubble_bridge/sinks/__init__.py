"""Sinks: telemetry records out to OTLP (gRPC, HTTP), an OTLP-JSON file and Prometheus.

Sinks take `hubble_bridge.telemetry` records only; they never read Flow protos.
"""
