"""The few bpf() commands BCC 0.26 does not wrap: XDP links and run-time statistics."""

from __future__ import annotations

import ctypes
import os
import platform
import struct

_SYS_BPF = {"x86_64": 321, "aarch64": 280}
BPF_LINK_CREATE, BPF_ENABLE_STATS = 28, 32
BPF_XDP = 37  # enum bpf_attach_type
BPF_STATS_RUN_TIME = 0
XDP_FLAGS_SKB_MODE, XDP_FLAGS_DRV_MODE = 1 << 1, 1 << 2
_ATTR_SIZE = 128  # zero-padded: the kernel rejects unknown non-zero trailing bytes only


def bpf(command: int, attr: bytes) -> int:
    """bpf(command, attr); OSError with the kernel's errno on failure."""
    number = _SYS_BPF.get(platform.machine())
    if number is None:
        raise OSError(38, f"bpf(): no system call number known for {platform.machine()}")
    libc = ctypes.CDLL(None, use_errno=True)
    buffer = ctypes.create_string_buffer(attr.ljust(_ATTR_SIZE, b"\0"), _ATTR_SIZE)
    result = libc.syscall(number, command, buffer, _ATTR_SIZE)
    if result < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    return int(result)


def link_xdp(program_fd: int, ifindex: int, mode: int) -> int:
    """Attach an XDP program through a BPF link: the kernel detaches it when the returned fd closes,
    also when the process dies, so a killed sidecar never leaves a program on an interface."""
    return bpf(BPF_LINK_CREATE, struct.pack("=IIII", program_fd, ifindex, BPF_XDP, mode))


def enable_run_time_stats() -> int:
    """A descriptor that keeps the kernel's per-program run-time statistics on while it is open."""
    return bpf(BPF_ENABLE_STATS, struct.pack("=I", BPF_STATS_RUN_TIME))
