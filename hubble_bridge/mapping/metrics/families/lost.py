"""hubble_lost_events_total{source}: events lost before they became flows.

Not a configurable family: Hubble always registers it. `source` is the
LostEventSource in lower case (perf_event_ring_buffer, observer_events_queue,
hubble_ring_buffer).
"""

from __future__ import annotations

from hubble_bridge.api import flow_pb2
from hubble_bridge.mapping.limits import INT64_MAX
from hubble_bridge.mapping.metrics.names import LOST_EVENT_SOURCE
from hubble_bridge.mapping.metrics.series import Counter, Series


class LostEvents:
    def __init__(self, limit: int) -> None:
        self.lost = Counter("hubble.lost_events", "Number of lost events", ("source",), limit)
        self._total = 0

    def add(self, event: flow_pb2.LostEvent) -> None:
        source = LOST_EVENT_SOURCE.get(event.source) or str(event.source)
        # Saturate: one hostile count near 2**64 would otherwise overflow OTLP's int64 sum for good.
        n = min(event.num_events_lost, INT64_MAX - self._total)
        self._total += n
        self.lost.inc((source.lower(),), n)

    def series(self) -> list[Series]:
        return [self.lost]
