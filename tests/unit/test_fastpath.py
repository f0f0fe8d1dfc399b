"""The hot-path helpers behave exactly like the mitmproxy calls they replace."""

from __future__ import annotations

import pytest
from mitmproxy import http
from mitmproxy.test import tutils

from oauth2_introspection.addon import safe_url
from oauth2_introspection.fastpath import (
    ClientURL,
    decision_logging,
    header,
    host_header,
    read_head,
    rewrite_headers,
)
from oauth2_introspection.headers import spoofable_names, strip_spoofable


def _req(*fields: tuple[bytes, bytes], path: bytes = b"/p?q=1",
         version: bytes = b"HTTP/1.1") -> http.Request:
    return tutils.treq(headers=fields, path=path, http_version=version, content=b"")


@pytest.mark.parametrize("fields", [
    (),
    ((b"Host", b"a.test"),),
    ((b"host", b"a.test"), (b"X", b"1"), (b"HOST", b"b.test")),
    ((b"Authorization", b"Bearer t\xc3\xa9"),),
    ((b"authorization", b"Bearer a"), (b"Authorization", b"Bearer b")),
])
def test_header_and_host_header_match_mitmproxy(fields) -> None:
    req = _req(*fields)
    assert header(req.headers, b"authorization") == req.headers.get("authorization")
    assert host_header(req) == req.host_header


@pytest.mark.parametrize("fields", [
    (),
    ((b"Host", b"a.test"), (b"Authorization", b"Bearer t")),
    ((b"host", b"a.test"), (b"X-Consumer-ID", b"f"), (b"HOST", b"b.test")),
    ((b"authorization", b"Bearer a"), (b"Authorization", b"Bearer b"), (b"x-credential-sub", b"s")),
    ((b"X-Anonymous-Consumer", b"true"),),
    ((b"X-Other", b"1"), (b"Authorization", b"Token t\xc3\xa9")),
])
@pytest.mark.parametrize("version", [b"HTTP/1.1", b"HTTP/2.0"])
def test_read_head_reads_what_mitmproxy_reads(fields, version) -> None:
    req = _req(*fields, version=version)
    if version == b"HTTP/2.0":
        req.authority = "h2.test"
    head = read_head(req)
    assert head.host_header == req.host_header
    # a repeated Authorization header carries no token: read as none
    single = len(req.headers.get_all("authorization")) <= 1
    assert head.authorization == (req.headers.get("authorization") if single else None)
    assert head.spoofed == bool(spoofable_names(req.headers))


def test_host_header_for_http2_uses_the_authority() -> None:
    req = _req(version=b"HTTP/2.0")
    req.authority = "h2.test"
    assert host_header(req) == req.host_header == "h2.test"


@pytest.mark.parametrize("fields", [
    ((b"Host", b"a.test"), (b"X", b"1")),
    ((b"X", b"1"), (b"hOsT", b"a.test"), (b"Y", b"2"), (b"host", b"b.test")),
    ((b"X", b"1"),),
])
def test_rewrite_headers_sets_host_as_mitmproxy_does(fields) -> None:
    ours, theirs = _req(*fields), _req(*fields)
    rewrite_headers(ours, "up.test:8080")
    theirs.host_header = "up.test:8080"
    assert ours.headers.fields == theirs.headers.fields


def test_rewrite_headers_sets_the_http2_authority() -> None:
    ours, theirs = _req((b"X", b"1"), version=b"HTTP/2.0"), _req((b"X", b"1"), version=b"HTTP/2.0")
    rewrite_headers(ours, "up.test", add=((b"X-Consumer-ID", b"c"),))
    theirs.host_header = "up.test"
    assert ours.authority == theirs.authority == "up.test"
    assert ours.headers.fields == ((b"X", b"1"), (b"X-Consumer-ID", b"c"))


def test_rewrite_headers_without_changes_keeps_the_same_list() -> None:
    req = _req((b"Host", b"a"), (b"X-Consumer-ID", b"forged"))
    before = req.headers.fields
    rewrite_headers(req, None)
    assert req.headers.fields is before


def test_strip_then_append_leaves_only_our_identity_headers() -> None:
    req = _req((b"X-Consumer-ID", b"forged"), (b"Host", b"a"), (b"x-credential-sub", b"f"),
               (b"X-Anonymous-Consumer", b"true"), (b"X-Other", b"kept"))
    rewrite_headers(req, "up.test", strip=True, add=((b"X-Consumer-ID", b"real"),))
    assert req.headers.fields == ((b"Host", b"up.test"), (b"X-Other", b"kept"),
                                  (b"X-Consumer-ID", b"real"))
    assert strip_spoofable(req.headers) == ["X-Consumer-ID"]
    assert strip_spoofable(req.headers) == []


@pytest.mark.parametrize("path", [b"/p", b"/p?access_token=secret&x=1", b"/p?x=1"])
@pytest.mark.parametrize("host", [b"client.test", b"client.test:8443", None])
def test_client_url_renders_like_safe_url_and_keeps_the_original(path, host) -> None:
    fields = ((b"Host", host),) if host else ()
    req = _req(*fields, path=path)
    expected = safe_url(req)
    url = ClientURL(req, req.host_header)
    req.path = "/rewritten"
    req.host_header = "upstream.test"
    assert str(url) == f"{url}" == expected
    assert "secret" not in str(url)


def test_decision_logging_follows_termlog_verbosity() -> None:
    class Opts:
        termlog_verbosity = "info"

    assert decision_logging(Opts()) is False
    Opts.termlog_verbosity = "debug"
    assert decision_logging(Opts()) is True
    assert decision_logging(object()) is True  # no terminal log: keep every line


def test_rewrite_headers_drops_every_field_of_a_name() -> None:
    req = _req((b"Authorization", b"Bearer a"), (b"Host", b"a"), (b"authorization", b"Bearer b"),
               (b"X", b"1"))
    rewrite_headers(req, None, drop=b"authorization", add=((b"X-Consumer-ID", b"c"),))
    assert req.headers.fields == ((b"Host", b"a"), (b"X", b"1"), (b"X-Consumer-ID", b"c"))
