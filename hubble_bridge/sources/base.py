"""The one interface every flow source implements."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from hubble_bridge.api import observer_pb2


class FlowSource(Protocol):
    """An iterator of Hubble events; `close()` may be called from another thread to stop it."""

    name: str

    def __iter__(self) -> Iterator[observer_pb2.GetFlowsResponse]: ...

    def close(self) -> None: ...
