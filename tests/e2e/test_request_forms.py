"""Requests shaped to slip past the policy: an absolute-form request line
naming another host than the Host header, identity headers spelled with
underscores, a lower-case `options` method, a refused HEAD; and the one
mitmproxy option that would forward requests before the addon decides
(`stream_large_bodies`)."""

from __future__ import annotations

import json
import socket

from .harness import Mitmdump, echoed, raw_request


def _raw(port: int, head: str) -> tuple[int, bytes]:
    """A request head written with "\\n" line ends, sent raw (no body)."""
    return raw_request(port, head.replace("\n", "\r\n").encode() + b"\r\n")


def test_absolute_form_request_is_routed_by_its_request_line_host(proxy):
    # `hosted` (api.example.test, with the plugin) vs `open` (path /open, no
    # plugin): the Host header names the open route's host, the request line
    # the protected one; RFC 9112 has servers use the request line
    status, _ = _raw(proxy.port, "GET http://api.example.test/open HTTP/1.1\n"
                                 f"Host: 127.0.0.1:{proxy.port}\n")
    assert status == 401
    status, _ = _raw(proxy.port, "GET http://api.example.test/open HTTP/1.1\n")
    assert status == 401
    # the same request in origin form is the open route's
    status, _ = _raw(proxy.port, f"GET /open HTTP/1.1\nHost: 127.0.0.1:{proxy.port}\n")
    assert status == 200


def test_absolute_form_request_goes_upstream_in_origin_form(proxy, make_token):
    token = make_token(username="alice")
    status, body = _raw(proxy.port, "GET http://api.example.test/x?q=1 HTTP/1.1\n"
                                    "Host: elsewhere.test\n"
                                    f"Authorization: Bearer {token}\n")
    assert status == 200, body
    seen = json.loads(body)
    assert seen["path"] == "/x?q=1"
    # routed as api.example.test's route, whose Host upstream is the target's
    assert "elsewhere.test" not in [v for k, v in seen["headers"] if k.lower() == "host"]


def test_identity_headers_spelled_with_underscores_are_removed(client, make_token):
    token = make_token(username="mallory", scope="read")
    forged = {"X-Consumer_Username": "admin", "X_Consumer_ID": "forged",
              "X-Credential_Scope": "admin", "X_Credential_Groups": "root",
              "X_Anonymous_Consumer": "false", "X-Anonymous_Consumer": "false"}
    data = echoed(client.get("/basic/x", headers={**forged,
                                                  "Authorization": f"Bearer {token}"}))
    names = [k.lower().replace("_", "-") for k, _ in data["headers"]]
    assert [k for k in names if k.startswith("x-consumer-")] == []
    assert "x-anonymous-consumer" not in names
    assert sorted(k for k in names if k.startswith("x-credential-")) == [
        "x-credential-identifier", "x-credential-scope"]
    assert data["h"]["x-credential-scope"] == "read"


def test_only_the_options_method_itself_is_a_preflight(proxy):
    # run_on_preflight: false lets `OPTIONS` through unauthenticated; methods
    # are case-sensitive, so `options` needs a token like any other method
    status, _ = _raw(proxy.port, f"OPTIONS /preflight/x HTTP/1.1\nHost: 127.0.0.1:{proxy.port}\n")
    assert status == 200
    status, body = _raw(proxy.port,
                        f"options /preflight/x HTTP/1.1\nHost: 127.0.0.1:{proxy.port}\n")
    assert status == 401, body


def test_stream_large_bodies_is_refused_in_enforce_mode(echo, idp):
    cfg = {"_format_version": "3.0", "services": []}
    m = Mitmdump(cfg, echo.port, ["--set", "stream_large_bodies=10k"])
    code, log = m.outcome()
    assert code != 0, log
    assert "stream_large_bodies cannot be used" in log


def test_stream_large_bodies_is_accepted_in_report_mode(echo, idp):
    cfg = {"_format_version": "3.0", "services": []}
    m = Mitmdump(cfg, echo.port, ["--set", "stream_large_bodies=10k",
                                  "--set", "introspection_mode=report"]).start()
    try:
        assert m.proc.poll() is None
    finally:
        m.stop()


def test_a_refused_head_request_gets_no_body_and_the_connection_stays_usable(proxy, make_token):
    # a body after a HEAD answer is read as the start of the next answer
    token = make_token(username="alice")
    request = (f"HEAD /basic/x HTTP/1.1\r\nHost: 127.0.0.1:{proxy.port}\r\n\r\n"
               f"GET /basic/y HTTP/1.1\r\nHost: 127.0.0.1:{proxy.port}\r\n"
               f"Authorization: Bearer {token}\r\nConnection: close\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=15) as s:
        s.sendall(request)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 401")
    assert b"www-authenticate" in head.lower()
    assert rest.startswith(b"HTTP/1.1 200"), rest[:80]  # nothing between the two answers
