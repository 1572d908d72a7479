"""Builders for the L7 FlowFilter fields: HTTP status, method, path, URL, headers, DNS query.

Hubble rejects HTTP fields in a filter whose event_type list cannot match L7 (access log)
events, since such a filter could never match; so do we.
"""

from __future__ import annotations

from collections.abc import Sequence

from hubble_bridge.api import flow_pb2
from hubble_bridge.filtering import patterns
from hubble_bridge.filtering.errors import InvalidFilterError
from hubble_bridge.filtering.fields import Builder, Flow, Predicate, checked

ACCESS_LOG_EVENT = 129  # monitor MessageTypeAccessLog, the event type of every L7 flow


def _require_l7_events(field: str, ff: flow_pb2.FlowFilter) -> None:
    if ff.event_type and not any(t.type == ACCESS_LOG_EVENT for t in ff.event_type):
        raise InvalidFilterError(
            field, None, f"needs the event_type filter to include L7 events (type {ACCESS_LOG_EVENT})"
        )


def _http(flow: Flow) -> flow_pb2.HTTP | None:
    return flow.l7.http if flow.l7.WhichOneof("record") == "http" else None


def _status_codes(field: str, values: Sequence[str], ff: flow_pb2.FlowFilter) -> Predicate:
    _require_l7_events(field, ff)
    parsed = [checked(field, value, patterns.parse_status_code) for value in values]
    full = frozenset(digits for is_prefix, digits in parsed if not is_prefix)
    prefixes = tuple(digits for is_prefix, digits in parsed if is_prefix)

    def match(flow: Flow) -> bool:
        http = _http(flow)
        if http is None or not http.code:  # requests carry no status
            return False
        code = f"{http.code:03d}"
        return code in full or code.startswith(prefixes)

    return match


def _methods(field: str, values: Sequence[str], ff: flow_pb2.FlowFilter) -> Predicate:
    _require_l7_events(field, ff)
    wanted = frozenset(value.casefold() for value in values)

    def match(flow: Flow) -> bool:
        http = _http(flow)
        return http is not None and bool(http.method) and http.method.casefold() in wanted

    return match


def _paths(field: str, values: Sequence[str], ff: flow_pb2.FlowFilter) -> Predicate:
    _require_l7_events(field, ff)
    regexes = tuple(checked(field, value, patterns.compile_regex) for value in values)

    def match(flow: Flow) -> bool:
        http = _http(flow)
        if http is None or not http.url:
            return False
        path = patterns.request_uri_path(http.url)
        return path is not None and any(regex.search(path) for regex in regexes)

    return match


def _urls(field: str, values: Sequence[str], ff: flow_pb2.FlowFilter) -> Predicate:
    _require_l7_events(field, ff)
    regexes = tuple(checked(field, value, patterns.compile_regex) for value in values)

    def match(flow: Flow) -> bool:
        http = _http(flow)
        return http is not None and bool(http.url) and any(regex.search(http.url) for regex in regexes)

    return match


def _headers(field: str, values: Sequence[flow_pb2.HTTPHeader], ff: flow_pb2.FlowFilter) -> Predicate:
    _require_l7_events(field, ff)
    wanted = frozenset((header.key, header.value) for header in values)

    def match(flow: Flow) -> bool:
        http = _http(flow)
        return http is not None and any((h.key, h.value) in wanted for h in http.headers)

    return match


def _dns_queries(field: str, values: Sequence[str], _: flow_pb2.FlowFilter) -> Predicate:
    regexes = tuple(checked(field, value, patterns.compile_regex) for value in values)

    def match(flow: Flow) -> bool:
        if flow.l7.WhichOneof("record") != "dns":
            return False
        query = flow.l7.dns.query
        return any(regex.search(query) for regex in regexes)

    return match


BUILDERS: dict[str, Builder] = {
    "http_status_code": _status_codes,
    "http_method": _methods,
    "http_path": _paths,
    "http_url": _urls,
    "http_header": _headers,
    "dns_query": _dns_queries,
}
