"""URL and header redaction, and attribute limits: secrets and hostile sizes stay in the process."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hubble_bridge.api import flow_pb2
from hubble_bridge.errors import ConfigError
from hubble_bridge.mapping.limits import AttributeLimits, LimitCounts, apply_limits, limit_str
from hubble_bridge.mapping.redact import RedactConfig, header_attributes, redact_url, scan_headers

CFG = RedactConfig()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://svc:8080/api?token=s3cret", "http://svc:8080/api?token=REDACTED"),
        ("https://user:pw@host/p", "https://REDACTED:REDACTED@host/p"),
        ("https://user@host/p", "https://REDACTED:REDACTED@host/p"),
        (
            "http://a:b@c@host:1/x?q=1&r=2#frag",
            "http://REDACTED:REDACTED@host:1/x?q=REDACTED&r=REDACTED#frag",
        ),
        ("/search?q=cats&flag&empty=", "/search?q=REDACTED&flag&empty="),  # no value: nothing to hide
        ("//user:pw@host/p", "//REDACTED:REDACTED@host/p"),
        ("http://host/users/me@example.com", "http://host/users/me@example.com"),  # "@" in the path
        ("mailto:someone@example.com", "mailto:someone@example.com"),  # no authority
        ("http://host/p?", "http://host/p?"),
        ("http://[::1/p?a=1", "http://[::1/p?a=REDACTED"),  # malformed host: still handled
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url, CFG) == expected


def test_redact_url_fast_path_and_switches() -> None:
    url = "http://svc/api/v1/items"
    assert redact_url(url, CFG) is url  # no "?" and no "@": untouched, no copy
    keep = RedactConfig(keep_query_params=("page",))
    assert redact_url("http://s/p?page=2&token=x", keep) == "http://s/p?page=2&token=REDACTED"
    off = RedactConfig(enabled=False)
    assert redact_url("http://u:p@s/p?token=x", off) == "http://u:p@s/p?token=x"


@given(st.text())
def test_redact_url_never_raises_and_never_leaks_query_values(url: str) -> None:
    out = redact_url(url, CFG)
    if "?" not in url and "@" not in url:
        assert out == url
    query = out.partition("#")[0].partition("?")[2]
    for part in query.split("&"):
        _, eq, value = part.partition("=")
        assert not eq or value in ("", "REDACTED")


def headers(*pairs: tuple[str, str]) -> list[flow_pb2.HTTPHeader]:
    return [flow_pb2.HTTPHeader(key=k, value=v) for k, v in pairs]


def test_header_attributes_keep_only_allow_listed() -> None:
    given_headers = headers(
        ("User-Agent", "curl/8.0"),
        ("Authorization", "Bearer abc"),
        ("Cookie", "session=1"),
        ("X-Request-Id", "r1"),
        ("X-Custom", "v"),
    )
    assert header_attributes(given_headers, CFG) == {
        "http.request.header.user-agent": ["curl/8.0"],
        "http.request.header.x-request-id": ["r1"],
    }


def test_sensitive_headers_redacted_even_when_kept_and_repeats_kept_as_list() -> None:
    cfg = RedactConfig(keep_headers=("Authorization", "X-Api-Key", "accept"))
    given_headers = headers(
        ("authorization", "Bearer abc"), ("x-api-key", "k"), ("Accept", "a"), ("accept", "b")
    )
    assert header_attributes(given_headers, cfg) == {
        "http.request.header.authorization": ["REDACTED"],
        "http.request.header.x-api-key": ["REDACTED"],
        "http.request.header.accept": ["a", "b"],
    }
    # Switched off, kept headers go out as they are (an explicit operator choice).
    plain = RedactConfig(enabled=False, keep_headers=("authorization",))
    assert header_attributes(headers(("Authorization", "Bearer abc")), plain) == {
        "http.request.header.authorization": ["Bearer abc"]
    }


def test_scan_headers_returns_wanted_raw_values_in_the_same_pass() -> None:
    attrs, found = scan_headers(
        headers(("Traceparent", "00-ab"), ("Cookie", "c"), ("X-Request-Id", "r1"), ("x-request-id", "r2")),
        CFG,
        frozenset({"traceparent", "x-request-id", "cookie"}),
    )
    assert found == {"traceparent": "00-ab", "x-request-id": "r1", "cookie": "c"}
    assert "http.request.header.cookie" not in attrs


def test_redact_config_validate() -> None:
    RedactConfig().validate()
    with pytest.raises(ConfigError, match="keep_headers"):
        RedactConfig(keep_headers="user-agent").validate()  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="sensitive_headers"):
        RedactConfig(sensitive_headers=("",)).validate()


# Attribute limits


def test_limit_str_cuts_on_a_utf8_boundary() -> None:
    text = "ab" + "é" * 10  # "é" is 2 bytes
    cut = limit_str(text, 7)
    assert cut == "abéé" and len(cut.encode()) == 6
    assert limit_str("x" * 10, 4) == "xxxx"
    same = "short é"
    assert limit_str(same, 100) is same
    assert limit_str("€", 2) == ""  # a 3-byte character never half-kept


def test_limit_str_repairs_lone_surrogates() -> None:
    out = limit_str("ok\udcff", 100)
    out.encode("utf-8")  # would raise if a surrogate were left
    assert out.startswith("ok")


def test_apply_limits_bounds_values_lists_and_keys() -> None:
    limits = AttributeLimits(max_value_length=8, max_attributes=4, max_list_items=2)
    counts = LimitCounts()
    attrs = {
        "long": "0123456789abc",
        "list": ["a", "b", "c", "0123456789"],
        "bytes": b"\xff\xfeabc",  # each U+FFFD replacement is 3 bytes
        "int": 10**12,
        "dropped": "x",
    }
    out = apply_limits(attrs, limits, counts)
    assert out is attrs
    assert out == {"long": "01234567", "list": ["a", "b"], "bytes": "\ufffd\ufffdab", "int": 10**12}
    assert (counts.values, counts.lists, counts.attributes) == (2, 1, 1)


def test_apply_limits_leaves_small_records_alone() -> None:
    attrs = {"a": "x", "b": ["y"], "c": True}
    counts = LimitCounts()
    assert apply_limits(dict(attrs), AttributeLimits(), counts) == attrs
    assert counts == LimitCounts()
    with pytest.raises(ConfigError, match="max_attributes"):
        AttributeLimits(max_attributes=0).validate()
