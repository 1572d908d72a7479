"""hubble-otlp: Cilium Hubble network flows to OpenTelemetry spans, metrics and logs."""

__version__ = "0.1.0"
