"""The bundled echo upstream answers every method with 200 (docs/demo.md)."""

from __future__ import annotations

import socket
import threading

import pytest

from oauth2_introspection.devtools.echo import EchoServer


@pytest.mark.parametrize("method", [b"GET", b"PURGE", b"FOO"])
def test_every_method_is_echoed(method: bytes) -> None:
    server = EchoServer("127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with socket.create_connection(server.server_address, timeout=5) as s:
            s.sendall(method + b" /x HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n")
            head = s.recv(4096)
        assert head.startswith(b"HTTP/1.1 200 ")
    finally:
        server.shutdown()
        server.server_close()
