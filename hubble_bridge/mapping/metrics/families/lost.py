"""hubble_lost_events_total{source}: events lost before they became flows.

Not a configurable family: Hubble always registers it. `source` is the
LostEventSource in lower case (perf_event_ring_buffer, observer_events_queue,
hubble_ring_buffer).
"""

from __future__ import annotations

from hubble_bridge.api import flow_pb2
from hubble_bridge.mapping.metrics.names import LOST_EVENT_SOURCE
from hubble_bridge.mapping.metrics.series import Counter, Series


class LostEvents:
    def __init__(self, limit: int) -> None:
        self.lost = Counter("hubble.lost_events", "Number of lost events", ("source",), limit)

    def add(self, event: flow_pb2.LostEvent) -> None:
        source = LOST_EVENT_SOURCE.get(event.source) or str(event.source)
        self.lost.inc((source.lower(),), event.num_events_lost)

    def series(self) -> list[Series]:
        return [self.lost]
