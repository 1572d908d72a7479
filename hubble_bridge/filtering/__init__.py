"""Hubble FlowFilter semantics, split by concern; import from hubble_bridge.filters."""
