"""The state file: atomic writes (a crash mid-write leaves the old file), and
use at start-up only while the configuration file is unchanged."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from oauth2_introspection.loader import load_file, load_text
from oauth2_introspection.persistence import StateFile, atomic_write, default_state_path

DOC = '_format_version: "3.0"\nconsumers:\n  - username: alice\n'


def test_state_file_sits_next_to_the_config_file():
    assert default_state_path(os.path.join("dir", "kong.yaml")) == os.path.join(
        "dir", "kong.state.yaml")


def test_atomic_write_replaces_the_file_and_leaves_no_temporary(tmp_path: Path):
    target = tmp_path / "s.yaml"
    target.write_text("old")
    atomic_write(target, "new")
    assert target.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["s.yaml"]
    assert target.stat().st_mode & 0o077 == 0  # secrets inside: owner only


def test_a_crash_before_the_rename_leaves_the_old_file_intact(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    target = tmp_path / "s.yaml"
    target.write_text("old")

    def crash(*_args):
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        atomic_write(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["s.yaml"]


def test_saved_state_loads_back_and_matches_its_unchanged_base(tmp_path: Path):
    base = tmp_path / "kong.yaml"
    base.write_text(DOC)
    sf = StateFile(str(tmp_path / "kong.state.yaml"), str(base))
    sf.save(load_text(DOC.replace("alice", "bob")))
    assert load_file(sf.path).consumers[0].username == "bob"
    assert sf.matches_base()
    base.write_text(DOC + "  - username: carol\n")
    assert not sf.matches_base()  # the user edited the file: the file wins


def test_discard_sets_the_state_aside_where_it_is_never_loaded(tmp_path: Path):
    base = tmp_path / "kong.yaml"
    base.write_text(DOC)
    sf = StateFile(str(tmp_path / "kong.state.yaml"), str(base))
    assert sf.discard() is False  # nothing to set aside
    sf.save(load_text(DOC.replace("alice", "bob")))
    assert sf.discard() is True
    assert not sf.exists()
    assert "bob" in Path(sf.discarded_path).read_text()
    assert Path(sf.discarded_path).stat().st_mode & 0o077 == 0  # still owner only
