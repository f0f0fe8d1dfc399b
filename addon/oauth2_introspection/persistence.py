"""The state file: Admin API changes, written so that a restart comes back with them.

Every change the Admin API accepts is written, whole, to a state file before
the API answers: a temporary file in the same directory, flushed and fsynced,
then renamed over the old one (`os.replace` is atomic on POSIX and Windows).
A crash at any point leaves either the old file or the new one, never a torn
one.

The state file records the SHA-256 of the configuration file it was built on
(`# base-sha256: ...`). At start-up it is used only when the configuration
file is unchanged since: if the user edited the file, the file wins (and a
warning says that the Admin API changes were set aside). Whenever the file
wins, at start-up or on a live reload, the state file is set aside
(`discard()`): otherwise restoring the file's old content would bring back
changes that were dropped.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .config import DeclarativeConfig
from .export import config_to_yaml

logger = logging.getLogger("oauth2_introspection.persistence")

_BASE_LINE = re.compile(r"^# base-sha256: ([0-9a-f]{64}|none)$", re.MULTILINE)


def default_state_path(config_path: str) -> str:
    """`dir/kong.yaml` -> `dir/kong.state.yaml`."""
    p = Path(config_path)
    return str(p.with_name(f"{p.stem}.state.yaml"))


def file_sha256(path: str | None) -> str:
    if not path:
        return "none"
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return "none"


def atomic_write(path: str | Path, text: str, mode: int = 0o600) -> None:
    """Write `text` to `path` so that a crash leaves the old file or the new one."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    # the rename itself must reach the disk
    with contextlib.suppress(OSError):
        dfd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


@dataclass
class StateFile:
    path: str
    #: the configuration file the state is built on (None: there is none)
    base: str | None

    def save(self, config: DeclarativeConfig) -> None:
        header = (
            "# oauth2-introspection state: the configuration as changed through the Admin API.\n"
            f"# Built on: {self.base or '(no configuration file)'}\n"
            f"# base-sha256: {file_sha256(self.base)}\n"
            "# Written atomically after every accepted change; used at start-up while the\n"
            "# file above is unchanged. Delete this file to start from that file again.\n"
        )
        atomic_write(self.path, header + config_to_yaml(config))

    def exists(self) -> bool:
        return Path(self.path).is_file()

    def recorded_base_hash(self) -> str | None:
        try:
            head = Path(self.path).read_text(encoding="utf-8")[:2000]
        except (OSError, UnicodeDecodeError):
            return None
        m = _BASE_LINE.search(head)
        return m.group(1) if m else None

    @property
    def discarded_path(self) -> str:
        return f"{self.path}.discarded"

    def discard(self) -> bool:
        """Set the state aside (renamed, never loaded again; kept so that it can
        be recovered by hand). True when there was one to set aside."""
        try:
            os.replace(self.path, self.discarded_path)
        except FileNotFoundError:
            return False
        return True

    def matches_base(self) -> bool:
        """Is the configuration file unchanged since this state was written?"""
        return self.recorded_base_hash() == file_sha256(self.base)
