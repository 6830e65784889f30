"""Job folders a seller renders from, kept between units of the same files.

Every tile of a scene has the same files (only the job spec differs). Assembling them into
one folder per distinct file set — named by a hash of the file list — means the next tile
finds the same .blend at the same path, so the warm worker that already holds the scene
renders it without re-importing anything (the pool recognises a loaded file by path, size
and mtime). Folders are read-only, shared by concurrent units, and the least recently used
idle ones are removed beyond ``keep``; the folder of a unit that failed or was refused is
removed as soon as no unit uses it.

A manifest is hostile input: one 4 MiB chunk listed 200,000 times is a tiny upload that
expands to 800 GB. So a job's expanded size (every chunk reference at full size) is checked
against the seller's cap and the job's own limit *before* anything is written, and the
folder is assembled in a worker thread so the daemon's event loop keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import stat
import tempfile
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

from ..cas import ChunkStore, JobManifest
from ..errors import BitwrkError

READY = ".complete"
DEFAULT_MAX_BYTES = 8 * 1024**3  # the seller's cap on one job's files, expanded


class JobTooLarge(BitwrkError):
    """A job's files would expand beyond what this seller accepts; nothing was written."""

    code = "job_too_large"


def expanded_size(manifest: JobManifest) -> int:
    """Bytes the job's folder takes: repeated chunk references count every time."""
    return sum(max(entry.size, sum(ref.size for ref in entry.chunks))
               for entry in manifest.files)


def files_key(manifest: JobManifest) -> str:
    """Names and hashes of the job's files: equal for every tile of one scene."""
    listing = sorted((entry.name, entry.sha256) for entry in manifest.files)
    return hashlib.sha256(json.dumps(listing).encode()).hexdigest()[:32]


class JobDirs:
    """The seller's assembled job folders under ``root`` (see the module text).

    Owns the folders and their use counts: a folder is shared by concurrent units of the
    same files, kept warm for the next tile, evicted least recently used beyond ``keep``,
    and removed once a unit that used it failed. ``max_bytes`` caps one job's expanded size.
    """

    def __init__(self, root: Path, keep: int = 4, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.root = root
        self.keep = keep
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._users: dict[str, int] = {}
        self._used: dict[str, float] = {}
        self._failed: set[str] = set()
        root.mkdir(parents=True, exist_ok=True)

    def check(self, manifest: JobManifest, limit: int | None = None) -> None:
        """Raise :class:`JobTooLarge` when the job expands beyond the cap or ``limit``."""
        size = expanded_size(manifest)
        cap = min(self.max_bytes, limit) if limit is not None else self.max_bytes
        if size > cap:
            raise JobTooLarge(f"the job's files expand to {size} bytes, over this seller's "
                              f"limit of {cap}", size=size, limit=cap)

    @contextlib.asynccontextmanager
    async def use(self, manifest: JobManifest, store: ChunkStore,
                  limit: int | None = None) -> AsyncIterator[Path]:
        """The assembled, verified folder of ``manifest``'s files, held while in use.

        Assembly runs in a thread. If the block raises (the unit failed or was refused),
        the folder is removed once no other unit uses it.
        """
        self.check(manifest, limit)
        key = files_key(manifest)
        with self._lock:
            self._users[key] = self._users.get(key, 0) + 1
        try:
            yield await asyncio.to_thread(self._ensure, key, manifest, store)
        except BaseException:
            with self._lock:
                self._failed.add(key)
            raise
        finally:
            with self._lock:
                self._users[key] -= 1
                self._used[key] = time.monotonic()
            await asyncio.to_thread(self._evict)

    def _ensure(self, key: str, manifest: JobManifest, store: ChunkStore) -> Path:
        folder = self.root / key
        if (folder / READY).exists():
            return folder
        staging = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=self.root))
        try:
            manifest.assemble(store, staging)
            for path in staging.rglob("*"):
                if path.is_file():
                    path.chmod(stat.S_IRUSR | stat.S_IRGRP)
            (staging / READY).touch()
            try:
                os.rename(staging, folder)  # atomic; loses quietly to a concurrent twin
            except OSError:
                if not (folder / READY).exists():
                    raise
        finally:
            if staging.exists():
                _remove(staging)
        return folder

    def _evict(self) -> None:
        with self._lock:
            idle = sorted((t, k) for k, t in self._used.items() if not self._users.get(k))
            doomed = [k for _, k in idle[: max(0, len(idle) - self.keep)]]
            doomed += [k for _, k in idle if k in self._failed and k not in doomed]
            self._failed -= set(doomed)
            for key in doomed:
                self._used.pop(key, None)
                self._users.pop(key, None)
        for key in doomed:
            _remove(self.root / key)


def _remove(folder: Path) -> None:
    for path in folder.rglob("*"):  # read-only files block deletion on Windows
        with contextlib.suppress(OSError):
            path.chmod(stat.S_IRWXU)
    shutil.rmtree(folder, ignore_errors=True)
