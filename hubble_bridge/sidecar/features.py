"""What this kernel offers the sidecar, and how each probe ended up: attached, fallback, unavailable."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

KPROBE_PMU = Path("/sys/bus/event_source/devices/kprobe/type")
KALLSYMS = Path("/proc/kallsyms")


class ProbeState(Enum):
    ATTACHED = "attached"
    FALLBACK = "fallback"
    UNAVAILABLE = "unavailable"


@dataclass(frozen=True)
class ProbeStatus:
    name: str  # e.g. "xdp lo", "tracepoint sock:inet_sock_set_state", "kprobe tcp_v4_connect"
    state: ProbeState
    detail: str  # how it is attached, what replaces it, or why it is missing

    def line(self) -> str:
        return f"{self.name}: {self.state.value} ({self.detail})"


def tracepoint_exists(tracefs: Path | None, category: str, event: str) -> bool:
    return tracefs is not None and (tracefs / "events" / category / event / "format").is_file()


def tracepoint_field_offset(tracefs: Path | None, category: str, event: str, field: str) -> int | None:
    """The byte offset of `field` in the tracepoint's record, as the running kernel describes it."""
    if tracefs is None:
        return None
    try:
        text = (tracefs / "events" / category / event / "format").read_text()
    except OSError:
        return None
    match = re.search(rf"field:[^;]*\b{re.escape(field)};\s*offset:(\d+);", text)
    return int(match.group(1)) if match else None


def kprobes_missing(tracefs: Path | None) -> str | None:
    """Why kprobes cannot be attached here, or None when they can."""
    if KPROBE_PMU.exists():
        return None
    if tracefs is not None and (tracefs / "kprobe_events").exists():
        return None
    return "this kernel has no kprobes (no kprobe PMU, no kprobe_events in tracefs)"


def kernel_symbols(names: set[str]) -> set[str]:
    """Which of `names` the kernel exports as functions (kprobe targets)."""
    found: set[str] = set()
    try:
        with KALLSYMS.open() as symbols:
            for line in symbols:
                parts = line.split()
                if len(parts) >= 3 and parts[2] in names and parts[1] in ("T", "t"):
                    found.add(parts[2])
    except OSError:
        pass
    return found
