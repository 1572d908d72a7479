"""Hubble label selectors over Cilium labels, parsed as Hubble and Kubernetes parse them.

Flow labels look like "k8s:app=foo" or "reserved:host" (source, key, value). A selector is
first rewritten as Hubble does (cilium pkg/hubble/filters/labelparser.go): each key's first
":" becomes "." and a key without a source gets "any." ("app=foo" -> "any.app=foo"). The
result is parsed by the Kubernetes label selector grammar (cilium's copy of k8s.io/apimachinery
pkg/labels/selector.go): `key`, `!key`, `key=v`, `key==v`, `key!=v`, `key in (a,b)`,
`key notin (a,b)` (an empty `()` is the set {""}, empty list items are ""), `key>1`, `key<1`,
requirements ANDed by ",", keys checked as qualified names and values as label values.
A key then matches labels of its source ("any" matches every source), as Cilium's LabelArray
does; an empty selector matches everything.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from functools import lru_cache

Labels = Sequence[str]
Requirement = Callable[[Labels], bool]

ANY_SOURCE = "any"
_UNSPEC_SOURCE = "unspec"
_RESERVED_SOURCE = "reserved"

# Go's unicode.IsSpace, which labelparser.go uses (Python's isspace also takes \x1c-\x1f).
_GO_SPACE = frozenset(" \t\n\v\f\r\x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000") | frozenset(
    chr(c) for c in range(0x2000, 0x200B)
)
_KEY_END = frozenset("=!,")
# The Kubernetes lexer's own whitespace and operator characters.
_K8S_SPACE = frozenset(" \t\r\n")
_SPECIAL = frozenset("=!(),><")
_OPERATORS = frozenset({")", ",", "!", "==", "=", ">", "<", "!=", "(", "in", "notin"})
_IDENT = "id"
_EOS = "end of string"
_QUALIFIED_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")


@lru_cache(maxsize=16384)
def parse_label(text: str) -> tuple[str, str, str]:
    """(source, key, value) the way Cilium parses a label string ("$host" is reserved:host)."""
    if text.startswith("$"):
        source, rest = _RESERVED_SOURCE, text[1:]
    elif ":" in text:
        source, _, rest = text.partition(":")
    elif text.startswith("reserved."):
        source, rest = _RESERVED_SOURCE, text[len("reserved.") :]
    else:
        source, rest = _UNSPEC_SOURCE, text
    key, eq, value = rest.partition("=")
    if eq and not key and source == _RESERVED_SOURCE:
        return source, value, ""
    return source, key, value


def _selector_key(key: str) -> tuple[str, str]:
    # A translated key is "source.name": Cilium's LabelArray splits it at the first dot.
    source, dot, name = key.partition(".")
    return (source, name) if dot else (ANY_SOURCE, key)


def _lookup(labels: Labels, source: str, key: str) -> str | None:
    for text in labels:
        label_source, label_key, value = parse_label(text)
        if label_key == key and (source == ANY_SOURCE or label_source == source):
            return value
    return None


def _set_requirement(raw_key: str, inside: bool, values: frozenset[str]) -> Requirement:
    source, key = _selector_key(raw_key)
    if inside:
        return lambda labels: _lookup(labels, source, key) in values
    return lambda labels: _lookup(labels, source, key) not in values


def _numeric_requirement(raw_key: str, op: str, bound: int) -> Requirement:
    source, key = _selector_key(raw_key)

    def check(labels: Labels) -> bool:
        value = _lookup(labels, source, key)
        number = _int64(value) if value is not None else None
        if number is None:
            return False
        return number > bound if op == ">" else number < bound

    return check


def _int64(text: str) -> int | None:
    """The value as Go's strconv.ParseInt(text, 10, 64) reads it (Kubernetes compares so), else None."""
    if not re.fullmatch(r"[+-]?[0-9]+", text):
        return None
    # Checked before int(): a label value may hold more digits than int() accepts.
    digits = text.lstrip("+-").lstrip("0") or "0"
    if len(digits) > 19:
        return None
    number = -int(digits) if text.startswith("-") else int(digits)
    return number if -(2**63) <= number < 2**63 else None


def translate_selector(selector: str) -> str:
    """Hubble's rewrite of source prefixes into the dotted keys the Kubernetes grammar accepts."""
    out: list[str] = []
    i, n = 0, len(selector)
    while i < n:
        while i < n and (selector[i] in _GO_SPACE or selector[i] == "!"):
            out.append(selector[i])
            i += 1
        start = i
        while i < n and selector[i] not in _GO_SPACE and selector[i] not in _KEY_END:
            i += 1
        key = selector[start:i]
        out.append((key if ":" in key else f"{ANY_SOURCE}:{key}").replace(":", ".", 1))
        nesting = 0
        while i < n:
            char = selector[i]
            i += 1
            nesting += (char == "(") - (char == ")")
            out.append(char)
            if char == "," and nesting == 0:
                break
    return "".join(out)


def _lex(text: str) -> list[tuple[str, str]]:
    """(token, literal) pairs as the Kubernetes lexer scans them; a NUL ends the text, as there."""
    text = text.split("\0", 1)[0]
    tokens: list[tuple[str, str]] = []
    i, n = 0, len(text)
    while True:
        while i < n and text[i] in _K8S_SPACE:
            i += 1
        if i == n:
            tokens.append((_EOS, ""))
            return tokens
        if text[i] in _SPECIAL:
            # Longest run of operator characters that is still an operator ("!=", "==").
            end = i + 1
            while end < n and text[end] in _SPECIAL and text[i : end + 1] in _OPERATORS:
                end += 1
            tokens.append((text[i:end], text[i:end]))
        else:
            end = i
            while end < n and text[end] not in _SPECIAL and text[end] not in _K8S_SPACE:
                end += 1
            word = text[i:end]
            tokens.append((word if word in _OPERATORS else _IDENT, word))
        i = end


class _Parser:
    """The Kubernetes selector grammar over the lexed tokens; ValueError on the first problem."""

    def __init__(self, text: str) -> None:
        self._tokens = _lex(text)
        self._pos = 0

    def _peek(self, values: bool = True) -> tuple[str, str]:
        return self._read(self._tokens[self._pos], values)

    def _next(self, values: bool = True) -> tuple[str, str]:
        self._pos += 1
        return self._read(self._tokens[self._pos - 1], values)

    @staticmethod
    def _read(item: tuple[str, str], values: bool) -> tuple[str, str]:
        # Where a value is expected, "in" and "notin" are plain words ("value in (in)").
        tok, lit = item
        return (_IDENT, lit) if values and tok in ("in", "notin") else (tok, lit)

    def parse(self) -> list[tuple[str, str, frozenset[str]]]:
        requirements = []
        while True:
            tok, lit = self._peek()
            if tok == _EOS:
                return requirements
            if tok not in (_IDENT, "!"):
                raise ValueError(f"found '{lit}', expected: !, identifier, or 'end of string'")
            requirements.append(self._requirement())
            tok, lit = self._next()
            if tok == _EOS:
                return requirements
            if tok != ",":
                raise ValueError(f"found '{lit}', expected: ',' or 'end of string'")
            tok, lit = self._peek()
            if tok not in (_IDENT, "!"):
                raise ValueError(f"found '{lit}', expected: identifier after ','")

    def _requirement(self) -> tuple[str, str, frozenset[str]]:
        tok, key = self._next()
        negated = tok == "!"
        if negated:
            tok, key = self._next()
        if tok != _IDENT:
            raise ValueError(f"found '{key}', expected: identifier")
        _check_key(key)
        if negated:
            return key, "!", frozenset()
        if self._peek()[0] in (_EOS, ","):
            return key, "exists", frozenset()
        op, lit = self._next(values=False)
        if op in ("in", "notin"):
            values = self._set_values()
        elif op in ("=", "==", "!=", ">", "<"):
            values = self._exact_value()
        else:
            raise ValueError(f"found '{lit}', expected: '=', '!=', '==', 'in', notin'")
        if op in (">", "<"):
            (value,) = values
            if _int64(value) is None:
                raise ValueError("for 'Gt', 'Lt' operators, the value must be an integer")
        for value in values:
            if len(value) > 63 or not _LABEL_VALUE.fullmatch(value):
                raise ValueError(f"invalid label value: {value!r}: at key: {key!r}")
        return key, op, values

    def _set_values(self) -> frozenset[str]:
        tok, lit = self._next()
        if tok != "(":
            raise ValueError(f"found '{lit}' expected: '('")
        tok, lit = self._peek()
        if tok == ")":  # "()" is the set of the empty string
            self._next()
            return frozenset({""})
        if tok not in (_IDENT, ","):
            raise ValueError(f"found '{lit}', expected: ',', ')' or identifier")
        values: set[str] = set()
        while True:
            tok, lit = self._next()
            if tok == _IDENT:
                values.add(lit)
                after, lit = self._peek()
                if after == ")":
                    break
                if after != ",":
                    raise ValueError(f"found '{lit}', expected: ',' or ')'")
            elif tok == ",":  # "(," ",," and ",)" each stand for an empty value
                if not values:
                    values.add("")
                after, _ = self._peek()
                if after == ")":
                    values.add("")
                    break
                if after == ",":
                    self._next()
                    values.add("")
            else:
                raise ValueError(f"found '{lit}', expected: ',', or identifier")
        self._next()
        return frozenset(values)

    def _exact_value(self) -> frozenset[str]:
        tok, lit = self._peek()
        if tok in (_EOS, ","):
            return frozenset({""})
        tok, lit = self._next()
        if tok != _IDENT:
            raise ValueError(f"found '{lit}', expected: identifier")
        return frozenset({lit})


def _check_key(key: str) -> None:
    """Kubernetes' IsQualifiedName: [DNS-1123 subdomain "/"] name of at most 63 characters."""
    parts = key.split("/")
    if len(parts) > 2:
        raise ValueError(f"invalid label key {key!r}: at most one '/'")
    name = parts[-1]
    if len(parts) == 2:
        prefix = parts[0]
        if not prefix or len(prefix) > 253 or not _DNS1123_SUBDOMAIN.fullmatch(prefix):
            raise ValueError(f"invalid label key {key!r}: prefix must be a lowercase DNS subdomain")
    if not name or len(name) > 63 or not _QUALIFIED_NAME.fullmatch(name):
        raise ValueError(
            f"invalid label key {key!r}: name must be 1-63 alphanumerics, '-', '_' or '.',"
            " starting and ending with an alphanumeric"
        )


def _requirement(key: str, op: str, values: frozenset[str]) -> Requirement:
    if op in ("exists", "!"):
        source, name = _selector_key(key)
        if op == "!":
            return lambda labels: _lookup(labels, source, name) is None
        return lambda labels: _lookup(labels, source, name) is not None
    if op in (">", "<"):
        (value,) = values
        bound = _int64(value)
        assert bound is not None  # checked by the parser
        return _numeric_requirement(key, op, bound)
    return _set_requirement(key, op in ("in", "=", "=="), values)


def compile_selector(selector: str) -> Requirement:
    """One selector as a predicate over a list of label strings; ValueError if malformed."""
    try:
        parsed = _Parser(translate_selector(selector)).parse()
    except ValueError as exc:
        raise ValueError(f"unable to parse requirement: {exc}") from None
    requirements = tuple(_requirement(*item) for item in parsed)
    if not requirements:
        return lambda labels: True
    if len(requirements) == 1:
        return requirements[0]
    return lambda labels: all(req(labels) for req in requirements)
