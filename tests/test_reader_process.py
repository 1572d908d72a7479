"""The Relay source in a child process, against a real gRPC server (`hubble-otlp replay`).

It must deliver exactly the events the in-process source delivers, in order, as
bytes; report a dead child in one line; stop its child on close(); and feed a
Bridge to the same telemetry as the in-process source.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest

from hubble_bridge.api import observer_pb2
from hubble_bridge.config import SourceConfig, load_config
from hubble_bridge.errors import BridgeError
from hubble_bridge.pipeline import Bridge
from hubble_bridge.sources.files import read_events
from hubble_bridge.sources.reader_process import ReaderProcessSource
from hubble_bridge.sources.resilient import ResilientRelaySource
from hubble_bridge.telemetry import LogRecord, MetricsSnapshot, SpanRecord
from tests.conftest import run_cli
from tests.procs import CliProcess, free_port

FLOWS = 2500
GetFlowsResponse = observer_pb2.GetFlowsResponse


@pytest.fixture(scope="module")
def flows_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("flows") / "flows.jsonl"
    assert run_cli("generate", "--count", str(FLOWS), "--seed", "5", "-o", str(out)).returncode == 0
    return out


@pytest.fixture(scope="module")
def relay(flows_file: Path) -> CliProcess:
    port = free_port()
    with CliProcess("replay", str(flows_file), "--listen", f"127.0.0.1:{port}") as proc:
        proc.wait_for_line(r"serving \d+ events")
        proc.address = f"127.0.0.1:{port}"  # type: ignore[attr-defined]
        yield proc


def test_delivers_every_event_once_in_order_as_bytes(relay: CliProcess, flows_file: Path) -> None:
    source = ReaderProcessSource(SourceConfig(relay=relay.address, first=FLOWS))  # type: ignore[attr-defined]
    got = list(source)
    assert all(type(frame) is bytes for frame in got)
    expected = list(read_events([flows_file]))
    assert [GetFlowsResponse.FromString(frame) for frame in got] == expected
    assert source.duplicates == 0 and source.invalid_messages == 0
    assert source._process.poll() == 0


def test_batches_hold_at_most_one_pipe_message(relay: CliProcess) -> None:
    source = ReaderProcessSource(SourceConfig(relay=relay.address, first=FLOWS))  # type: ignore[attr-defined]
    sizes = [len(batch) for batch in source.batches()]
    assert sum(sizes) == FLOWS
    assert max(sizes) <= 512


def test_close_stops_the_child_and_ends_iteration_quietly(relay: CliProcess) -> None:
    # follow: the stream stays open after the buffered events, as with a live Relay
    source = ReaderProcessSource(SourceConfig(relay=relay.address, number=FLOWS))  # type: ignore[attr-defined]
    seen = 0
    for _ in source:
        seen += 1
        if seen == FLOWS:
            source.close()  # from the consuming thread; the bridge calls it from another
    assert seen == FLOWS
    assert source._process.poll() is not None
    assert not source.connected.is_set()


@pytest.mark.parametrize(("set_by_user", "expected"), [(None, "2"), ("4", "4")])
def test_the_child_caps_malloc_arenas_unless_the_user_did(
    relay: CliProcess, monkeypatch: pytest.MonkeyPatch, set_by_user: str | None, expected: str
) -> None:
    if set_by_user is None:
        monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    else:
        monkeypatch.setenv("MALLOC_ARENA_MAX", set_by_user)
    source = ReaderProcessSource(SourceConfig(relay=relay.address, number=FLOWS))  # type: ignore[attr-defined]
    batches = source.batches()
    next(batches)  # the child runs and reads
    environ = Path(f"/proc/{source._process.pid}/environ").read_bytes().split(b"\0")
    source.close()
    for _ in batches:
        pass
    assert f"MALLOC_ARENA_MAX={expected}".encode() in environ


def assert_a_killed_child_is_one_clear_error(source: ReaderProcessSource, where: str) -> None:
    """Kill the child after its first batch: the next read raises one line naming the source."""
    batches = source.batches()
    next(batches)
    os.kill(source._process.pid, signal.SIGKILL)
    with pytest.raises(BridgeError, match=rf"reader process for {where} exited \(killed by signal 9\)"):
        for _ in batches:
            pass


def test_a_killed_reader_process_is_one_clear_error(relay: CliProcess) -> None:
    source = ReaderProcessSource(SourceConfig(relay=relay.address, number=FLOWS))  # type: ignore[attr-defined]
    assert_a_killed_child_is_one_clear_error(source, r"127\.0\.0\.1:\d+")


def test_a_bad_filter_is_reported_from_the_child_in_one_line(relay: CliProcess) -> None:
    config = SourceConfig(relay=relay.address, first=10, whitelist=[{"no_such_field": 1}])  # type: ignore[attr-defined]
    with pytest.raises(BridgeError) as caught:
        list(ReaderProcessSource(config))
    message = str(caught.value)
    assert "no_such_field" in message and "\n" not in message and "Traceback" not in message


def test_close_before_start_starts_nothing(relay: CliProcess) -> None:
    source = ReaderProcessSource(SourceConfig(relay=relay.address, first=10))  # type: ignore[attr-defined]
    source.close()
    assert list(source) == []
    assert source._process is None


class _Collect:
    def __init__(self) -> None:
        self.spans: list[SpanRecord] = []
        self.logs: list[LogRecord] = []
        self.snapshots: list[MetricsSnapshot] = []
        self.lock = threading.Lock()

    def export_traces(self, spans: Sequence[SpanRecord]) -> bool:
        with self.lock:
            self.spans.extend(spans)
        return True

    def export_logs(self, logs: Sequence[LogRecord]) -> bool:
        with self.lock:
            self.logs.extend(logs)
        return True

    def export_metrics(self, snapshots: Sequence[MetricsSnapshot]) -> bool:
        with self.lock:
            self.snapshots.extend(snapshots)
        return True

    def shutdown(self) -> None:
        pass


def _flow_metrics(snapshot: MetricsSnapshot) -> dict[str, list[tuple[object, ...]]]:
    return {
        f.name: sorted(
            (tuple(sorted(p.attributes)), getattr(p, "value", None), getattr(p, "count", None))
            for p in f.points
        )
        for f in snapshot.families
        if f.name.startswith("hubble.")
    }


def test_bridge_makes_the_same_telemetry_with_either_source(relay: CliProcess) -> None:
    outputs = []
    for make in (ReaderProcessSource, ResilientRelaySource):
        config = load_config({"source": {"relay": relay.address, "first": FLOWS}}, environ={})  # type: ignore[attr-defined]
        sink = _Collect()
        bridge = Bridge(config, make(config.source), [sink])
        assert bridge.run() == 0
        assert bridge.stats.total("flows.received") == FLOWS
        outputs.append(sink)
    via_process, in_process = outputs
    assert len(via_process.spans) == len(in_process.spans) > 0
    assert [(s.trace_id, s.name, s.attributes) for s in via_process.spans] == [
        (s.trace_id, s.name, s.attributes) for s in in_process.spans
    ]
    assert [(r.body, r.attributes) for r in via_process.logs] == [
        (r.body, r.attributes) for r in in_process.logs
    ]
    assert _flow_metrics(via_process.snapshots[-1]) == _flow_metrics(in_process.snapshots[-1])


@pytest.mark.parametrize(
    ("setting", "cpus", "expected"),
    [("on", 1, True), ("off", 8, False), ("auto", 1, False), ("auto", 2, True)],
)
def test_reader_process_setting(
    monkeypatch: pytest.MonkeyPatch, setting: str, cpus: int, expected: bool
) -> None:
    from hubble_bridge.app import use_reader_process

    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(cpus)), raising=False)
    assert use_reader_process(SourceConfig(relay="relay:4245", reader_process=setting)) is expected  # type: ignore[arg-type]


def test_reader_process_flag_and_bad_value() -> None:
    from hubble_bridge.errors import ConfigError

    assert (
        load_config(
            {"source": {"relay": "r:4245", "reader_process": "off"}}, environ={}
        ).source.reader_process
        == "off"
    )
    with pytest.raises(ConfigError, match="reader_process"):
        load_config({"source": {"relay": "r:4245", "reader_process": "sometimes"}}, environ={})
    done = run_cli("bridge", "--relay", "r:4245", "--reader-process", "sometimes")
    assert done.returncode == 2 and "invalid choice" in done.stderr


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_to_the_process_group_stops_cleanly(relay: CliProcess, tmp_path: Path, sig: int) -> None:
    """Ctrl-C in a terminal (or a SIGTERM to the group) reaches the reader process too: it must leave
    the stopping to the bridge, with no traceback and no "reader process exited" error."""
    out = tmp_path / "out.jsonl"
    bridge = subprocess.Popen(
        [sys.executable, "-m", "hubble_bridge.cli", "bridge", "--relay", relay.address,  # type: ignore[attr-defined]
         "--number", "100", "--no-otlp", "--output", str(out), "--reader-process", "on"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    assert bridge.stdout is not None
    lines = []
    for line in bridge.stdout:  # the stream is open once the reader process reports the connection
        lines.append(line)
        if "connected to" in line:
            break
    os.killpg(bridge.pid, sig)
    rest, _ = bridge.communicate(timeout=60)
    output = "".join(lines) + rest
    assert bridge.returncode == 0, output
    assert "Traceback" not in output and "reader process" not in output, output
    assert "stopped:" in output
    # the child's log lines keep their own logger's name
    assert "hubble_bridge.sources.resilient: connected to" in output
