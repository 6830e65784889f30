"""The on-disk chunk store: chunks by SHA-256, verified on the way in and out, LRU-capped.

docs/architecture.md. The original kept its chunks in RAM with a 1.5 GiB cap and lost them on
restart (docs/measured-facts.md, "What the original BitWrk taught"); here they live in the user
cache dir, so a seller that rendered tile 1 yesterday still has the scene today.

Layout: ``<root>/<first 2 hex>/<64 hex>`` (256 fan-out dirs keep directories small), temp
files in ``<root>/tmp`` and a small SQLite index ``<root>/index.sqlite3`` that records each
chunk's size and last use. The files are the truth: ``has``/``missing`` look at the file
system, the index is only for the size cap and eviction order, and it is rebuilt from the
files when it is lost. Writes are temp file + ``os.replace`` (atomic on POSIX and Windows),
so a reader never sees half a chunk under its final name. There is no fsync: a chunk torn
by a power cut fails its hash on the next read and is deleted then, which a cache can
afford.

One process owns a store (the daemon); threads may share it. Pins are in memory.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

import platformdirs

from ..errors import ChunkMissing, IntegrityError, InvalidRequest
from .chunking import ChunkRef, FileEntry, chunk_file, is_sha256_hex

__all__ = ["DEFAULT_CAP_BYTES", "ChunkStore", "default_root"]

DEFAULT_CAP_BYTES = 8 * 1024**3
# Evict down to this share of the cap, so a full store does not evict on every put.
_LOW_WATER = 0.9
_STALE_TEMP_S = 3600.0
_SCHEMA = """
CREATE TABLE IF NOT EXISTS chunks (
    sha256 TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    used INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS chunks_by_use ON chunks(used);
"""
_SCHEMA_VERSION = 1


def default_root() -> Path:
    """``<user cache dir>/bitwrk/chunks``; platformdirs honours ``XDG_CACHE_HOME`` on Linux."""
    return Path(platformdirs.user_cache_dir("bitwrk", appauthor=False)) / "chunks"


def _now() -> int:
    return time.time_ns()


class ChunkStore:
    """Chunks on disk keyed by SHA-256, kept under ``cap_bytes`` by least-recent use."""

    def __init__(self, root: Path | None = None, cap_bytes: int = DEFAULT_CAP_BYTES) -> None:
        if cap_bytes <= 0:
            raise ValueError("cap_bytes must be positive")
        self.root = Path(root) if root is not None else default_root()
        self.cap_bytes = cap_bytes
        self._tmp = self.root / "tmp"
        self._tmp.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._pins: Counter[str] = Counter()
        self._fanout: set[str] = set()  # fan-out dirs known to exist (saves a mkdir a write)
        self._total = 0
        try:
            self._db = self._open_index()
        except sqlite3.DatabaseError:  # a damaged index: the files are the truth, rebuild
            for suffix in ("", "-wal", "-shm"):
                (self.root / f"index.sqlite3{suffix}").unlink(missing_ok=True)
            self._db = self._open_index()
        self._total = self._sum_sizes()
        self._clean_temp()
        self._evict()

    def _open_index(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.root / "index.sqlite3", isolation_level=None,
                             check_same_thread=False)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")  # an index we can rebuild: no fsync
            if db.execute("PRAGMA user_version").fetchone()[0] != _SCHEMA_VERSION:
                db.executescript(_SCHEMA)
                db.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")
                self._db = db
                self.rescan()
            db.execute("SELECT COUNT(*) FROM chunks").fetchone()
        except sqlite3.DatabaseError:
            db.close()
            raise
        return db

    # --- lifecycle -----------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> ChunkStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def size_bytes(self) -> int:
        """Bytes of chunks the index knows about."""
        return self._total

    # --- queries -------------------------------------------------------------------------

    def path_of(self, sha256: str) -> Path:
        """Where a chunk lives; refuses anything but 64 lowercase hex (no path tricks)."""
        if not is_sha256_hex(sha256):
            raise InvalidRequest("a chunk is named by 64 lowercase hex digits",
                                 sha256=str(sha256)[:80])
        return self.root / sha256[:2] / sha256

    def has(self, sha256: str) -> bool:
        return not self.missing([ChunkRef(sha256, 0)])

    def missing(self, refs: Iterable[ChunkRef]) -> list[ChunkRef]:
        """The refs (first occurrence of each hash, in order) whose chunk is not stored.

        Present ones count as used now: a seller asks right before it needs them.
        """
        seen: set[str] = set()
        lacking: list[ChunkRef] = []
        present: list[tuple[str, int]] = []
        for ref in refs:
            if ref.sha256 in seen:
                continue
            seen.add(ref.sha256)
            try:
                present.append((ref.sha256, self.path_of(ref.sha256).stat().st_size))
            except FileNotFoundError:
                lacking.append(ref)
        self._touch(present)
        return lacking

    # --- writing -------------------------------------------------------------------------

    def put(self, data: bytes | bytearray | memoryview, expected: str | None = None) -> str:
        """Store ``data``, return its SHA-256 hex; with ``expected``, a mismatch stores nothing."""
        actual = hashlib.sha256(data).hexdigest()
        if expected is not None and actual != expected:
            raise IntegrityError("chunk does not match its hash; not stored",
                                 expected=str(expected)[:80], actual=actual)
        self.store_verified(actual, data)
        return actual

    def store_verified(self, sha256: str, data: bytes | bytearray | memoryview) -> None:
        """Store bytes the caller has just hashed to ``sha256`` (saves hashing twice)."""
        path = self.path_of(sha256)
        try:
            if path.stat().st_size == len(data):
                self._touch([(sha256, len(data))])
                return
        except FileNotFoundError:
            pass
        self._write_atomic(path, data)
        self._touch([(sha256, len(data))])
        self._evict()

    def add_file(self, path: str | os.PathLike[str], name: str | None = None) -> FileEntry:
        """Chunk a local file into the store; its chunks stay pinned until this returns."""
        held: list[str] = []

        def keep(ref: ChunkRef, view: memoryview) -> None:
            self._hold([ref.sha256])
            held.append(ref.sha256)
            self.store_verified(ref.sha256, view)

        try:
            return chunk_file(path, name=name, on_chunk=keep)
        finally:
            self._release(held)

    # --- reading -------------------------------------------------------------------------

    def get(self, sha256: str) -> bytes:
        """The chunk's bytes, verified; a corrupt file is deleted and reported."""
        path = self.path_of(sha256)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            self._forget([sha256])
            raise ChunkMissing("chunk not in the store", missing=[sha256]) from None
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha256:
            path.unlink(missing_ok=True)
            self._forget([sha256])
            raise IntegrityError("stored chunk was corrupt and has been deleted",
                                 expected=sha256, actual=actual, path=str(path))
        self._touch([(sha256, len(data))])
        return data

    def assemble(self, entry: FileEntry, dest: Path) -> None:
        """Write ``entry``'s file to ``dest`` from its chunks; whole-file hash checked; atomic."""
        with self.pin(entry.chunks):
            lacking = self.missing(entry.chunks)
            if lacking:
                raise ChunkMissing(f"{len(lacking)} chunk(s) of {entry.name!r} are not stored",
                                   missing=[r.sha256 for r in lacking], file=entry.name)
            dest.parent.mkdir(parents=True, exist_ok=True)
            part = dest.parent / f".{dest.name}.{secrets.token_hex(6)}.part"
            try:
                self._write_file(entry, part)
                os.replace(part, dest)
            finally:
                part.unlink(missing_ok=True)

    def _write_file(self, entry: FileEntry, part: Path) -> None:
        whole = hashlib.sha256()
        size = 0
        with part.open("wb") as out:
            for ref in entry.chunks:
                data = self.get(ref.sha256)
                whole.update(data)
                size += len(data)
                out.write(data)
        if size != entry.size or whole.hexdigest() != entry.sha256:
            raise IntegrityError(f"assembled {entry.name!r} does not match its manifest entry",
                                 expected=entry.sha256, actual=whole.hexdigest(),
                                 file=entry.name, size=size)

    # --- pinning and eviction ------------------------------------------------------------

    @contextlib.contextmanager
    def pin(self, refs: Iterable[ChunkRef]) -> Iterator[None]:
        """Keep these chunks from eviction while the block runs (a job in progress).

        Pinned chunks may hold the store over its cap for a while; eviction catches up
        when they are released.
        """
        shas = [ref.sha256 for ref in refs]
        self._hold(shas)
        try:
            yield
        finally:
            self._release(shas)

    def _hold(self, shas: Iterable[str]) -> None:
        with self._lock:
            self._pins.update(shas)

    def _release(self, shas: Iterable[str]) -> None:
        with self._lock:
            self._pins.subtract(shas)
            self._pins += Counter()  # drops counts that reached zero
        self._evict()

    def _evict(self) -> None:
        with self._lock:
            if self._total <= self.cap_bytes:
                return
            goal = int(self.cap_bytes * _LOW_WATER)
            rows = self._db.execute("SELECT sha256, size FROM chunks ORDER BY used").fetchall()
            victims: list[str] = []
            left = self._total
            for sha, size in rows:
                if left <= goal:
                    break
                if self._pins[sha]:
                    continue
                try:
                    (self.root / sha[:2] / sha).unlink(missing_ok=True)
                except OSError:  # e.g. open by a reader on Windows: try again next time
                    continue
                victims.append(sha)
                left -= size
            self._forget(victims)  # brings _total down by what was removed

    # --- index and files -----------------------------------------------------------------

    def _touch(self, present: list[tuple[str, int]]) -> None:
        """Record use of chunks that are on disk; adds rows the index lacked.

        A hash fixes its size, so an existing row only needs its time updated.
        """
        if not present:
            return
        now = _now()
        with self._lock:
            self._db.execute("BEGIN")
            for sha, size in present:
                cursor = self._db.execute("UPDATE chunks SET used = ? WHERE sha256 = ?",
                                          (now, sha))
                if cursor.rowcount == 0:
                    self._db.execute("INSERT INTO chunks VALUES (?, ?, ?)", (sha, size, now))
                    self._total += size
            self._db.execute("COMMIT")

    def _forget(self, shas: list[str]) -> None:
        if not shas:
            return
        with self._lock:
            known = self._sizes(shas)
            self._db.execute("BEGIN")
            self._db.executemany("DELETE FROM chunks WHERE sha256 = ?", [(s,) for s in known])
            self._db.execute("COMMIT")
            self._total -= sum(known.values())

    def _sizes(self, shas: list[str]) -> dict[str, int]:
        found: dict[str, int] = {}
        for start in range(0, len(shas), 500):  # stay under SQLite's parameter limit
            batch = shas[start:start + 500]
            marks = ",".join("?" * len(batch))
            found.update(self._db.execute(
                f"SELECT sha256, size FROM chunks WHERE sha256 IN ({marks})", batch))
        return found

    def _sum_sizes(self) -> int:
        with self._lock:
            total: int = self._db.execute("SELECT COALESCE(SUM(size), 0) FROM chunks").fetchone()[0]
            return total

    def rescan(self) -> None:
        """Rebuild the index from the chunk files (a lost or new index); mtime as last use."""
        rows: list[tuple[str, int, int]] = []
        for sub in self.root.iterdir():
            if len(sub.name) != 2 or not sub.is_dir():
                continue
            for path in sub.iterdir():
                if is_sha256_hex(path.name) and path.name.startswith(sub.name):
                    st = path.stat()
                    rows.append((path.name, st.st_size, st.st_mtime_ns))
        with self._lock:
            self._db.execute("BEGIN")
            self._db.execute("DELETE FROM chunks")
            self._db.executemany("INSERT INTO chunks VALUES (?, ?, ?)", rows)
            self._db.execute("COMMIT")
            self._total = sum(size for _, size, _ in rows)

    def _write_atomic(self, path: Path, data: bytes | bytearray | memoryview) -> None:
        tmp = self._tmp / secrets.token_hex(8)
        try:
            tmp.write_bytes(data)
            if path.parent.name not in self._fanout:
                path.parent.mkdir(exist_ok=True)
                self._fanout.add(path.parent.name)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    def _clean_temp(self) -> None:
        """Drop temp files a crash left behind (old ones only: a writer may be mid-way)."""
        cutoff = time.time() - _STALE_TEMP_S
        for path in self._tmp.iterdir():
            with contextlib.suppress(FileNotFoundError):
                if path.stat().st_mtime < cutoff:
                    path.unlink()
