"""Flow sources: each yields GetFlowsResponse messages and knows nothing of OpenTelemetry."""
