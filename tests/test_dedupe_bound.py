"""The Relay source's dedupe remembers at most `max_keys` events, whatever the flow rate.

At 50k flows/s the 10 s time window alone held ~500 000 keys (~100 MB in the reader process,
measured: 78 -> 176 MB). With the bound, the oldest keys are forgotten and a resumed stream starts
after the newest forgotten time, so that every event Relay replays is one the dedupe remembers:
nothing doubled, nothing lost, with real `hubble-otlp replay` processes killed mid-stream.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from hubble_bridge.api import flow_pb2, observer_pb2
from hubble_bridge.config import load_config
from hubble_bridge.sources.files import read_events
from hubble_bridge.sources.resilient import DEDUPE_WINDOW_NS, ResilientRelaySource
from tests.conftest import run_cli
from tests.procs import CliProcess, free_port

FLOWS = 3000
MAX_KEYS = 100  # far below what the stream's time window holds (all 3000 events)


def _source(
    relay: str, max_keys: int, on_reconnect: Callable[[], None] | None = None
) -> ResilientRelaySource:
    config = load_config({"source": {"relay": relay, "since": "2000-01-01T00:00:00Z"}}, environ={})
    return ResilientRelaySource(config.source, max_keys=max_keys, on_reconnect=on_reconnect)


def _event(uuid: str, t_ns: int) -> observer_pb2.GetFlowsResponse:
    response = observer_pb2.GetFlowsResponse(flow=flow_pb2.Flow(uuid=uuid))
    response.time.FromNanoseconds(t_ns)
    return response


def test_the_oldest_keys_are_forgotten_and_a_resume_starts_after_them() -> None:
    source = _source("127.0.0.1:1", max_keys=3)
    base = 1_700_000_000 * 10**9
    for i in range(1, 11):
        assert not source._seen(_event(f"u{i}", base + i))
    assert len(source._recent_keys) == 3  # u8, u9, u10
    assert source._seen(_event("u9", base + 9))  # remembered: dropped
    assert not source._seen(_event("u7", base + 7))  # forgotten: it would pass again...
    # ...so a resume asks for nothing at or before the newest forgotten time (u8's, forgotten just now
    # to make room for u7), though the time window alone would reach 5 s back.
    assert source.resume_since_ns() == base + 9 > source._last_ns - DEDUPE_WINDOW_NS


def test_without_forgetting_the_resume_point_is_the_time_window() -> None:
    source = _source("127.0.0.1:1", max_keys=1000)
    base = 1_700_000_000 * 10**9
    for i in range(10):
        source._seen(_event(f"u{i}", base + i))
    assert source.resume_since_ns() == base + 9 - DEDUPE_WINDOW_NS


def test_a_far_future_key_forgotten_never_moves_the_resume_point_past_the_last_time() -> None:
    source = _source("127.0.0.1:1", max_keys=2)
    base = 1_700_000_000 * 10**9
    source._seen(_event("future", base + 10**18))  # a broken clock: never the resume point
    for i in range(1, 5):
        source._seen(_event(f"u{i}", base + i))
    assert source.resume_since_ns() <= source._last_ns + 1 == base + 5


@pytest.fixture(scope="module")
def flows_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("flows") / "flows.jsonl"
    assert run_cli("generate", "--count", str(FLOWS), "--seed", "22", "-o", str(out)).returncode == 0
    return out


def _start_relay(flows_file: Path, port: int) -> CliProcess:
    relay = CliProcess("replay", str(flows_file), "--listen", f"127.0.0.1:{port}", "--rate", "1000")
    relay.wait_for_line(r"serving \d+ events")
    return relay


def test_relay_killed_three_times_with_a_small_bound_loses_and_doubles_nothing(flows_file: Path) -> None:
    expected = [r.flow.uuid for r in read_events([flows_file]) if r.HasField("flow")]
    assert len(expected) == len(set(expected)) > 2000
    port = free_port()
    relays = [_start_relay(flows_file, port)]
    reconnects: list[int] = []
    source = _source(f"127.0.0.1:{port}", max_keys=MAX_KEYS, on_reconnect=lambda: reconnects.append(1))
    got: list[str] = []
    cond = threading.Condition()
    failure: list[BaseException] = []

    def read() -> None:
        try:
            for event in source:
                if event.HasField("flow"):
                    with cond:
                        got.append(event.flow.uuid)
                        cond.notify_all()
        except BaseException as exc:  # reported by the test, not lost in the thread
            failure.append(exc)
            with cond:
                cond.notify_all()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        for restart in range(1, 4):
            mark = restart * len(expected) // 5
            with cond:
                assert cond.wait_for(lambda m=mark: len(got) >= m or failure, timeout=60), len(got)
            relays[-1].stop(signal.SIGKILL)
            relays.append(_start_relay(flows_file, port))
        with cond:
            assert cond.wait_for(lambda: len(got) >= len(expected) or failure, timeout=60), len(got)
    finally:
        source.close()
        reader.join(10)
        for relay in relays:
            relay.stop(signal.SIGKILL)
    assert not failure, failure
    assert len(reconnects) >= 3
    assert len(got) == len(set(got)), "an event was delivered twice"
    assert got == expected  # every event once, in order: nothing lost either
    assert source._forgotten_ns > 0  # the bound was what this test exercised
    assert len(source._recent_keys) <= MAX_KEYS
