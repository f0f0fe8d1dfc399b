"""The mitmproxy glue of issue 4 through taddons: the admin options (loopback
only without a token, constant-time token check), the state file restored at
start-up, and the config watcher (a valid change swaps, an invalid one keeps
the last good configuration and marks the following flows)."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mitmproxy import exceptions
from mitmproxy.addons.proxyserver import Proxyserver
from mitmproxy.test import taddons, tflow

from oauth2_introspection.addon import OAuth2Introspection
from oauth2_introspection.admin.addon import AdminAPIAddon, parse_admin_options
from oauth2_introspection.admin.server import (
    host_allowed,
    is_loopback,
    parse_listen,
    token_matches,
)
from oauth2_introspection.loader import load_text
from oauth2_introspection.persistence import StateFile
from oauth2_introspection.reload import ConfigWatcher

from .hooking import hooked

GOOD = '_format_version: "3.0"\nconsumers:\n  - username: alice\n'
GOOD2 = '_format_version: "3.0"\nconsumers:\n  - username: bob\n'
BAD = ('_format_version: "3.0"\nplugins:\n  - name: oauth2-introspection\n    config:\n'
       '      introspection_url: http://idp.test/i\n      authorization_value: x\n'
       '      ttl: -1\n')


@pytest.mark.parametrize(("value", "expected"), [
    ("127.0.0.1:8001", ("127.0.0.1", 8001)), ("[::1]:8001", ("::1", 8001)),
    ("localhost:0", ("localhost", 0)), (":8001", ("", 8001)),
])
def test_listen_addresses_are_parsed(value, expected):
    assert parse_listen(value) == expected


@pytest.mark.parametrize("value", ["8001", "127.0.0.1:http", "127.0.0.1:70000", "[::1]8001"])
def test_bad_listen_addresses_are_refused(value):
    with pytest.raises(ValueError):
        parse_listen(value)


def test_only_loopback_addresses_count_as_loopback():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not any(map(is_loopback, ["", "0.0.0.0", "::", "192.168.1.2", "example.com"]))


@pytest.mark.parametrize("listen", ["0.0.0.0:8001", ":8001", "10.0.0.1:8001", "[::]:8001"])
def test_non_loopback_admin_listener_without_token_is_refused(listen):
    with pytest.raises(exceptions.OptionsError, match="not loopback"):
        parse_admin_options(listen, "")
    assert parse_admin_options(listen, "a-long-enough-admin-token")[2]


def test_short_admin_token_is_refused():
    with pytest.raises(exceptions.OptionsError, match="16 characters"):
        parse_admin_options("127.0.0.1:8001", "short")


@pytest.mark.parametrize(("host_name", "bind_host", "allowed"), [
    ("[::1]", "::1", True),  # tornado's host_name for `Host: [::1]:8001` and `Host: [::1]`
    ("[::1]", "127.0.0.1", True),
    ("127.0.0.1", "::1", True),
    ("localhost", "::1", True),
    ("[fe80::1]", "::1", False),
    ("[2001:db8::1]", "2001:db8::1", True),  # the listener's own address
    ("evil.example", "127.0.0.1", False),
    ("[evil.example]", "127.0.0.1", False),
])
def test_host_check_takes_ipv6_literals_in_brackets(host_name, bind_host, allowed):
    assert host_allowed(host_name, bind_host) is allowed


def test_admin_token_check_accepts_only_the_exact_token():
    assert token_matches("s3cret-token-value", "s3cret-token-value")
    assert not token_matches("s3cret-token-value", "s3cret-token-valuE")
    assert not token_matches("s3cret-token-value", None)


async def test_admin_options_refuse_a_non_loopback_address_through_mitmproxy():
    core = OAuth2Introspection()
    admin = AdminAPIAddon(core)
    with (
        taddons.context(Proxyserver(), core, admin) as tctx,
        pytest.raises(exceptions.OptionsError),
    ):
        tctx.configure(admin, introspection_admin="0.0.0.0:8001")


async def test_state_file_is_restored_at_startup_while_the_config_file_is_unchanged(tmp_path: Path):
    cfg = tmp_path / "kong.yaml"
    cfg.write_text(GOOD)
    StateFile(str(tmp_path / "kong.state.yaml"), str(cfg)).save(load_text(GOOD2))
    core = OAuth2Introspection()
    admin = AdminAPIAddon(core)
    with taddons.context(Proxyserver(), core, admin) as tctx:
        # one option update configures every addon of the context, as at start-up
        # (setting it a second time would be a reload: the file over the state)
        tctx.configure(core, introspection_config=str(cfg))
        assert core.state.config.consumers[0].username == "bob"
    # the user edits the file: the file wins
    cfg.write_text(GOOD.replace("alice", "carol"))
    core = OAuth2Introspection()
    admin = AdminAPIAddon(core)
    with taddons.context(Proxyserver(), core, admin) as tctx:
        tctx.configure(core, introspection_config=str(cfg))
        assert core.state.config.consumers[0].username == "carol"


@contextlib.contextmanager
def _administered(tmp_path: Path) -> Iterator[tuple[OAuth2Introspection, AdminAPIAddon, Any, Path]]:
    """The core addon and the Admin API addon, the core configured with a GOOD file."""
    cfg = tmp_path / "kong.yaml"
    cfg.write_text(GOOD)
    core = OAuth2Introspection()
    admin = AdminAPIAddon(core)
    with taddons.context(Proxyserver(), core, admin) as tctx:
        tctx.configure(core, introspection_config=str(cfg))
        yield core, admin, tctx, cfg


async def test_admin_commit_writes_the_state_file_before_applying(tmp_path: Path):
    with _administered(tmp_path) as (core, admin, _, _):
        admin.commit(load_text(GOOD2), "test")
        assert "username: bob" in (tmp_path / "kong.state.yaml").read_text()
        assert core.state.config.consumers[0].username == "bob"


def _touch_later(path: Path, text: str) -> None:
    path.write_text(text)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))


@contextlib.contextmanager
def _watching(tmp_path: Path) -> Iterator[tuple[OAuth2Introspection, ConfigWatcher, Path]]:
    """The core addon and the watcher, both configured with a GOOD file."""
    cfg = tmp_path / "kong.yaml"
    cfg.write_text(GOOD)
    core = OAuth2Introspection()
    watcher = ConfigWatcher(core, settle=0)
    with taddons.context(Proxyserver(), core, watcher) as tctx:
        tctx.configure(core, introspection_config=str(cfg))
        tctx.configure(watcher, introspection_config=str(cfg))
        yield core, watcher, cfg


async def test_valid_change_of_the_watched_file_replaces_the_configuration(tmp_path: Path):
    with _watching(tmp_path) as (core, watcher, cfg):
        assert watcher.check() is False  # unchanged
        _touch_later(cfg, GOOD2)
        assert watcher.check() is True
        assert core.state.config.consumers[0].username == "bob"
        assert watcher.warning is None


async def test_invalid_change_keeps_the_last_good_config_logs_the_line_and_marks_flows(
        tmp_path: Path, caplog):
    with _watching(tmp_path) as (core, watcher, cfg):
        policy = core.state.policy
        _touch_later(cfg, BAD)
        with caplog.at_level(logging.ERROR):
            assert watcher.check() is True
        assert core.state.policy is policy  # the last good one
        assert any(f"{cfg}:7: plugins[0].config.ttl" in r.getMessage() for r in caplog.records)
        flow = tflow.tflow()
        flow.comment = "earlier"
        await hooked(core.request(flow))  # the core's hook calls the watcher once it is done
        assert flow.comment.startswith("earlier\n")
        assert "config reload failed" in flow.comment
        assert "config.ttl" in flow.metadata["oauth2_introspection"]["config_warning"]
        # fixed: flows are clean again
        _touch_later(cfg, GOOD2)
        watcher.check()
        clean = tflow.tflow()
        await hooked(core.request(clean))
        assert "config reload failed" not in clean.comment
        assert "config_warning" not in clean.metadata.get("oauth2_introspection", {})


async def test_a_deleted_file_keeps_the_config_says_so_and_reloads_when_back(
        tmp_path: Path, caplog):
    with _watching(tmp_path) as (core, watcher, cfg):
        policy = core.state.policy
        cfg.unlink()
        with caplog.at_level(logging.ERROR):
            assert watcher.check() is False
            assert watcher.check() is False
        assert core.state.policy is policy
        assert sum("no longer exists" in r.getMessage() for r in caplog.records) == 1  # once
        flow = tflow.tflow()
        await hooked(core.request(flow))
        assert "no longer exists" in flow.metadata["oauth2_introspection"]["config_warning"]
        # back, even with the same content: reloaded, and flows are clean again
        cfg.write_text(GOOD)
        assert watcher.check() is True
        assert watcher.warning is None


async def test_watch_option_must_be_a_boolean():
    core = OAuth2Introspection()
    watcher = ConfigWatcher(core, settle=0)
    with (
        taddons.context(Proxyserver(), core, watcher) as tctx,
        pytest.raises(exceptions.OptionsError),
    ):
        tctx.configure(watcher, introspection_watch="maybe")


async def test_a_change_that_cannot_be_persisted_is_not_applied(tmp_path: Path):
    with _administered(tmp_path) as (core, admin, tctx, _):
        tctx.configure(admin, introspection_state=str(tmp_path / "missing-dir" / "s.yaml"))
        resp = admin.api.handle("POST", "/consumers", "", "application/json",
                                b'{"username": "bob"}')
        assert resp.status == 500
        assert [c.username for c in core.state.config.consumers] == ["alice"]


async def test_a_file_reload_over_admin_api_changes_discards_the_state_file(tmp_path: Path):
    cfg = tmp_path / "kong.yaml"
    state = tmp_path / "kong.state.yaml"
    cfg.write_text(GOOD)
    core = OAuth2Introspection()
    admin = AdminAPIAddon(core)
    watcher = ConfigWatcher(core, settle=0)
    with taddons.context(Proxyserver(), core, admin, watcher) as tctx:
        tctx.configure(core, introspection_config=str(cfg))
        resp = admin.api.handle("POST", "/consumers", "", "application/json",
                                b'{"username": "bob"}')
        assert resp.status == 201 and state.exists()
        _touch_later(cfg, GOOD.replace("alice", "carol"))
        assert watcher.check() is True  # the file replaces the Admin API state...
        assert not state.exists()  # ...on disk too
        assert "username: bob" in (tmp_path / "kong.state.yaml.discarded").read_text()
        _touch_later(cfg, GOOD)  # the file's old content again
        assert watcher.check() is True
    core = OAuth2Introspection()
    admin = AdminAPIAddon(core)
    with taddons.context(Proxyserver(), core, admin) as tctx:
        tctx.configure(core, introspection_config=str(cfg))
        assert [c.username for c in core.state.config.consumers] == ["alice"]  # no bob


async def test_a_state_file_the_edited_file_won_over_at_startup_is_set_aside(tmp_path: Path):
    cfg = tmp_path / "kong.yaml"
    cfg.write_text(GOOD)
    StateFile(str(tmp_path / "kong.state.yaml"), str(cfg)).save(load_text(GOOD2))
    cfg.write_text(GOOD.replace("alice", "carol"))
    for _ in range(2):  # edited, then restored: bob must not come back
        core = OAuth2Introspection()
        admin = AdminAPIAddon(core)
        with taddons.context(Proxyserver(), core, admin) as tctx:
            tctx.configure(core, introspection_config=str(cfg))
            assert core.state.config.consumers[0].username != "bob"
        cfg.write_text(GOOD)
    assert (tmp_path / "kong.state.yaml.discarded").exists()


async def test_setting_the_config_option_again_at_run_time_is_a_reload(tmp_path: Path):
    with _administered(tmp_path) as (core, admin, tctx, cfg):
        admin.api.handle("POST", "/consumers", "", "application/json", b'{"username": "bob"}')
        tctx.configure(core, introspection_config=str(cfg))  # `:set` again: the file wins
        assert [c.username for c in core.state.config.consumers] == ["alice"]
        assert not (tmp_path / "kong.state.yaml").exists()


async def test_a_file_still_being_written_is_read_once_it_has_settled(tmp_path: Path):
    # a prefix of a configuration is often a valid one with fewer plugins (or
    # none): a change is read only after it stayed put for `settle` seconds
    with _watching(tmp_path) as (core, watcher, cfg):
        watcher.settle = 0.3
        _touch_later(cfg, '_format_version: "3.0"\n')  # the first write of a slow save
        assert watcher.check() is False
        _touch_later(cfg, GOOD2)  # the rest comes before it settled
        assert watcher.check() is False
        assert core.state.config.consumers[0].username == "alice"
        time.sleep(0.35)
        assert watcher.check() is True
        assert core.state.config.consumers[0].username == "bob"


async def test_a_fifo_at_the_path_is_never_read(tmp_path: Path, caplog):
    with _watching(tmp_path) as (core, watcher, cfg):
        cfg.unlink()
        os.mkfifo(cfg)  # opening it would block the event loop until a writer comes
        with caplog.at_level(logging.ERROR):
            assert watcher.check() is False
            assert watcher.check() is False
        assert caplog.text.count("is no longer a regular file") == 1
        assert core.state.config.consumers[0].username == "alice"


async def test_a_refused_config_change_keeps_the_admin_api_changes(tmp_path: Path):
    # mitmproxy rolls a refused option back by setting the old value again:
    # that must not reload the old file over what the Admin API changed
    with _administered(tmp_path) as (core, admin, tctx, _):
        resp = admin.api.handle("POST", "/consumers", "", "application/json",
                                b'{"username": "bob"}')
        assert resp.status == 201
        with pytest.raises(exceptions.OptionsError):
            tctx.configure(core, introspection_config=str(tmp_path / "missing.yaml"))
        assert [c.username for c in core.state.config.consumers] == ["alice", "bob"]
        assert (tmp_path / "kong.state.yaml").exists()
        assert not list(tmp_path.glob("*.discarded"))
