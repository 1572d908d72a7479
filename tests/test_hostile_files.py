"""Flow files with garbage between the events: every bad line reported as path:line and reason,
counted, skipped; every good line still served, in order; no exception leaves the source.
"""

from __future__ import annotations

import gzip
import tempfile
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from hubble_bridge.errors import FlowDecodeError
from hubble_bridge.flows.codec import parse_json_line
from hubble_bridge.sources.files import FileProblem, FileSource
from tests.test_hostile_input import HYPOTHESIS, RECORDED_LINES, mutated

KNOWN_BAD = [
    b"{", b"[]", b"null", b"42", b'"flow"', b"{}", b'{"flow":{"verdict":"NOPE"}}', b'{"unknown":1}',
    b'{"flow":{"time":"yesterday"}}', b'{"flow":{"l4":{"TCP":{"source_port":-1}}}}', b"\xff\xfe{}",
    b'{"flow":{"node_name":"\xed\xa0\x80"}}', b'{"flow":{"IP":{"source":"\\ud800"}}}', b"\x00",
    b'{"flow":{"source":{"ID":4294967296}}}', b'{"flow":{}, "flow":{}}x',
]  # fmt: skip


def _one_line(data: bytes) -> bytes:
    return data.replace(b"\n", b"")


GARBAGE = st.one_of(
    st.sampled_from(KNOWN_BAD),
    st.binary(max_size=80).map(_one_line),
    st.text(max_size=80).map(lambda text: _one_line(text.encode("utf-8", "surrogatepass"))),
    mutated(RECORDED_LINES).map(_one_line),  # mostly still JSON, often no longer a Hubble event
)
LINES = st.lists(st.one_of(st.sampled_from(RECORDED_LINES), GARBAGE), min_size=1, max_size=25)


def expected_outcome(lines: list[bytes]) -> tuple[list[int], list[bytes]]:
    """(numbers of the lines that must be reported, the good lines in order), decided line by line."""
    bad: list[int] = []
    good: list[bytes] = []
    for number, line in enumerate(lines, start=1):
        if not line or line.isspace():
            continue  # blank lines are not events, nor problems
        try:
            event = parse_json_line(line)
        except FlowDecodeError:
            bad.append(number)
            continue
        if event is not None:
            good.append(event.SerializeToString(deterministic=True))
    return bad, good


@HYPOTHESIS
@given(LINES, st.booleans(), st.booleans())
def test_garbage_lines_are_reported_by_number_and_good_lines_still_served(
    lines: list[bytes], compress: bool, final_newline: bool
) -> None:
    data = b"\n".join(lines) + (b"\n" if final_newline else b"")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / ("flows.log.gz" if compress else "flows.log")
        path.write_bytes(gzip.compress(data) if compress else data)
        problems: list[FileProblem] = []
        source = FileSource([path], on_problem=problems.append)
        served = [event.SerializeToString(deterministic=True) for event in source]
    bad, good = expected_outcome(lines)
    assert [p.line for p in problems] == bad
    assert all(p.path == str(path) and p.reason and "\n" not in p.reason for p in problems)
    assert all(str(p).startswith(f"{path}:{p.line}: ") for p in problems)
    assert source.invalid_lines == len(bad)
    assert served == good and source.events == len(good)
    # Not only by the oracle: every recorded line among the garbage comes out, in order.
    recorded = [_wire(line) for line in lines if line in RECORDED]
    rest = iter(served)
    assert all(any(event == other for other in rest) for event in recorded)


RECORDED = frozenset(RECORDED_LINES)


def _wire(line: bytes) -> bytes:
    event = parse_json_line(line)
    assert event is not None
    return event.SerializeToString(deterministic=True)


def test_known_bad_lines_between_recorded_ones(tmp_path: Path) -> None:
    lines = [RECORDED_LINES[0], *KNOWN_BAD, b"", b"  \t", RECORDED_LINES[1]]
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b"\r\n".join(lines))  # CRLF, and no newline after the last line
    problems: list[FileProblem] = []
    source = FileSource([path], on_problem=problems.append)
    served = list(source)
    assert [p.line for p in problems] == list(range(2, 2 + len(KNOWN_BAD)))
    assert served == [parse_json_line(RECORDED_LINES[0]), parse_json_line(RECORDED_LINES[1])]
    assert (source.invalid_lines, source.events) == (len(KNOWN_BAD), 2)
    reasons = {p.line: p.reason for p in problems}
    assert reasons[2].startswith("invalid JSON")  # "{"
    assert "flow.verdict" in reasons[8] and "NOPE" not in reasons[8]  # the field, never its value
