"""HTTP/1.x message heads (request line or status line, and headers) from captured bytes. Pure: no I/O.

The sidecar reads a bounded prefix of each segment (or of each TLS read/write),
so a head may be cut: the start line and every complete header line before the
cut are reported, and the body length is then unknown. The kernel programs
only hand over data whose first bytes look like an HTTP/1.x start (`starts_message`
mirrors their test), so continuation segments are never parsed here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"})
# The first four bytes the kernel programs accept (l7_filter.c, tls_uprobes.c).
PREFIXES = (b"GET ", b"POST", b"PUT ", b"HEAD", b"DELE", b"PATC", b"OPTI", b"CONN", b"TRAC", b"HTTP")
MAX_HEADERS = 64


class HttpError(ValueError):
    """Not an HTTP/1.x message head."""


@dataclass(slots=True)
class HttpHead:
    request: bool
    method: str = ""
    target: str = ""  # the request target as sent: "/path?q" or an absolute URL
    protocol: str = ""  # "HTTP/1.1"
    code: int = 0
    reason: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    head_length: int = 0  # bytes up to and including the blank line; 0 when the capture cut the head
    body_length: int | None = None  # None: unknown (chunked, cut head, or read until close)

    def header(self, name: str) -> str:
        lower = name.lower()
        for key, value in self.headers:
            if key.lower() == lower:
                return value
        return ""

    @property
    def complete(self) -> bool:
        return self.head_length > 0


def starts_message(data: bytes) -> bool:
    return data[:4] in PREFIXES and (data[:4] != b"HTTP" or data[4:7] == b"/1.")


def parse_head(data: bytes, offset: int = 0) -> HttpHead:
    """The message head starting at data[offset]; HttpError when it is not one."""
    end = data.find(b"\r\n\r\n", offset)
    cut = end < 0
    block = data[offset:] if cut else data[offset:end]
    lines = block.split(b"\r\n")
    if cut:
        lines.pop()  # the last line may be incomplete
        if not lines:
            raise HttpError("the start line was cut by the capture")
    start = lines[0].decode("latin-1")
    parts = start.split(" ", 2)
    if start.startswith("HTTP/1."):
        if len(parts) < 2 or not parts[1].isdigit() or len(parts[1]) != 3:
            raise HttpError(f"bad status line {start[:60]!r}")
        head = HttpHead(
            False, protocol=parts[0], code=int(parts[1]), reason=parts[2] if len(parts) > 2 else ""
        )
    else:
        if len(parts) != 3 or parts[0] not in METHODS or not parts[2].startswith("HTTP/1."):
            raise HttpError(f"bad request line {start[:60]!r}")
        head = HttpHead(True, method=parts[0], target=parts[1], protocol=parts[2])
    for raw in lines[1 : MAX_HEADERS + 1]:
        name, colon, value = raw.decode("latin-1").partition(":")
        if colon and name and name == name.strip():
            head.headers.append((name, value.strip()))
    if not cut:
        head.head_length = end + 4 - offset
        head.body_length = _body_length(head)
    return head


def _body_length(head: HttpHead) -> int | None:
    if not head.request and (head.code < 200 or head.code in (204, 304)):
        return 0
    if head.header("transfer-encoding"):
        return None
    length = head.header("content-length")
    if length.isdigit():
        return int(length)
    return 0 if head.request else None  # a response without a length runs until the connection closes
