"""URL and header redaction: secrets seen by Hubble's L7 proxy never leave the process.

On by default. URLs keep their bytes except userinfo ("REDACTED:REDACTED", as the
url.full semantic convention asks) and query values ("REDACTED" unless the key is
allow-listed). Headers are opt-in: only names in `keep_headers` become
`http.request.header.<name>` attributes, and a sensitive header is redacted even
when kept. Header attribute values are lists of strings, one item per header
line, as the semantic conventions define them (`string[]`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from hubble_bridge.errors import ConfigError
from hubble_bridge.mapping import semconv

REDACTED = "REDACTED"
_USERINFO = "REDACTED:REDACTED"


class Header(Protocol):
    """flow.HTTPHeader, or anything with the same two fields."""

    key: str
    value: str


@dataclass
class RedactConfig:
    enabled: bool = True
    keep_headers: tuple[str, ...] = ("user-agent", "x-request-id", "content-type", "traceparent")
    sensitive_headers: tuple[str, ...] = (
        "authorization",
        "cookie",
        "set-cookie",
        "proxy-authorization",
        "x-api-key",
        "api-key",
        "x-auth-token",
    )
    keep_query_params: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # Lower-cased sets, built once: the hot path only does set lookups.
        self._keep = frozenset(h.lower() for h in self.keep_headers)
        self._sensitive = frozenset(h.lower() for h in self.sensitive_headers)
        self._keep_params = frozenset(self.keep_query_params)
        self._header_keys = {h: semconv.HTTP_REQUEST_HEADER_TEMPLATE.format(name=h) for h in self._keep}

    def validate(self) -> None:
        problems = []
        for name in ("keep_headers", "sensitive_headers", "keep_query_params"):
            values = getattr(self, name)
            if isinstance(values, str) or any(not isinstance(v, str) or not v for v in values):
                problems.append(f"redact.{name}: expected a list of non-empty names, got {values!r}")
        if problems:
            raise ConfigError("; ".join(problems))


def redact_url(url: str, cfg: RedactConfig) -> str:
    """The URL with userinfo and query values redacted; everything else byte-exact. Never raises."""
    if not cfg.enabled or ("?" not in url and "@" not in url):
        return url
    # The fragment is not sent on the wire, but a client may still log one: keep it as is.
    head, hash_sign, fragment = url.partition("#")
    base, question, query = head.partition("?")
    if "@" in base:
        base = _redact_userinfo(base)
    if question:
        query = redact_query(query, cfg)
    return base + question + query + hash_sign + fragment


def redact_query(query: str, cfg: RedactConfig) -> str:
    """A query string ("a=1&b=2", no "?") with every value not allow-listed replaced."""
    if not cfg.enabled or "=" not in query:
        return query
    keep = cfg._keep_params
    parts = query.split("&")
    for i, part in enumerate(parts):
        key, eq, value = part.partition("=")
        if eq and value and key not in keep:
            parts[i] = key + "=" + REDACTED
    return "&".join(parts)


def header_attributes(headers: Iterable[Header], cfg: RedactConfig) -> dict[str, list[str]]:
    """`http.request.header.<lower name>` for kept headers only, sensitive values redacted."""
    return scan_headers(headers, cfg, frozenset())[0]


def scan_headers(
    headers: Iterable[Header], cfg: RedactConfig, wanted: frozenset[str]
) -> tuple[dict[str, list[str]], dict[str, str]]:
    """One pass over the headers: the kept-header attributes, plus the raw first value of every
    header named in `wanted` (lower case), for callers that need x-request-id or traceparent."""
    attributes: dict[str, list[str]] = {}
    found: dict[str, str] = {}
    keys = cfg._header_keys
    redact = cfg.enabled
    sensitive = cfg._sensitive
    for header in headers:
        name = header.key.lower()
        if name in wanted and name not in found:
            found[name] = header.value
        key = keys.get(name)
        if key is None:
            continue
        value = REDACTED if redact and name in sensitive else header.value
        values = attributes.get(key)
        if values is None:
            attributes[key] = [value]
        else:
            values.append(value)
    return attributes, found


class HeaderScanner:
    """`scan_headers` for one configuration and one `wanted` set, for callers that scan often.

    What a header name means (kept? wanted? redacted?) is worked out once per name as the
    wire spells it and remembered, so a header costs one read and one dict lookup.
    """

    # Names are a few dozen per cluster, and short: hostile input must not grow the table.
    MAX_NAMES = 512
    MAX_NAME_LENGTH = 128

    def __init__(self, cfg: RedactConfig, wanted: frozenset[str]) -> None:
        self._cfg = cfg
        self._wanted = wanted
        # wire name -> (lower name if wanted else None, attribute key or None, redacted)
        self._plans: dict[str, tuple[str | None, str | None, bool]] = {}

    def scan(self, headers: Iterable[Header]) -> tuple[dict[str, list[str]], dict[str, str]]:
        """Same result as `scan_headers(headers, cfg, wanted)`."""
        attributes: dict[str, list[str]] = {}
        found: dict[str, str] = {}
        plans = self._plans
        for header in headers:
            key = header.key
            plan = plans.get(key)
            if plan is None:
                plan = self._plan(key)
            name, attribute, redacted = plan
            if name is not None and name not in found:
                found[name] = value = header.value
                if attribute is None:
                    continue
            elif attribute is None:
                continue
            else:
                value = header.value
            if redacted:
                value = REDACTED
            values = attributes.get(attribute)  # type: ignore[arg-type]
            if values is None:
                attributes[attribute] = [value]  # type: ignore[index]
            else:
                values.append(value)
        return attributes, found

    def wanted(self, headers: Iterable[Header]) -> dict[str, str]:
        """Only the `found` half of `scan`: the raw first value of each wanted header."""
        found: dict[str, str] = {}
        plans = self._plans
        for header in headers:
            key = header.key
            plan = plans.get(key)
            if plan is None:
                plan = self._plan(key)
            name = plan[0]
            if name is not None and name not in found:
                found[name] = header.value
        return found

    def _plan(self, key: str) -> tuple[str | None, str | None, bool]:
        cfg = self._cfg
        name = key.lower()
        plan = (
            name if name in self._wanted else None,
            cfg._header_keys.get(name),
            cfg.enabled and name in cfg._sensitive,
        )
        if len(self._plans) < self.MAX_NAMES and len(key) <= self.MAX_NAME_LENGTH:
            self._plans[key] = plan
        return plan


def _redact_userinfo(base: str) -> str:
    # Userinfo only exists in an authority: after "scheme://" (or a leading "//"), up to the next "/".
    sep = base.find("://")
    if sep > 0 and _is_scheme(base[:sep]):
        start = sep + 3
    elif base.startswith("//"):
        start = 2
    else:
        return base
    end = base.find("/", start)
    if end < 0:
        end = len(base)
    at = base.rfind("@", start, end)
    if at < 0:
        return base
    return base[:start] + _USERINFO + base[at:]


def _is_scheme(text: str) -> bool:
    # RFC 3986: ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )
    if not text.isascii() or not text[0].isalpha():
        return False
    return text.replace("+", "a").replace("-", "a").replace(".", "a").isalnum()
