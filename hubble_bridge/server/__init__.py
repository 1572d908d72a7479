"""The Observer gRPC server (Hubble Relay's API) over an in-memory event store: replay and sidecar."""
