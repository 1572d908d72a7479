"""Scale-out: several flow streams (per-node Hubble servers or several Relays) over N worker processes.

The parent (`parent.ScaleOut`) discovers streams, assigns each to exactly one
worker process (`plan.plan_assignment`), restarts workers that die, and merges
their metric snapshots (`mapping.merge`) into the one metric stream it exports;
each worker (`worker.worker_main`) runs a Bridge over its streams and exports its
own spans and logs. See docs/scaling.md.
"""

from __future__ import annotations

import importlib
from typing import Any

# Imported on first use: hubble_bridge.config needs ScaleOutConfig, and the runner needs the config.
_EXPORTS = {
    "ScaleOutConfig": "config",
    "ScaleResult": "measure",
    "measure_scale": "measure",
    "ScaleOut": "parent",
    "plan_assignment": "plan",
    "run_scaleout": "run",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(name)
    return getattr(importlib.import_module(f"hubble_bridge.scaleout.{_EXPORTS[name]}"), name)
