"""Finding BCC and what it needs: root, Debian's `bcc` module, kernel headers, tracefs.

Debian ships BCC's Python bindings as python3-bpfcc in the system
dist-packages, which a virtualenv does not see. Only the `bcc` package is
loaded from there (never the whole folder on sys.path), so no other system
package can shadow what the virtualenv installed.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import os
import re
import sys
from importlib import resources
from pathlib import Path
from types import ModuleType
from typing import Any

from hubble_bridge.errors import BridgeError

SYSTEM_DIST_PACKAGES = ("/usr/lib/python3/dist-packages", "/usr/local/lib/python3/dist-packages")
TRACEFS_DIRS = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")
_SETUP_HINT = "see docs/sidecar.md (scripts/setup-bcc.sh sets it up on Debian)"


class SidecarUnavailable(BridgeError):
    """Something the sidecar needs is missing; the message says what."""


def import_bcc() -> ModuleType:
    """The `bcc` module: importable as is, or Debian's python3-bpfcc from the system dist-packages."""
    if "bcc" in sys.modules:
        return sys.modules["bcc"]
    try:
        return importlib.import_module("bcc")
    except ImportError:
        pass
    spec = importlib.machinery.PathFinder.find_spec("bcc", list(SYSTEM_DIST_PACKAGES))
    if spec is None or spec.loader is None:
        raise SidecarUnavailable(
            "BCC's Python module is not installed (apt-get install python3-bpfcc); " + _SETUP_HINT
        )
    module = importlib.util.module_from_spec(spec)
    sys.modules["bcc"] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # libbcc missing or of another version: say so in one line
        del sys.modules["bcc"]
        raise SidecarUnavailable(f"BCC's Python module failed to load: {exc}; {_SETUP_HINT}") from None
    return module


def program_source(name: str) -> str:
    """A BPF program's C source from this package, its local `#include "x.h"` lines replaced by the files."""
    package = resources.files("hubble_bridge.sidecar")
    text = package.joinpath(name).read_text()
    return re.sub(
        r'^#include "([\w.]+)"$', lambda m: package.joinpath(m.group(1)).read_text(), text, flags=re.M
    )


def tracefs_dir() -> Path | None:
    for candidate in TRACEFS_DIRS:
        if Path(candidate, "events").is_dir():
            return Path(candidate)
    return None


def missing_prerequisite() -> str | None:
    """What stops the sidecar from loading BPF programs here, in one line; None when nothing does."""
    if os.geteuid() != 0:
        return "the sidecar needs root (CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON) to load BPF programs"
    if not Path("/proc/sys/kernel/unprivileged_bpf_disabled").exists():
        return "this kernel has no bpf() system call (CONFIG_BPF_SYSCALL is off)"
    release = os.uname().release
    if not Path(f"/lib/modules/{release}/build/include").is_dir():
        return (
            f"kernel headers for {release} not found at /lib/modules/{release}/build "
            f"(BCC compiles against them); {_SETUP_HINT}"
        )
    if tracefs_dir() is None:
        return f"tracefs is not mounted (mount -t tracefs tracefs /sys/kernel/tracing); {_SETUP_HINT}"
    try:
        import_bcc()
    except SidecarUnavailable as exc:
        return str(exc)
    return None


def require_bpf() -> ModuleType:
    """The `bcc` module, or SidecarUnavailable naming the first missing prerequisite."""
    problem = missing_prerequisite()
    if problem is not None:
        raise SidecarUnavailable(f"sidecar: {problem}")
    return import_bcc()


def per_cpu_counters(table: Any, names: tuple[str, ...] | list[str]) -> dict[str, int]:
    """A BPF per-CPU array of counters, slot i named names[i], each summed over the CPUs."""
    return {name: sum(table[table.Key(i)]) for i, name in enumerate(names)}


def program_fds(bpf: Any) -> dict[str, int]:
    """{program name: its file descriptor} for every program a BPF object loaded."""
    return {
        (name.decode() if isinstance(name, bytes) else name): function.fd
        for name, function in bpf.funcs.items()
    }
