"""One daemon per identity: an OS file lock beside ``identity.wif``.

Two Blender instances (or a GUI and ``bitwrk.sell``) sharing a data dir would share the
key and the journal: the second would resume the first one's jobs and pay twice for
nothing. The lock is the OS's (``flock`` / ``msvcrt.locking``), so a crashed process
releases it by dying; the file holds the owner's pid only to name it in the error.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import IO

from ..errors import BitwrkError

LOCK_NAME = "daemon.lock"


class IdentityInUse(BitwrkError):
    """Another running BitWrk process holds this identity (its pid when known)."""

    code = "identity_in_use"


class IdentityLock:
    """Owns the lock file that makes one process at a time use an identity's data folder."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LOCK_NAME
        self._file: IO[str] | None = None

    @property
    def held(self) -> bool:
        return self._file is not None

    def acquire(self) -> None:
        """Take the lock or raise :class:`IdentityInUse` at once (never waits)."""
        if self._file is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        f = open(self.path, "a+", encoding="ascii")  # noqa: SIM115 - held until release()
        try:
            _lock(f)
        except OSError:
            f.seek(0)
            owner = f.read().strip() or "unknown"
            f.close()
            raise IdentityInUse(
                f"another BitWrk process (pid {owner}) is using this identity "
                f"({self.path.parent}); quit it first — one Blender or seller per identity",
                pid=owner, path=str(self.path)) from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        self._file = f

    def release(self) -> None:
        f, self._file = self._file, None
        if f is None:
            return
        try:
            f.seek(0)
            f.truncate()
            _unlock(f)
        finally:
            f.close()


def _lock(f: IO[str]) -> None:
    if sys.platform == "win32":
        import msvcrt

        f.seek(0)
        msvcrt.locking(f.fileno(), msvcrt.LK_NBLCK, 1)
    else:
        import fcntl

        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)


def _unlock(f: IO[str]) -> None:
    if sys.platform == "win32":
        import msvcrt

        f.seek(0)
        msvcrt.locking(f.fileno(), msvcrt.LK_UNLCK, 1)
    else:
        import fcntl

        fcntl.flock(f.fileno(), fcntl.LOCK_UN)
