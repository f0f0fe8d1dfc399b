"""An https introspection endpoint with a private CA: trusted through
mitmproxy's own upstream options (ssl_verify_upstream_trusted_ca), refused
without them (502), as Kong needs lua_ssl_trusted_certificate."""

from __future__ import annotations

import datetime
import ipaddress
import json
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .harness import Mitmdump


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test idp")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "idp.pem", directory / "idp.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


class _Idp(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = json.dumps({"active": True, "username": "alice"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def tls_idp(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    cert, key = _self_signed(tmp_path)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Idp)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_address[1]}/introspect", cert
    server.shutdown()
    server.server_close()


def _config(url: str) -> dict[str, object]:
    return {
        "_format_version": "3.0",
        "services": [{"name": "s", "routes": [{"name": "all", "paths": ["/"]}],
                      "plugins": [{"name": "oauth2-introspection", "config": {
                          "introspection_url": url, "authorization_value": "Basic eDp5"}}]}],
    }


@pytest.mark.parametrize(("trust", "status"), [(False, 502), (True, 200)])
def test_a_private_ca_is_trusted_through_mitmproxys_upstream_option(echo, tls_idp, trust, status):
    url, cert = tls_idp
    extra = ["--set", f"ssl_verify_upstream_trusted_ca={cert}"] if trust else []
    m = Mitmdump(_config(url), echo.port, extra_args=extra).start()
    try:
        with httpx.Client(base_url=m.url, trust_env=False, timeout=15) as c:
            resp = c.get("/x", headers={"Authorization": "Bearer tls-token-1"})
        assert resp.status_code == status, (resp.text, m.log()[-2000:])
        if not trust:
            assert "certificate verify failed" in m.log()
    finally:
        m.stop()
