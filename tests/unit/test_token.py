"""Finding the access token (query, form, multipart, JSON, header) and removing
it for hide_credentials without disturbing anything else."""

from __future__ import annotations

import gzip
import json

import pytest
from mitmproxy import http

from oauth2_introspection import token as token_module
from oauth2_introspection.text import is_utf8_text
from oauth2_introspection.token import (
    FoundToken,
    TokenSource,
    drop_form_field,
    find_token,
    mask_url,
    remove_json_member,
    remove_token,
)

FORM = "application/x-www-form-urlencoded"
BOUNDARY = b"b0undary-42"
MULTIPART = f"multipart/form-data; boundary={BOUNDARY.decode()}"


def request(
    path: str = "/x",
    *,
    method: str = "GET",
    body: bytes | str = b"",
    content_type: str | None = None,
    authorization: str | None = None,
    headers: dict[str, str] | None = None,
) -> http.Request:
    all_headers = dict(headers or {})
    if content_type is not None:
        all_headers["Content-Type"] = content_type
    if authorization is not None:
        all_headers["Authorization"] = authorization
    return http.Request.make(method, f"http://service.test{path}", body, all_headers)


def part(head: bytes, content: bytes) -> bytes:
    return b"--" + BOUNDARY + b"\r\n" + head + b"\r\n\r\n" + content + b"\r\n"


def multipart(*parts: bytes, preamble: bytes = b"", epilogue: bytes = b"") -> bytes:
    return preamble + b"".join(parts) + b"--" + BOUNDARY + b"--\r\n" + epilogue


TOKEN_PART = part(b'Content-Disposition: form-data; name="access_token"', b"mp-token")
FILE_PART = part(
    b'Content-Disposition: form-data; name="upload"; filename="report 1.png"\r\n'
    b"Content-Type: image/png",
    b"\x89PNG\r\n\x1a\n\x00\xff binary",
)
JSON_PART = part(
    b'Content-Disposition: form-data; name="meta"\r\nContent-Type: application/json',
    b'{"a": 1}',
)


# -- finding ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("req", "expected"),
    [
        pytest.param(request("/x?access_token=q-token"), ("q-token", "query"), id="query"),
        pytest.param(request("/x?a=1&access_token=a%2Bb+c"), ("a+b c", "query"),
                     id="query value is form-decoded"),
        pytest.param(request("/x?access%5Ftoken=enc"), ("enc", "query"),
                     id="query name is form-decoded"),
        pytest.param(request("/x", method="POST", body="a=1&access_token=f-token",
                             content_type=FORM), ("f-token", "form"), id="form body"),
        pytest.param(request("/x", method="POST", body="access_token=f",
                             content_type="Application/X-WWW-Form-Urlencoded; charset=UTF-8"),
                     ("f", "form"), id="content type is case-insensitive with parameters"),
        pytest.param(request("/x", method="POST", body=multipart(FILE_PART, TOKEN_PART),
                             content_type=MULTIPART), ("mp-token", "multipart"),
                     id="multipart body"),
        pytest.param(request("/x", method="POST", body='{"access_token": "j-token"}',
                             content_type="application/json"), ("j-token", "json"),
                     id="json body"),
        pytest.param(request("/x", method="POST", body='{"access_token": "j"}',
                             content_type="application/vnd.api+json"), ("j", "json"),
                     id="json suffix content type"),
        pytest.param(request(authorization="Bearer h-token"), ("h-token", "header"),
                     id="bearer header"),
        pytest.param(request(authorization="bearer h"), ("h", "header"), id="lower-case bearer"),
        pytest.param(request(authorization="BEARER h"), ("h", "header"), id="upper-case bearer"),
        pytest.param(request(authorization="Token h"), ("h", "header"), id="token scheme"),
        pytest.param(request(authorization="tOkEn h"), ("h", "header"), id="any-case token"),
        pytest.param(request(authorization="Bearer   h\t"), ("h", "header"),
                     id="extra whitespace is tolerated"),
    ],
)
def test_token_is_found(req: http.Request, expected: tuple[str, str]) -> None:
    found = find_token(req)
    assert found is not None
    assert (found.value, found.source.value) == expected


@pytest.mark.parametrize(
    "req",
    [
        pytest.param(request(), id="nothing"),
        pytest.param(request("/x?access_token="), id="empty query value"),
        pytest.param(request("/x?other_token=x"), id="another parameter"),
        pytest.param(request(authorization="Basic dXNlcjpwdw=="), id="basic auth"),
        pytest.param(request(authorization="Bearer"), id="scheme only"),
        pytest.param(request(authorization="Bearer a b"), id="three parts"),
        pytest.param(request(authorization="h-token"), id="bare token"),
        pytest.param(request(authorization="Bearertoken"), id="no separator"),
        pytest.param(request(authorization=""), id="empty header"),
        pytest.param(request("/x", method="POST", body="access_token=f", content_type="text/plain"),
                     id="text/plain body is not parsed"),
        pytest.param(request("/x", method="POST", body="access_token=f"),
                     id="body without content type is not parsed"),
        pytest.param(request("/x", method="POST", body='{"access_token": 42}',
                             content_type="application/json"), id="json number"),
        pytest.param(request("/x", method="POST", body='{"access_token": ""}',
                             content_type="application/json"), id="json empty string"),
        pytest.param(request("/x", method="POST", body='{"nested": {"access_token": "x"}}',
                             content_type="application/json"), id="json nested member"),
        pytest.param(request("/x", method="POST", body='["access_token", "x"]',
                             content_type="application/json"), id="json array"),
        pytest.param(request("/x", method="POST", body='{"access_token": "x"',
                             content_type="application/json"), id="unparsable json"),
        pytest.param(request("/x", method="POST",
                             body=b'\xef\xbb\xbf{"access_token": "x"}',
                             content_type="application/json"), id="json with a byte order mark"),
        pytest.param(request("/x", method="POST",
                             body='{"access_token": "x"}'.encode("utf-16"),
                             content_type="application/json"), id="utf-16 json"),
        pytest.param(request("/x", method="POST", body=multipart(part(
            b'Content-Disposition: form-data; name="access_token"; filename="t.txt"', b"f")),
            content_type=MULTIPART), id="multipart file named access_token"),
        pytest.param(request("/x", method="POST", body=multipart(TOKEN_PART),
                             content_type="multipart/form-data"), id="multipart without boundary"),
    ],
)
def test_no_token_is_found(req: http.Request) -> None:
    assert find_token(req) is None


def test_body_parameter_wins_over_query_parameter() -> None:
    req = request("/x?access_token=from-query", method="POST", body="access_token=from-body",
                  content_type=FORM)
    assert find_token(req) == FoundToken("from-body", TokenSource.FORM)


def test_query_parameter_wins_over_the_authorization_header() -> None:
    req = request("/x?access_token=from-query", authorization="Bearer from-header")
    assert find_token(req) == FoundToken("from-query", TokenSource.QUERY)


def test_json_body_parameter_wins_over_the_authorization_header() -> None:
    req = request("/x", method="POST", body='{"access_token": "j"}',
                  content_type="application/json", authorization="Bearer h")
    assert find_token(req) == FoundToken("j", TokenSource.JSON)


def test_body_without_the_field_falls_back_to_the_query() -> None:
    req = request("/x?access_token=q", method="POST", body="a=1", content_type=FORM)
    assert find_token(req) == FoundToken("q", TokenSource.QUERY)


def test_duplicate_query_keys_use_the_first() -> None:
    assert find_token(request("/x?access_token=one&access_token=two")) == FoundToken(
        "one", TokenSource.QUERY
    )


def test_duplicate_form_keys_use_the_first() -> None:
    req = request("/x", method="POST", body="access_token=one&access_token=two",
                  content_type=FORM)
    assert find_token(req) == FoundToken("one", TokenSource.FORM)


def test_duplicate_json_keys_use_the_last_as_json_parsers_do() -> None:
    req = request("/x", method="POST", body='{"access_token": "one", "access_token": "two"}',
                  content_type="application/json")
    assert find_token(req) == FoundToken("two", TokenSource.JSON)


def test_a_body_over_the_size_cap_is_not_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(token_module, "MAX_BODY_BYTES", 32)
    small = request("/x", method="POST", body="access_token=t", content_type=FORM)
    big = request("/x", method="POST", body="access_token=t&pad=" + "x" * 32, content_type=FORM)
    assert find_token(small) is not None
    assert find_token(big) is None


def test_a_compressed_body_is_not_inflated_to_look_for_a_token() -> None:
    # A small gzip body could inflate far past MAX_BODY_BYTES; Kong reads raw bodies too.
    req = request("/x", method="POST", content_type=FORM,
                  headers={"Content-Encoding": "gzip"})
    req.raw_content = gzip.compress(b"access_token=gz")
    assert find_token(req) is None


def test_an_identity_encoded_body_is_read() -> None:
    req = request("/x", method="POST", content_type=FORM, body=b"access_token=plain",
                  headers={"Content-Encoding": "identity"})
    assert find_token(req) == FoundToken("plain", TokenSource.FORM)


def test_a_multipart_token_with_a_quoted_boundary_is_found() -> None:
    req = request("/x", method="POST", body=multipart(TOKEN_PART),
                  content_type=f'multipart/form-data; boundary="{BOUNDARY.decode()}"')
    assert find_token(req) == FoundToken("mp-token", TokenSource.MULTIPART)


# -- removing --------------------------------------------------------------------


def test_removing_a_header_token_drops_the_authorization_header() -> None:
    req = request("/x?access_token=untouched", authorization="Bearer h")
    found = find_token(req)
    assert found is not None
    assert found.source is TokenSource.QUERY  # the query wins; remove the header explicitly
    removed = remove_token(req, FoundToken("h", TokenSource.HEADER))
    assert removed == ["header:Authorization"]
    assert "authorization" not in req.headers
    assert req.path == "/x?access_token=untouched"


@pytest.mark.parametrize(
    ("path", "kept"),
    [
        ("/x?access_token=t", "/x"),
        ("/x?a=1&access_token=t&b=2", "/x?a=1&b=2"),
        ("/x?b=2&access_token=t&a=1&c=%20+3", "/x?b=2&a=1&c=%20+3"),
        ("/x?access_token=t&access_token=u&z", "/x?z"),
        ("/x?access%5Ftoken=t&keep=1", "/x?keep=1"),
        ("/x?a=1&access_token=t", "/x?a=1"),
    ],
)
def test_removing_a_query_token_keeps_other_parameters_in_order(path: str, kept: str) -> None:
    req = request(path)
    found = find_token(req)
    assert found is not None
    assert remove_token(req, found) == ["query:access_token"]
    assert req.path == kept


def test_removing_a_form_token_keeps_the_other_bytes() -> None:
    body = b"b=%20x+y&access_token=t&a=%C3%A9&empty=&flag"
    req = request("/x", method="POST", body=body, content_type=FORM)
    found = find_token(req)
    assert found is not None
    assert remove_token(req, found) == ["form:access_token"]
    assert req.content == b"b=%20x+y&a=%C3%A9&empty=&flag"


def test_removing_a_form_token_keeps_non_ascii_bytes_intact() -> None:
    body = "access_token=t&name=é€".encode() + b"&raw=\xff"
    req = request("/x", method="POST", body=body, content_type=FORM)
    found = find_token(req)
    assert found is not None
    remove_token(req, found)
    assert req.content == "name=é€".encode() + b"&raw=\xff"


def test_removing_a_body_token_also_clears_the_query_parameter_as_kong_does() -> None:
    req = request("/x?access_token=q&keep=1", method="POST", body="access_token=f&a=1",
                  content_type=FORM)
    found = find_token(req)
    assert found == FoundToken("f", TokenSource.FORM)
    assert remove_token(req, found) == ["query:access_token", "form:access_token"]
    assert req.path == "/x?keep=1"
    assert req.content == b"a=1"


def test_removing_a_query_token_leaves_a_body_without_the_field_alone() -> None:
    body = b'{"a": 1}'
    req = request("/x?access_token=q", method="POST", body=body, content_type="application/json")
    found = find_token(req)
    assert found is not None
    assert remove_token(req, found) == ["query:access_token"]
    assert req.content == body


@pytest.mark.parametrize(
    ("body", "kept"),
    [
        ('{"access_token": "t"}', "{}"),
        ('{"a": 1, "access_token": "t"}', '{"a": 1}'),
        ('{"access_token": "t", "a": 1}', '{"a": 1}'),
        ('{"b":1.50,"access_token":"t","a":1e3}', '{"b":1.50,"a":1e3}'),
        ('{\n  "z": [1, 2.0, -0],\n  "access_token": "t",\n  "a": {"x": null}\n}\n',
         '{\n  "z": [1, 2.0, -0],\n  "a": {"x": null}\n}\n'),
        ('  { "a" : "\\u00e9" ,  "access_token" : "t" }  ', '  { "a" : "\\u00e9" }  '),
        ('{"access_token": "t", "x": 1, "access_token": "u"}', '{"x": 1}'),
        ('{"nested": {"access_token": "keep"}, "access_token": "t"}',
         '{"nested": {"access_token": "keep"}}'),
        ('{"acc\\u0065ss_token": "t", "a": true}', '{"a": true}'),
        ('{"a": 123456789012345678901234567890, "access_token": "t"}',
         '{"a": 123456789012345678901234567890}'),
        # JSON puts no limit on a number's length (Python's int() does: 4,300 digits)
        ('{"access_token": "t", "n": ' + "1" * 5000 + "}", '{"n": ' + "1" * 5000 + "}"),
    ],
)
def test_removing_a_json_token_keeps_spacing_order_and_number_formats(
    body: str, kept: str
) -> None:
    req = request("/x", method="POST", body=body, content_type="application/json")
    found = find_token(req)
    assert found is not None
    assert remove_token(req, found) == ["json:access_token"]
    assert req.content == kept.encode()
    json.loads(req.content, parse_int=str)  # still valid JSON


def test_removing_a_json_token_keeps_utf8_text_intact() -> None:
    body = '{"name": "Zoë ✓", "access_token": "t"}'.encode()
    req = request("/x", method="POST", body=body, content_type="application/json")
    found = find_token(req)
    assert found is not None
    remove_token(req, found)
    assert req.content == '{"name": "Zoë ✓"}'.encode()


@pytest.mark.parametrize(
    "text", ["[1, 2]", '"access_token"', "{", '{"a" 1}', '{"a": 1,}', "", '{"a": 1 "b": 2}']
)
def test_remove_json_member_refuses_what_is_not_a_json_object(text: str) -> None:
    assert remove_json_member(text, "access_token") is None


def test_remove_json_member_without_the_key_returns_the_text_unchanged() -> None:
    assert remove_json_member('{"a": 1}', "access_token") == '{"a": 1}'


@pytest.mark.parametrize(
    ("parts", "kept"),
    [
        pytest.param((FILE_PART, TOKEN_PART, JSON_PART), (FILE_PART, JSON_PART), id="middle"),
        pytest.param((TOKEN_PART, FILE_PART), (FILE_PART,), id="first"),
        pytest.param((FILE_PART, TOKEN_PART), (FILE_PART,), id="last"),
        pytest.param((TOKEN_PART,), (), id="only"),
        pytest.param((TOKEN_PART, JSON_PART, TOKEN_PART), (JSON_PART,), id="duplicates"),
    ],
)
def test_removing_a_multipart_token_keeps_every_other_byte(
    parts: tuple[bytes, ...], kept: tuple[bytes, ...]
) -> None:
    body = multipart(*parts, preamble=b"preamble\r\n", epilogue=b"epilogue")
    req = request("/x", method="POST", body=body, content_type=MULTIPART)
    found = find_token(req)
    assert found == FoundToken("mp-token", TokenSource.MULTIPART)
    assert remove_token(req, found) == ["multipart:access_token"]
    assert req.content == multipart(*kept, preamble=b"preamble\r\n", epilogue=b"epilogue")


def test_removing_a_multipart_token_keeps_filenames_and_part_content_types() -> None:
    req = request("/x", method="POST", body=multipart(FILE_PART, TOKEN_PART, JSON_PART),
                  content_type=MULTIPART)
    found = find_token(req)
    assert found is not None
    remove_token(req, found)
    assert b'filename="report 1.png"' in req.content
    assert b"Content-Type: image/png" in req.content
    assert b"Content-Type: application/json" in req.content
    assert b"\x89PNG\r\n\x1a\n\x00\xff binary" in req.content
    assert b"mp-token" not in req.content


def test_hiding_a_query_token_leaves_a_compressed_body_byte_for_byte() -> None:
    req = request("/x?access_token=q", method="POST", content_type=FORM,
                  headers={"Content-Encoding": "gzip"})
    compressed = gzip.compress(b"a=1&access_token=gz")
    req.raw_content = compressed
    found = find_token(req)
    assert found == FoundToken("q", TokenSource.QUERY)
    remove_token(req, found)
    assert req.path == "/x"
    assert req.raw_content == compressed


@pytest.mark.parametrize(
    ("encoded", "kept"),
    [
        ("", ""),
        ("access_token=x", ""),
        ("a&access_token&b", "a&b"),
        ("a=1&b=2", "a=1&b=2"),
        ("access_token_x=1&x_access_token=2", "access_token_x=1&x_access_token=2"),
        ("a=%26&access_token=1", "a=%26"),
    ],
)
def test_drop_form_field_removes_only_that_field(encoded: str, kept: str) -> None:
    assert drop_form_field(encoded, "access_token") == kept


# -- hostile input ---------------------------------------------------------------------


DEEP_JSON = [b"[" * 1000 + b"]" * 1000, b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
             b'{"access_token": "j", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}"]


@pytest.mark.parametrize("body", DEEP_JSON, ids=["1000 deep", "200 KB deep", "token and deep"])
def test_a_json_body_nested_too_deeply_has_no_parameters(body: bytes) -> None:
    # as any body that does not parse: the header token is used
    req = request("/x", method="POST", body=body, content_type="application/json",
                  authorization="Bearer h-token")
    assert find_token(req) == FoundToken("h-token", TokenSource.HEADER)


@pytest.mark.parametrize("body", DEEP_JSON, ids=["1000 deep", "200 KB deep", "token and deep"])
def test_hiding_a_query_token_leaves_a_deeply_nested_json_body_alone(body: bytes) -> None:
    req = request("/x?access_token=q", method="POST", body=body, content_type="application/json")
    found = find_token(req)
    assert found == FoundToken("q", TokenSource.QUERY)
    assert remove_token(req, found) == ["query:access_token"]
    assert req.content == body


def test_a_json_token_that_cannot_be_cut_out_is_never_left_in_the_body(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    req = request("/x", method="POST", body=b'{"access_token": "j"}',
                  content_type="application/json")
    found = find_token(req)
    assert found is not None
    monkeypatch.setattr(token_module, "remove_json_member", lambda *_: None)
    with pytest.raises(ValueError, match="cannot remove"):
        remove_token(req, found)


@pytest.mark.parametrize(
    ("req", "source"),
    [
        pytest.param(request(authorization="Bearer ok-\udcff"), "header", id="header"),
        pytest.param(request("/x?access_token=ok-%FF"), "query", id="query escape"),
        pytest.param(request("/x?access_token=ok-%FE"), "query", id="another escape"),
        pytest.param(request("/x", method="POST", body=b"access_token=ok-\xff", content_type=FORM),
                     "form", id="form raw byte"),
        pytest.param(request("/x", method="POST", body=b"access_token=ok-%FF", content_type=FORM),
                     "form", id="form escape"),
        pytest.param(request("/x", method="POST", body=multipart(part(
            b'Content-Disposition: form-data; name="access_token"', b"ok-\xff")),
            content_type=MULTIPART), "multipart", id="multipart"),
        pytest.param(request("/x", method="POST", body=b'{"access_token": "ok-\\ud800"}',
                             content_type="application/json"), "json", id="json surrogate"),
    ],
)
def test_a_token_with_bytes_that_are_not_utf8_is_found_but_is_not_text(
    req: http.Request, source: str
) -> None:
    found = find_token(req)
    assert found is not None and found.source.value == source
    assert not is_utf8_text(found.value)
    assert found.value != "ok-\ufffd"  # never replaced: two tokens must not read as one


def test_different_invalid_bytes_are_different_tokens() -> None:
    a = find_token(request("/x?access_token=ok-%FF"))
    b = find_token(request("/x?access_token=ok-%FE"))
    assert a is not None and b is not None and a.value != b.value


def test_utf8_tokens_are_text() -> None:
    assert is_utf8_text("ascii") and is_utf8_text("Zoë-😀")


@pytest.mark.parametrize(
    "req",
    [
        pytest.param(request("/x?access_token=%C3%A9"), id="query"),
        pytest.param(request("/x", method="POST", body="access_token=é".encode(),
                             content_type=FORM), id="form raw"),
        pytest.param(request("/x", method="POST", body=b"access_token=%C3%A9",
                             content_type=FORM), id="form escaped"),
        pytest.param(request("/x", method="POST", body='{"access_token": "é"}'.encode(),
                             content_type="application/json"), id="json"),
        pytest.param(request("/x", method="POST", body=multipart(part(
            b'Content-Disposition: form-data; name="access_token"', "é".encode())),
            content_type=MULTIPART), id="multipart"),
    ],
)
def test_a_non_ascii_token_reads_the_same_from_every_source(req: http.Request) -> None:
    found = find_token(req)
    assert found is not None and found.value == "é"


def test_removing_a_utf8_form_token_keeps_every_other_byte() -> None:
    body = "a=é&access_token=é&b=€".encode() + b"&raw=\xff\xed\xa0\x80"
    req = request("/x", method="POST", body=body, content_type=FORM)
    found = find_token(req)
    assert found == FoundToken("é", TokenSource.FORM)
    assert remove_token(req, found) == ["form:access_token"]
    assert req.content == "a=é&b=€".encode() + b"&raw=\xff\xed\xa0\x80"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://h/p", "http://h/p"),
        ("http://h/p?a=1", "http://h/p?a=1"),
        ("http://h/p?access_token=SECRET", "http://h/p?access_token=***"),
        ("http://h/p?a=1&access_token=SECRET&b=2", "http://h/p?a=1&b=2&access_token=***"),
        ("http://h/qq?access%5Ftoken=SECRET", "http://h/qq?access_token=***"),
        ("http://h/qq?access%5ftoken=SECRET&access_token=SECRET2",
         "http://h/qq?access_token=***"),
        ("http://h/qq?%61ccess_token=SECRET&a=1", "http://h/qq?a=1&access_token=***"),
        ("http://h/qq?access_token_x=1", "http://h/qq?access_token_x=1"),
    ],
)
def test_mask_url_masks_the_parameter_the_way_the_lookup_reads_it(url: str, shown: str) -> None:
    assert mask_url(url) == shown
    assert "SECRET" not in mask_url(url)


# -- found by the fourth black-box review ------------------------------------------

FAKE = b"--" + BOUNDARY + b"X"  # starts like a delimiter line, is not one (RFC 2046)


@pytest.mark.parametrize("body", [
    # inside a file's content: a line that only starts like the delimiter
    multipart(part(b'Content-Disposition: form-data; name="f"; filename="x.txt"',
                   b"line1\r\n" + FAKE + b'\r\nContent-Disposition: form-data; '
                   b'name="access_token"\r\n\r\nb-tok\r\n' + FAKE + b"--")),
    # after the close delimiter: the epilogue
    multipart(FILE_PART, epilogue=TOKEN_PART + b"--" + BOUNDARY + b"--\r\n"),
], ids=["fake-delimiter-in-a-file", "epilogue"])
def test_only_real_delimiters_make_parts(body: bytes) -> None:
    req = request("/x", method="POST", body=body, content_type=MULTIPART)
    assert find_token(req) is None


def test_a_delimiter_line_may_carry_transport_padding() -> None:
    body = multipart(FILE_PART, TOKEN_PART.replace(BOUNDARY + b"\r\n", BOUNDARY + b" \t\r\n", 1))
    req = request("/x", method="POST", body=body, content_type=MULTIPART)
    found = find_token(req)
    assert found is not None and found.value == "mp-token"
    remove_token(req, found)
    assert req.content == multipart(FILE_PART)


@pytest.mark.parametrize(("fields", "expected"), [
    ([("Authorization", "Bearer tok")], "tok"),
    ([("Authorization", "Bearer tok"), ("Authorization", "Bearer tok")], None),  # repeated
    ([("Authorization", "Bearer tok"), ("Authorization", "")], None),  # not `tok,`
    ([("Authorization", "Bearer\u00a0tok")], None),  # a no-break space is no separator
    ([("Authorization", "Bearer tok\u3000")], "tok\u3000"),
    ([("Authorization", "bearer \t tok ")], "tok"),
])
def test_the_authorization_header_is_read_as_kong_reads_it(fields, expected) -> None:
    req = http.Request.make("GET", "http://service.test/x", b"",
                            [(k.encode(), v.encode()) for k, v in fields])
    found = find_token(req)
    assert (found.value if found else None) == expected
    from oauth2_introspection.fastpath import read_head
    found = find_token(req, read_head(req))
    assert (found.value if found else None) == expected
