"""Kubernetes integration: leader election on Leases (leader.py), pod and service metadata (metadata.py)."""
