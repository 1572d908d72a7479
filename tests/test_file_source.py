"""FileSource against real recorded flows, hand-written bad lines, gzip backups and a live, rotating log."""

from __future__ import annotations

import gzip
import queue
import threading
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from hubble_bridge.api import flow_pb2, observer_pb2
from hubble_bridge.errors import BridgeError, ConfigError
from hubble_bridge.flows.codec import parse_json_line
from hubble_bridge.sources import files
from hubble_bridge.sources.files import FileProblem, FileSource, read_events

FLOWS = Path(__file__).resolve().parents[1].parent / "shared" / "flows"
REAL_FILES = sorted(FLOWS.glob("*.jsonl"))
TIMEOUT_S = 5.0
_END = object()


def _real_lines(name: str = "gke-istio-http-348.jsonl") -> list[bytes]:
    return (FLOWS / name).read_bytes().splitlines()


def _flow_line(node: str, i: int) -> bytes:
    """A small valid GetFlowsResponse line, told apart by node name and source port."""
    return orjson.dumps(
        {
            "flow": {
                "time": "2026-01-01T00:00:00Z",
                "verdict": "FORWARDED",
                "l4": {"TCP": {"source_port": i}},
            },
            "node_name": node,
            "time": "2026-01-01T00:00:00Z",
        }
    )


def _key(event: observer_pb2.GetFlowsResponse) -> tuple[str, int]:
    return event.node_name, event.flow.l4.TCP.source_port


class Consumer:
    """Drives a FileSource on its own thread; the test waits on its queue, never on a clock."""

    def __init__(self, source: FileSource) -> None:
        self.source = source
        self.queue: queue.Queue[object] = queue.Queue()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            for event in self.source:
                self.queue.put(event)
        except BaseException as exc:
            self.error = exc
        finally:
            self.queue.put(_END)

    def take(self, n: int) -> list[tuple[str, int]]:
        got = []
        for _ in range(n):
            item = self.queue.get(timeout=TIMEOUT_S)
            assert item is not _END, f"source ended early: {self.error!r}"
            assert isinstance(item, observer_pb2.GetFlowsResponse)
            got.append(_key(item))
        return got

    def stop(self) -> None:
        self.source.close()
        while (item := self.queue.get(timeout=TIMEOUT_S)) is not _END:
            pytest.fail(f"unexpected event after the test's last one: {item}")
        self.thread.join(TIMEOUT_S)
        assert not self.thread.is_alive()
        assert self.error is None


@pytest.fixture
def follow(tmp_path: Path) -> Iterator[tuple[Path, list[FileProblem], Consumer]]:
    log = tmp_path / "events.log"
    problems: list[FileProblem] = []
    consumer = Consumer(FileSource([log], follow=True, on_problem=problems.append, poll_interval_s=0.01))
    yield log, problems, consumer
    consumer.source.close()


def _append(path: Path, data: bytes) -> None:
    with path.open("ab") as f:
        f.write(data)


def test_real_files_give_every_event_and_no_problem() -> None:
    problems: list[FileProblem] = []
    source = FileSource(REAL_FILES, on_problem=problems.append)
    events = list(source)
    assert len(REAL_FILES) == 3
    assert len(events) == 680
    assert problems == []
    assert (source.events, source.invalid_lines, source.non_flow_events, source.filtered) == (680, 0, 0, 0)
    # In the order of the paths: dns (330), then http (348), then the two drops.
    assert events[0].flow.l7.WhichOneof("record") == "dns"
    assert events[330].flow.l7.WhichOneof("record") == "http"
    assert [e.flow.drop_reason_desc for e in events[-2:]] == [
        flow_pb2.DropReason.INVALID_SOURCE_IP,
        flow_pb2.DropReason.POLICY_DENIED,
    ]
    assert events[-1].node_name == "kind-kind/kind-worker"
    assert events[-1].flow.l4.TCP.flags.SYN


def test_accept_filters_and_counts() -> None:
    source = FileSource(REAL_FILES, accept=lambda e: e.flow.verdict == flow_pb2.Verdict.DROPPED)
    dropped = list(source)
    text_count = sum(f.read_text().count('"verdict":"DROPPED"') for f in REAL_FILES)
    assert len(dropped) == text_count == 2
    assert (source.events, source.filtered) == (2, 678)


def test_bad_lines_are_reported_and_skipped(tmp_path: Path) -> None:
    good = _real_lines()[:3]
    path = tmp_path / "events.log"
    path.write_bytes(
        b"\n".join(
            [
                good[0],
                b"{not json",
                good[1],
                b'{"flow":{"bogus":1},"node_name":"n"}',
                b"",
                b"   \t",
                b'{"flow":{"verdict":"NOPE"},"node_name":"n"}',
                b"[1, 2]",
                good[2],
            ]
        )
        + b"\n"
    )
    problems: list[FileProblem] = []
    source = FileSource([path], on_problem=problems.append)
    events = list(source)
    assert events == [parse_json_line(line) for line in good]
    assert [(p.path, p.line) for p in problems] == [
        (str(path), 2),
        (str(path), 4),
        (str(path), 7),
        (str(path), 8),
    ]
    assert problems[0].reason.startswith("invalid JSON: ")
    assert '"bogus"' in problems[1].reason
    assert "flow.verdict" in problems[2].reason and "flow.Verdict" in problems[2].reason
    assert "NOPE" not in problems[2].reason  # values are never repeated: one may be a credential
    assert problems[3].reason == "expected a JSON object, got list"
    assert str(problems[3]) == f"{path}:8: expected a JSON object, got list"
    assert (source.invalid_lines, source.events) == (4, 3)


def _bare_flows_file(tmp_path: Path, *, keep_node_name: bool) -> tuple[Path, list[dict]]:
    originals = [orjson.loads(line)["flow"] for line in _real_lines()[:2]]
    if not keep_node_name:
        for flow in originals:
            del flow["node_name"]
    path = tmp_path / "legacy.json"
    # CRLF, and no newline after the last line: at the end of a file read once it still counts.
    path.write_bytes(b"\r\n".join(orjson.dumps(flow) for flow in originals))
    return path, originals


def _assert_bare_flows_served(path: Path, originals: list[dict]) -> None:
    problems: list[FileProblem] = []
    events = list(read_events([path], on_problem=problems.append))
    assert problems == []
    assert len(events) == 2
    for event, original in zip(events, originals, strict=True):
        assert event.flow.IP.source == original["IP"]["source"]
        assert event.node_name == original.get("node_name", "")
        assert event.time == event.flow.time


def test_bare_flow_lines_and_crlf(tmp_path: Path) -> None:
    _assert_bare_flows_served(*_bare_flows_file(tmp_path, keep_node_name=False))


def test_bare_flow_lines_with_node_name(tmp_path: Path) -> None:
    _assert_bare_flows_served(*_bare_flows_file(tmp_path, keep_node_name=True))


def test_exporter_agent_and_debug_events_are_counted_and_skipped(tmp_path: Path) -> None:
    agent = {
        "agent_event": {"type": "AGENT_STARTED", "agent_start": {"time": "2026-01-01T00:00:00Z"}},
        "node_name": "n1",
        "time": "2026-01-01T00:00:00Z",
    }
    debug = {"debug_event": {"type": "DBG_GENERIC", "message": "hello"}, "node_name": "n1"}
    path = tmp_path / "events.log"
    path.write_bytes(
        b"\n".join([orjson.dumps(agent), _flow_line("n1", 1), orjson.dumps(debug), _flow_line("n1", 2)])
    )
    source = FileSource([path])
    assert [_key(e) for e in source] == [("n1", 1), ("n1", 2)]
    assert (source.non_flow_events, source.events, source.invalid_lines) == (2, 2, 0)


def test_gzip_backups_then_plain_in_the_order_given(tmp_path: Path) -> None:
    backup = tmp_path / "events-2026-01-01T00-00-00.000.log.gz"
    backup.write_bytes(gzip.compress(b"\n".join(_flow_line("old", i) for i in range(3)) + b"\n"))
    live = tmp_path / "events.log"
    live.write_bytes(_flow_line("live", 9) + b"\n")
    keys = [_key(e) for e in read_events([backup, live])]
    assert keys == [("old", 0), ("old", 1), ("old", 2), ("live", 9)]
    assert next(_key(e) for e in read_events([live, backup])) == ("live", 9)


def test_corrupt_gzip_is_a_problem_and_the_next_file_is_read(tmp_path: Path) -> None:
    whole = gzip.compress(b"".join(_flow_line("old", i) + b"\n" for i in range(2000)))
    broken = tmp_path / "events-1.log.gz"
    broken.write_bytes(whole[: len(whole) // 2])
    live = tmp_path / "events.log"
    live.write_bytes(_flow_line("live", 1) + b"\n")
    problems: list[FileProblem] = []
    keys = [_key(e) for e in read_events([broken, live], on_problem=problems.append)]
    assert keys[-1] == ("live", 1)
    served_from_backup = len(keys) - 1
    assert all(k == ("old", i) for i, k in enumerate(keys[:-1]))
    assert len(problems) == 1
    assert problems[0].path == str(broken)
    assert problems[0].line == served_from_backup + 1
    assert problems[0].reason.startswith("corrupt gzip data")


def test_missing_file_is_one_clear_error_before_any_event(tmp_path: Path) -> None:
    present = tmp_path / "a.log"
    present.write_bytes(_flow_line("a", 1) + b"\n")
    missing = tmp_path / "events.log"
    source = FileSource([present, missing])
    with pytest.raises(BridgeError) as err:
        next(iter(source))
    assert str(err.value) == f"cannot read {missing}: No such file or directory"
    with pytest.raises(BridgeError, match=r"^cannot read .*: Is a directory$"):
        list(read_events([tmp_path]))


def test_bad_arguments_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no flow files"):
        FileSource([])
    with pytest.raises(ConfigError, match=r"cannot follow .*\.gz"):
        FileSource([tmp_path / "events.log.gz"], follow=True)


def test_overlong_line_is_a_problem_and_reading_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "events.log"
    with path.open("wb") as f:
        f.write(_flow_line("n", 1) + b"\n")
        f.write(b'{"x":"' + b"a" * (17 << 20) + b'"}\n')
        f.write(_flow_line("n", 3) + b"\n")
    problems: list[FileProblem] = []
    keys = [_key(e) for e in read_events([path], on_problem=problems.append)]
    assert keys == [("n", 1), ("n", 3)]
    assert [(p.line, p.reason) for p in problems] == [(2, f"line longer than {16 << 20} bytes")]


def test_follow_reads_appends_and_holds_partial_lines(
    follow: tuple[Path, list[FileProblem], Consumer],
) -> None:
    log, problems, consumer = follow
    # The file does not exist yet: like tail -F, the source waits for it.
    log.write_bytes(_flow_line("n", 1) + b"\n")
    assert consumer.take(1) == [("n", 1)]
    half = _flow_line("n", 3)
    # One write: the reader gets line 2 and the first half of line 3 together.
    _append(log, _flow_line("n", 2) + b"\n" + half[:20])
    assert consumer.take(1) == [("n", 2)]
    _append(log, half[20:] + b"\n" + _flow_line("n", 4) + b"\n")
    assert consumer.take(2) == [("n", 3), ("n", 4)]
    consumer.stop()
    assert problems == []
    assert consumer.source.events == 4


def test_follow_rotation_loses_nothing_written_before_the_rename(
    follow: tuple[Path, list[FileProblem], Consumer],
) -> None:
    log, problems, consumer = follow
    log.write_bytes(_flow_line("old", 1) + b"\n")
    assert consumer.take(1) == [("old", 1)]
    _append(log, _flow_line("old", 2) + b"\n")
    log.rename(log.with_name("events-1.log"))
    _append(log.with_name("events-1.log"), _flow_line("old", 3) + b"\n")
    log.write_bytes(_flow_line("new", 1) + b"\n")
    assert consumer.take(3) == [("old", 2), ("old", 3), ("new", 1)]
    _append(log, _flow_line("new", 2) + b"\n")
    assert consumer.take(1) == [("new", 2)]
    consumer.stop()
    assert problems == []


def test_follow_drains_lines_written_between_eof_and_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "events.log"
    log.write_bytes(_flow_line("old", 1) + b"\n")
    armed = threading.Event()
    real_replaced = files._replaced

    def writer_races_the_reader(path: str, identity: tuple[int, int]) -> bool:
        # The reader has just seen EOF; the writer appends, rotates and starts a new file right now.
        if armed.is_set():
            armed.clear()
            _append(log, _flow_line("old", 2) + b"\n" + b'{"flow":')
            log.rename(tmp_path / "events-1.log")
            log.write_bytes(_flow_line("new", 1) + b"\n")
        return real_replaced(path, identity)

    monkeypatch.setattr(files, "_replaced", writer_races_the_reader)
    problems: list[FileProblem] = []
    consumer = Consumer(FileSource([log], follow=True, on_problem=problems.append, poll_interval_s=0.01))
    assert consumer.take(1) == [("old", 1)]
    armed.set()
    assert consumer.take(2) == [("old", 2), ("new", 1)]
    consumer.stop()
    # The old file's unfinished last line is reported, not glued to the new file's first line.
    assert [(p.path, p.line) for p in problems] == [(str(log), 3)]


def test_follow_truncation_rereads_from_the_start(
    follow: tuple[Path, list[FileProblem], Consumer],
) -> None:
    log, problems, consumer = follow
    log.write_bytes(b"".join(_flow_line("before", i) + b"\n" for i in range(3)))
    assert consumer.take(3) == [("before", 0), ("before", 1), ("before", 2)]
    inode = log.stat().st_ino
    with log.open("r+b") as f:
        f.truncate(0)
        f.write(_flow_line("after", 1) + b"\n")
    assert log.stat().st_ino == inode
    assert consumer.take(1) == [("after", 1)]
    consumer.stop()
    assert problems == []


def test_follow_reads_earlier_files_once_then_tails_the_last(tmp_path: Path) -> None:
    backup = tmp_path / "events-1.log.gz"
    backup.write_bytes(gzip.compress(_flow_line("backup", 1) + b"\n"))
    log = tmp_path / "events.log"
    log.write_bytes(_flow_line("live", 1) + b"\n")
    consumer = Consumer(FileSource([backup, log], follow=True, poll_interval_s=0.01))
    assert consumer.take(2) == [("backup", 1), ("live", 1)]
    _append(log, _flow_line("live", 2) + b"\n")
    assert consumer.take(1) == [("live", 2)]
    consumer.stop()


def test_close_from_another_thread_interrupts_a_long_wait(tmp_path: Path) -> None:
    log = tmp_path / "events.log"
    log.write_bytes(_flow_line("n", 1) + b"\n")
    # A poll interval far beyond the test timeout: only close() can end the wait in time.
    consumer = Consumer(FileSource([log], follow=True, poll_interval_s=3600))
    assert consumer.take(1) == [("n", 1)]
    consumer.stop()


def test_close_while_waiting_for_a_missing_file(tmp_path: Path) -> None:
    consumer = Consumer(FileSource([tmp_path / "later.log"], follow=True, poll_interval_s=3600))
    consumer.stop()
    assert consumer.source.events == 0


def test_unreadable_followed_path_is_an_error(tmp_path: Path) -> None:
    consumer = Consumer(FileSource([tmp_path], follow=True, poll_interval_s=0.01))
    assert consumer.queue.get(timeout=TIMEOUT_S) is _END
    consumer.thread.join(TIMEOUT_S)
    assert isinstance(consumer.error, BridgeError)
    assert str(consumer.error) == f"cannot read {tmp_path}: Is a directory"


def test_progress_counts_the_bytes_on_disk_of_plain_and_gzip_files(tmp_path: Path) -> None:
    recorded = (FLOWS / "kind-drops-2.jsonl").read_bytes()
    plain = tmp_path / "events.log"
    plain.write_bytes(recorded)
    packed = tmp_path / "events-1.log.gz"
    packed.write_bytes(gzip.compress(recorded))
    source = FileSource([packed, plain])
    seen = []
    for _ in source:
        seen.append(source.bytes_read)
    assert source.bytes_total == plain.stat().st_size + packed.stat().st_size
    assert seen == sorted(seen) and 0 < seen[0] < source.bytes_total
    assert source.bytes_read == source.bytes_total
