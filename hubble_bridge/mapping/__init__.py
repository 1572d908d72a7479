"""Mapping: flows in, telemetry records out. Pure code: no I/O, no SDK, no globals."""
