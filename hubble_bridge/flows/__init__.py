"""Decoded flows: Hubble events as GetFlowsResponse messages, and their JSON form."""
