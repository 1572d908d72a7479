"""Real `hubble-otlp` processes for end-to-end tests, with their stderr watched line by line."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class CliProcess:
    """`python -m hubble_bridge.cli ARGS` with stderr collected; wait for lines, stop with a signal."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.args = args
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hubble_bridge.cli", *args],
            cwd=REPO,
            env={**os.environ, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self.lines.append("<exited>")
            self._cond.notify_all()

    def wait_for_line(self, pattern: str, timeout: float = 30.0) -> re.Match[str]:
        regex = re.compile(pattern)
        found: list[re.Match[str]] = []

        def seen() -> bool:
            found[:] = [m for line in self.lines if (m := regex.search(line))]
            return bool(found) or "<exited>" in self.lines

        with self._cond:
            self._cond.wait_for(seen, timeout)
        if not found:
            raise AssertionError(f"{self.args[0]}: no line matching {pattern!r}; output:\n" + self.output)
        return found[0]

    def wait_for_lines(self, pattern: str, count: int, timeout: float = 30.0) -> int:
        """Wait until `count` lines match (or the process exits); returns how many did."""
        regex = re.compile(pattern)

        def matching() -> int:
            return sum(1 for line in self.lines if regex.search(line))

        with self._cond:
            self._cond.wait_for(lambda: matching() >= count or "<exited>" in self.lines, timeout)
            return matching()

    @property
    def output(self) -> str:
        with self._cond:
            return "\n".join(self.lines)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(timeout)
        self._reader.join(timeout)
        return code

    def __enter__(self) -> CliProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
