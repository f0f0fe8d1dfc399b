"""`hide_credentials: true` removes the token wherever it came from, and
leaves everything else the client sent as it was."""

from __future__ import annotations

import base64

from .harness import echoed


def _body(data) -> bytes:
    return base64.b64decode(data["body_base64"])


def test_authorization_header_is_removed(client, make_token):
    token = make_token(username="alice")
    data = echoed(client.get("/hide/x", headers={"Authorization": f"Bearer {token}",
                                                 "X-Other": "kept"}))
    assert "authorization" not in data["h"]
    assert data["h"]["x-other"] == "kept"
    assert data["h"]["x-credential-identifier"] == "alice"
    assert token not in str(data)


def test_authorization_header_is_kept_without_hide_credentials(client, make_token):
    token = make_token(username="alice")
    data = echoed(client.get("/basic/x", headers={"Authorization": f"Bearer {token}"}))
    assert data["h"]["authorization"] == f"Bearer {token}"


def test_query_parameter_is_removed_and_other_parameters_keep_their_order(client, make_token):
    token = make_token(username="alice")
    data = echoed(client.get(f"/hide/x?b=2&a=%20one&access_token={token}&z&a=3&c=x+y"))
    assert data["path"] == "/hide/x?b=2&a=%20one&z&a=3&c=x+y"
    assert data["h"]["x-credential-identifier"] == "alice"


def test_query_with_only_the_token_loses_its_question_mark(client, make_token):
    token = make_token(username="alice")
    data = echoed(client.get(f"/hide/only?access_token={token}"))
    assert data["path"] == "/hide/only"


def test_query_parameter_is_kept_without_hide_credentials(client, make_token):
    token = make_token(username="alice")
    data = echoed(client.get(f"/basic/x?a=1&access_token={token}"))
    assert data["path"] == f"/basic/x?a=1&access_token={token}"


def test_form_field_is_removed_and_the_rest_of_the_form_is_kept(client, make_token):
    token = make_token(username="alice")
    body = f"first=1&access_token={token}&msg=hello+w%C3%B6rld&empty=&last=%26".encode()
    resp = client.post("/hide/form", content=body,
                       headers={"Content-Type": "application/x-www-form-urlencoded"})
    data = echoed(resp)
    assert _body(data) == b"first=1&msg=hello+w%C3%B6rld&empty=&last=%26"
    assert data["h"]["content-length"] == str(len(_body(data)))
    assert data["h"]["x-credential-identifier"] == "alice"


def test_json_field_is_removed_and_the_rest_is_kept_byte_for_byte(client, make_token):
    token = make_token(username="alice")
    body = ('{\n  "amount": 1.50,\n  "access_token": "' + token + '",\n'
            '  "note": "caf\\u00e9 \\"q\\"",\n  "big": 12345678901234567890,\n'
            '  "nested": {"access_token": "inner"}\n}')
    resp = client.post("/hide/json", content=body.encode(),
                       headers={"Content-Type": "application/json"})
    data = echoed(resp)
    assert _body(data).decode() == (
        '{\n  "amount": 1.50,\n  "note": "caf\\u00e9 \\"q\\"",\n'
        '  "big": 12345678901234567890,\n  "nested": {"access_token": "inner"}\n}'
    )
    assert data["h"]["content-type"] == "application/json"


def test_json_field_is_removed_when_it_is_the_last_member(client, make_token):
    token = make_token(username="alice")
    body = '{"a": [1, 2], "access_token": "' + token + '"}'
    resp = client.post("/hide/json", content=body.encode(),
                       headers={"Content-Type": "application/json"})
    assert _body(echoed(resp)) == b'{"a": [1, 2]}'


def test_json_body_is_kept_without_hide_credentials(client, make_token):
    token = make_token(username="alice")
    body = '{"amount": 1.50, "access_token": "' + token + '"}'
    resp = client.post("/basic/json", content=body.encode(),
                       headers={"Content-Type": "application/json"})
    assert _body(echoed(resp)) == body.encode()


def test_multipart_field_is_removed_and_files_keep_filenames_and_types(client, make_token):
    token = make_token(username="alice")
    boundary = "----e2eBoundary7MA4YWxkTrZu0gW"
    png = b"\x89PNG\r\n\x1a\n\x00\x00binary\r\n--not-a-boundary\xff"
    parts = [
        (b'Content-Disposition: form-data; name="title"\r\n\r\n', b"hello"),
        (b'Content-Disposition: form-data; name="access_token"\r\n\r\n', token.encode()),
        (b'Content-Disposition: form-data; name="file"; filename="pic.png"\r\n'
         b"Content-Type: image/png\r\n\r\n", png),
        (b'Content-Disposition: form-data; name="doc"; filename="a.json"\r\n'
         b"Content-Type: application/json; charset=utf-8\r\n\r\n", b'{"x": 1}'),
    ]

    def build(selected):
        out = b""
        for head, content in selected:
            out += b"--" + boundary.encode() + b"\r\n" + head + content + b"\r\n"
        return out + b"--" + boundary.encode() + b"--\r\n"

    resp = client.post("/hide/upload", content=build(parts),
                       headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    data = echoed(resp)
    assert _body(data) == build([parts[0], parts[2], parts[3]])
    assert data["h"]["content-length"] == str(len(_body(data)))
    assert data["h"]["x-credential-identifier"] == "alice"


def test_multipart_body_is_kept_without_hide_credentials(client, make_token):
    token = make_token(username="alice")
    boundary = "b0undary"
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="access_token"\r\n\r\n'
            f'{token}\r\n--{boundary}\r\nContent-Disposition: form-data; name="f"; '
            f'filename="x.bin"\r\nContent-Type: application/octet-stream\r\n\r\n'
            f'data\r\n--{boundary}--\r\n').encode()
    resp = client.post("/basic/upload", content=body,
                       headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert _body(echoed(resp)) == body

