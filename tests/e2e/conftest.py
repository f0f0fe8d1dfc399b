"""Fixtures: one echo upstream and one introspection server per session, and a
mitmdump with a configuration that has one route per behaviour under test."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from oauth2_introspection.devtools.echo import EchoServer
from oauth2_introspection.devtools.idp import IdpServer

from .harness import CLIENT_AUTH, Mitmdump, free_port, plugin


@pytest.fixture(scope="session")
def echo() -> Iterator[EchoServer]:
    server = EchoServer().start()
    yield server
    server.shutdown()


@pytest.fixture(scope="session")
def idp() -> Iterator[IdpServer]:
    server = IdpServer(client_auth=CLIENT_AUTH).start()
    yield server
    server.shutdown()


@pytest.fixture
def make_token(idp: IdpServer) -> Callable[..., str]:
    """Register a fresh token with the IdP: make_token(username="bob", ...)."""

    def make(active: bool = True, **claims: Any) -> str:
        token = "tok-" + uuid.uuid4().hex
        idp.add_tokens({token: {"active": active, **claims}})
        return token

    return make


def main_config(idp_url: str, echo_port: int) -> dict[str, Any]:
    closed = f"http://127.0.0.1:{free_port()}/introspect"
    return {
        "_format_version": "3.0",
        "services": [
            {
                "name": "echo",
                "routes": [
                    {"name": "basic", "paths": ["/basic"], "strip_path": False,
                     "plugins": [plugin(idp_url, custom_claims_forward=[
                         "email_verified", "groups", "profile", "account_id", "weird"])]},
                    {"name": "hide", "paths": ["/hide"], "strip_path": False,
                     "plugins": [plugin(idp_url, hide_credentials=True)]},
                    {"name": "anon", "paths": ["/anon"], "strip_path": False,
                     "plugins": [plugin(idp_url, anonymous="anonymous-user")]},
                    {"name": "anon-by-id", "paths": ["/anon-id"], "strip_path": False,
                     "plugins": [plugin(idp_url,
                                        anonymous="5d3a2c1e-0000-4000-8000-00000000a001")]},
                    {"name": "anon-missing", "paths": ["/anon-missing"], "strip_path": False,
                     "plugins": [plugin(idp_url, anonymous="ghost")]},
                    {"name": "preflight", "paths": ["/preflight"], "strip_path": False,
                     "plugins": [plugin(idp_url, run_on_preflight=False)]},
                    {"name": "client-id", "paths": ["/client-id"], "strip_path": False,
                     "plugins": [plugin(idp_url, consumer_by="client_id")]},
                    {"name": "introspect-request", "paths": ["/ir"], "strip_path": False,
                     "plugins": [plugin(idp_url, introspect_request=True,
                                        token_type_hint="access_token",
                                        custom_introspection_headers={"X_Tenant": "acme"})]},
                    {"name": "timeout", "paths": ["/timeout"], "strip_path": False,
                     "plugins": [plugin(idp_url, timeout=300)]},
                    {"name": "down", "paths": ["/down"], "strip_path": False,
                     "plugins": [plugin(closed)]},
                    {"name": "ttl-short", "paths": ["/ttl1"], "strip_path": False,
                     "plugins": [plugin(idp_url, ttl=1)]},
                    {"name": "ttl-zero", "paths": ["/ttl0"], "strip_path": False,
                     "plugins": [plugin(idp_url, ttl=0)]},
                    {"name": "hosted", "hosts": ["api.example.test"], "paths": ["/"],
                     "strip_path": False, "plugins": [plugin(idp_url)]},
                    {"name": "open", "paths": ["/open"], "strip_path": False},
                ],
            },
            {
                "name": "rewritten",
                "url": f"http://127.0.0.1:{echo_port}/base",
                "routes": [{"name": "strip", "paths": ["/svc"]}],
                "plugins": [plugin(idp_url)],
            },
        ],
        "consumers": [
            {"username": "alice", "custom_id": "alice-0001"},
            {"username": "anonymous-user", "id": "5d3a2c1e-0000-4000-8000-00000000a001"},
            {"custom_id": "app-42"},
        ],
    }


@pytest.fixture(scope="session")
def proxy(echo: EchoServer, idp: IdpServer) -> Iterator[Mitmdump]:
    m = Mitmdump(main_config(idp.url, echo.port), echo.port).start()
    yield m
    m.stop()


@pytest.fixture
def client(proxy: Mitmdump) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=proxy.url, trust_env=False, timeout=15) as c:
        yield c
