"""The young-generation threshold is raised while a Bridge runs, and given back afterwards."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator, Sequence

import pytest

from hubble_bridge.bench.measure import FrameSource
from hubble_bridge.config import load_config
from hubble_bridge.gc_tuning import YOUNG_THRESHOLD, young_threshold_raised
from hubble_bridge.generator import generate_responses
from hubble_bridge.pipeline import Bridge
from hubble_bridge.telemetry import LogRecord, MetricsSnapshot, SpanRecord


@pytest.fixture(autouse=True)
def _defaults() -> Iterator[None]:
    before = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    yield
    gc.set_threshold(*before)


def test_raised_inside_and_restored_after() -> None:
    with young_threshold_raised():
        assert gc.get_threshold() == (YOUNG_THRESHOLD, 10, 10)
    assert gc.get_threshold() == (700, 10, 10)


def test_nested_holders_restore_only_when_the_last_one_leaves() -> None:
    with young_threshold_raised():
        with young_threshold_raised():
            assert gc.get_threshold()[0] == YOUNG_THRESHOLD
        assert gc.get_threshold()[0] == YOUNG_THRESHOLD  # the outer holder is still running
    assert gc.get_threshold() == (700, 10, 10)


def test_restored_when_the_body_raises() -> None:
    with pytest.raises(RuntimeError), young_threshold_raised():
        raise RuntimeError("boom")
    assert gc.get_threshold() == (700, 10, 10)


def test_a_higher_threshold_is_kept_and_a_disabled_collector_stays_disabled() -> None:
    gc.set_threshold(500_000, 5, 5)
    with young_threshold_raised():
        assert gc.get_threshold() == (500_000, 5, 5)
    gc.set_threshold(0, 10, 10)  # threshold 0 disables collection
    with young_threshold_raised():
        assert gc.get_threshold()[0] == 0
    assert gc.get_threshold() == (0, 10, 10)


class _ThresholdsSeen:
    """A sink that notes the collector's thresholds each time the exporter thread calls it."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, int, int]] = []
        self.lock = threading.Lock()

    def _note(self) -> bool:
        with self.lock:
            self.seen.append(gc.get_threshold())
        return True

    def export_traces(self, spans: Sequence[SpanRecord]) -> bool:
        return self._note()

    def export_logs(self, logs: Sequence[LogRecord]) -> bool:
        return self._note()

    def export_metrics(self, snapshots: Sequence[MetricsSnapshot]) -> bool:
        return self._note()

    def shutdown(self) -> None:
        pass


def test_a_bridge_runs_with_the_threshold_raised_and_gives_it_back() -> None:
    frames = [r.SerializeToString() for r in generate_responses(2000, seed=3)]
    sink = _ThresholdsSeen()
    bridge = Bridge(load_config({}, environ={}), FrameSource(frames), [sink])
    assert bridge.run() == 0
    assert sink.seen, "the bridge exported nothing"
    assert all(t == (YOUNG_THRESHOLD, 10, 10) for t in sink.seen)
    assert gc.get_threshold() == (700, 10, 10)
    assert bridge.stats.total("flows.received") == 2000
