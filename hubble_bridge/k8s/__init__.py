"""Kubernetes integration: pod and service metadata for endpoints (metadata.py)."""
