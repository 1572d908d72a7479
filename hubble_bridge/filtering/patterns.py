"""Hubble's small value languages: FQDN and node-name globs, namespaced names, ports,
HTTP status codes, request URIs, and the regular expressions clients send.

Each parser raises ValueError with a short reason; the field builders turn that into
an InvalidFilterError naming the field and value.

Every regex that comes from a client, a config file or a flag is compiled with RE2, as
Hubble's Go `regexp` (an RE2 implementation) does: matching is linear in the input, so no
pattern can pin a core, and the accepted syntax is RE2's (`\\pL`, `\\z`; no lookaround or
backreferences). The fixed patterns below are this module's own and stay on `re`.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote

import re2

# What an empty cluster or node element of a node-name pattern matches: any FQDN.
_ANY_FQDN = r"(?:[-0-9_a-z]+(?:\.[-0-9_a-z]+)*)"
_FQDN_LITERALS = frozenset("-0123456789_abcdefghijklmnopqrstuvwxyz")
# Hubble's single-star expansion; note it spans dots (unlike a filename glob).
_FQDN_STAR = r"[-.0-9a-z]*"

# Hubble's node names omit the cluster for the default cluster.
DEFAULT_CLUSTER = "default"
# Hubble resolves a bare pod or service name in this namespace.
DEFAULT_NAMESPACE = "default"

_STATUS_FULL = re.compile(r"[1-5][0-9]{2}")
_STATUS_PREFIX = re.compile(r"[1-5][0-9]?\+")
_DIGITS = re.compile(r"[0-9]+")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def fqdn_regex(pattern: str) -> str:
    """Regex source for one FQDN pattern: trimmed, one trailing dot dropped, lowercased."""
    canonical = pattern.strip().removesuffix(".").lower()
    if not canonical:
        raise ValueError("empty pattern")
    if canonical.endswith("."):
        raise ValueError("multiple trailing dots in pattern")
    out: list[str] = []
    for char in canonical:
        if char == ".":
            out.append(r"\.")
        elif char == "*":
            out.append(_FQDN_STAR)
        elif char in _FQDN_LITERALS:
            out.append(char)
        else:
            raise ValueError(f"invalid character {char!r} in pattern")
    return "".join(out)


def node_name_regex(pattern: str) -> str:
    """Regex source for "[cluster/]node", matched against names that always carry a cluster."""
    if not pattern:
        raise ValueError("empty pattern")
    elems = pattern.split("/")
    if len(elems) > 2:
        raise ValueError("too many slashes in pattern")
    cluster, node = elems if len(elems) == 2 else ("", elems[0])
    cluster_re = fqdn_regex(cluster) if cluster else _ANY_FQDN
    node_re = fqdn_regex(node) if node else _ANY_FQDN
    return f"{cluster_re}/{node_re}"


def anchored_union(sources: list[str]) -> Any:
    """One RE2 alternation of regex sources built here (callers use `fullmatch`)."""
    return compile_regex("(?:" + "|".join(sources) + ")")


def parse_namespaced_name(text: str) -> tuple[str, str]:
    """(namespace, name prefix) as Hubble's k8s.ParseNamespaceName splits it (cilium
    pkg/hubble/k8s/utils.go): "ns/prefix", "ns/" (whole namespace), "prefix" (namespace
    "default"), "/prefix" (namespace "", i.e. endpoints without one); past a second slash
    the text is ignored, as there."""
    parts = text.split("/")
    if len(parts) > 1:
        namespace, name = parts[0], parts[1]
    elif text:
        namespace, name = DEFAULT_NAMESPACE, text
    else:
        namespace = name = ""
    if not namespace and not name:
        raise ValueError("must be [namespace/][<name>]")
    return namespace, name


def parse_port(text: str) -> int:
    if not _DIGITS.fullmatch(text):
        raise ValueError("not a decimal port number")
    port = int(text)
    if port > 0xFFFF:
        raise ValueError("port out of range 0-65535")
    return port


def parse_status_code(value: str) -> tuple[bool, str]:
    """(is_prefix, digits): "404" is a full code, "5+" / "40+" a prefix of the "%03d" code."""
    if _STATUS_FULL.fullmatch(value):
        return False, value
    if _STATUS_PREFIX.fullmatch(value):
        return True, value[:-1]
    raise ValueError('not a status code ("404") or prefix ("5+", "40+")')


_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # the error is raised with the field and value; RE2's own log is noise


def compile_regex(text: str) -> Any:
    """An RE2 regex (`search` is Go's MatchString); ValueError with RE2's reason if it rejects it."""
    try:
        return re2.compile(text, options=_RE2_OPTIONS)
    except re2.error as exc:
        reason = exc.args[0].decode(errors="replace") if exc.args and isinstance(exc.args[0], bytes) else exc
        raise ValueError(f"invalid regular expression (RE2 syntax): {reason}") from None


def request_uri_path(url: str) -> str | None:
    """The decoded path of a request URI as Go's url.ParseRequestURI sees it; None if invalid."""
    if url == "*":
        return url
    if _CONTROL.search(url):
        return None
    scheme = _SCHEME.match(url)
    rest = (url[scheme.end() :] if scheme else url).split("?", 1)[0]
    if scheme:
        if not rest.startswith("/"):
            return ""  # opaque URI such as "mailto:x": no path
        if rest.startswith("//"):
            slash = rest.find("/", 2)
            rest = rest[slash:] if slash >= 0 else ""
    elif not rest.startswith("/"):
        return None
    if _BAD_ESCAPE.search(rest):
        return None
    return unquote(rest)
