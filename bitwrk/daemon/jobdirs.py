"""Job folders a seller renders from, kept between units of the same files.

Every tile of a scene has the same files (only the job spec differs). Assembling them into
one folder per distinct file set — named by a hash of the file list — means the next tile
finds the same .blend at the same path, so the warm worker that already holds the scene
renders it without re-importing anything (the pool recognises a loaded file by path, size
and mtime). Folders are read-only, shared by concurrent units, and the least recently used
idle ones are removed beyond ``keep``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import stat
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from ..cas import ChunkStore, JobManifest

READY = ".complete"


def files_key(manifest: JobManifest) -> str:
    """Names and hashes of the job's files: equal for every tile of one scene."""
    listing = sorted((entry.name, entry.sha256) for entry in manifest.files)
    return hashlib.sha256(json.dumps(listing).encode()).hexdigest()[:32]


class JobDirs:
    def __init__(self, root: Path, keep: int = 4) -> None:
        self.root = root
        self.keep = keep
        self._lock = threading.Lock()
        self._users: dict[str, int] = {}
        self._used: dict[str, float] = {}
        root.mkdir(parents=True, exist_ok=True)

    @contextlib.contextmanager
    def use(self, manifest: JobManifest, store: ChunkStore) -> Iterator[Path]:
        """The assembled, verified folder of ``manifest``'s files, held while in use."""
        key = files_key(manifest)
        with self._lock:
            self._users[key] = self._users.get(key, 0) + 1
        try:
            yield self._ensure(key, manifest, store)
        finally:
            with self._lock:
                self._users[key] -= 1
                self._used[key] = time.monotonic()
            self._evict()

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
