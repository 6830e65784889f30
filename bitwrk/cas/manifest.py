"""The job manifest: what a job is (spec) and every byte it needs (files by chunks).

docs/architecture.md: a canonical JSON document; ``workhash`` = SHA-256 of its bytes. Canonical
means ``json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=True)`` — in the
spirit of RFC 8785 (JCS) for the JSON we produce — and :meth:`JobManifest.from_json`
refuses any other spelling, so the workhash a seller computes is the SHA-256 of exactly
the bytes it received and two texts can never name one job.

Shape (keys sorted in the real text)::

    {"version": 1, "spec": {...},
     "files": [{"name": "scene.blend", "size": 123, "sha256": "<hex>",
                "chunks": [["<hex>", 123], ...]}, ...]}

Chunks are ``[hash, size]`` pairs rather than objects: ~76 bytes each instead of ~90, and
the chunk lists are nearly all of a manifest (see chunking.py for why that stays ≈ 0.3 %
of the scene). A seller reads manifests from strangers, so everything is bounded and
every name is a safe relative POSIX path before anything touches a disk.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ManifestError, TooLarge
from .chunking import ChunkRef, FileEntry, is_sha256_hex
from .paths import check_names, safe_join
from .store import ChunkStore

__all__ = [
    "MANIFEST_VERSION",
    "MAX_CHUNKS",
    "MAX_CHUNK_SIZE",
    "MAX_FILES",
    "MAX_MANIFEST_BYTES",
    "JobManifest",
    "canonical_json",
]

MANIFEST_VERSION = 1
# 200,000 chunks of ~20 KiB is ~4 GB of scene; at ~76 bytes a chunk that is ~15 MB of text.
MAX_CHUNKS = 200_000
MAX_MANIFEST_BYTES = 16 * 1024 * 1024
MAX_FILES = 10_000
# What a receiver accepts per chunk: generous over chunking.MAX_SIZE (128 KiB) so a
# future chunker setting needs no protocol change, small enough to buffer safely.
MAX_CHUNK_SIZE = 4 * 1024 * 1024
_TOP_KEYS = frozenset({"version", "spec", "files"})
_FILE_KEYS = frozenset({"name", "size", "sha256", "chunks"})


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no whitespace, ASCII only, no NaN/Infinity."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False).encode("ascii")


@dataclass(frozen=True)
class JobManifest:
    """A job spec (render/ owns its fields) plus the files it needs, in a fixed order."""

    spec: dict[str, Any]
    files: tuple[FileEntry, ...]

    # --- building ------------------------------------------------------------------------

    @classmethod
    def from_files(cls, spec: Mapping[str, Any], files: Mapping[str, Path],
                   store: ChunkStore) -> JobManifest:
        """Chunk ``{name in job: local path}`` into ``store`` and describe them.

        Pin ``manifest.chunks()`` in the store for as long as the job may be sent.
        """
        check_names(list(files))
        entries = tuple(store.add_file(path, name=name) for name, path in files.items())
        manifest = cls(dict(spec), entries)
        manifest.to_json()  # refuse at once what a seller would refuse
        return manifest

    # --- the canonical text --------------------------------------------------------------

    def to_json(self) -> bytes:
        """The canonical text; refuses what :meth:`from_json` would refuse for size."""
        _check_counts(len(self.files), sum(len(entry.chunks) for entry in self.files))
        try:
            raw = canonical_json({
                "version": MANIFEST_VERSION,
                "spec": self.spec,
                "files": [_file_json(entry) for entry in self.files],
            })
        except (TypeError, ValueError) as exc:  # a set, bytes, NaN... in the spec
            raise ManifestError(f"job spec is not plain finite JSON: {exc}") from None
        if len(raw) > MAX_MANIFEST_BYTES:
            raise TooLarge("job manifest over the size limit", size=len(raw),
                           limit=MAX_MANIFEST_BYTES)
        return raw

    @property
    def workhash(self) -> str:
        """SHA-256 hex of the canonical manifest: the job's name on the exchange."""
        return hashlib.sha256(self.to_json()).hexdigest()

    @classmethod
    def from_json(cls, raw: bytes) -> JobManifest:
        """Parse and validate a manifest from a peer; any flaw raises ManifestError/TooLarge."""
        if len(raw) > MAX_MANIFEST_BYTES:
            raise TooLarge("job manifest over the size limit", size=len(raw),
                           limit=MAX_MANIFEST_BYTES)
        doc = _parse(raw)
        manifest = cls(doc["spec"], _parse_files(doc["files"]))
        if manifest.to_json() != raw:
            raise ManifestError("job manifest is not in canonical form "
                                "(sorted keys, no whitespace, ASCII)")
        return manifest

    # --- what it needs -------------------------------------------------------------------

    @property
    def total_size(self) -> int:
        return sum(entry.size for entry in self.files)

    def chunks(self) -> list[ChunkRef]:
        """Every distinct chunk of every file, first occurrence first."""
        seen: dict[str, ChunkRef] = {}
        for entry in self.files:
            for ref in entry.chunks:
                seen.setdefault(ref.sha256, ref)
        return list(seen.values())

    def needed_chunks(self, store: ChunkStore) -> list[ChunkRef]:
        """The distinct chunks ``store`` lacks: what a seller asks the buyer for."""
        return store.missing(self.chunks())

    def assemble(self, store: ChunkStore, dest_dir: Path) -> list[Path]:
        """Write every file under ``dest_dir`` (hashes verified); the paths written."""
        written = []
        for entry in self.files:
            target = safe_join(dest_dir, entry.name)
            store.assemble(entry, target)
            written.append(target)
        return written


def _file_json(entry: FileEntry) -> dict[str, Any]:
    return {"name": entry.name, "size": entry.size, "sha256": entry.sha256,
            "chunks": [[ref.sha256, ref.size] for ref in entry.chunks]}


# --- validation of untrusted input ---------------------------------------------------------


def _parse(raw: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(raw.decode("ascii"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ManifestError(f"job manifest is not ASCII JSON: {exc}") from None
    if not isinstance(doc, dict) or set(doc) != _TOP_KEYS:
        raise ManifestError("job manifest must be an object with exactly "
                            "'version', 'spec' and 'files'")
    if doc["version"] != MANIFEST_VERSION or isinstance(doc["version"], bool):
        raise ManifestError("unsupported job manifest version", version=repr(doc["version"])[:20],
                            supported=MANIFEST_VERSION)
    if not isinstance(doc["spec"], dict):
        raise ManifestError("'spec' must be an object")
    if not isinstance(doc["files"], list):
        raise ManifestError("'files' must be a list")
    return doc


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _check_counts(files: int, chunks: int) -> None:
    if files > MAX_FILES:
        raise ManifestError("too many files in the job", count=files, limit=MAX_FILES)
    if chunks > MAX_CHUNKS:
        raise ManifestError("too many chunks in the job", count=chunks, limit=MAX_CHUNKS)


def _parse_files(items: list[Any]) -> tuple[FileEntry, ...]:
    _check_counts(len(items), 0)
    entries: list[FileEntry] = []
    budget = MAX_CHUNKS
    for index, item in enumerate(items):
        entry = _parse_file(index, item, budget)
        budget -= len(entry.chunks)
        entries.append(entry)
    check_names([entry.name for entry in entries])
    return tuple(entries)


def _parse_file(index: int, item: Any, chunk_budget: int) -> FileEntry:
    if not isinstance(item, dict) or set(item) != _FILE_KEYS:
        raise ManifestError("each file must be an object with exactly "
                            "'name', 'size', 'sha256' and 'chunks'", file=index)
    name, size, sha, chunks = item["name"], item["size"], item["sha256"], item["chunks"]
    if not isinstance(name, str):
        raise ManifestError("file name must be a string", file=index)
    if not is_sha256_hex(sha):
        raise ManifestError("file sha256 must be 64 lowercase hex digits", file=name)
    if not isinstance(chunks, list):
        raise ManifestError("'chunks' must be a list", file=name)
    if len(chunks) > chunk_budget:
        raise ManifestError("too many chunks in the job", file=name, limit=MAX_CHUNKS)
    refs = tuple(_parse_chunk(name, pair) for pair in chunks)
    if not _is_count(size) or size != sum(ref.size for ref in refs):
        raise ManifestError("file size must equal the sum of its chunk sizes", file=name,
                            size=repr(size)[:30], chunk_sum=sum(ref.size for ref in refs))
    return FileEntry(name, size, sha, refs)


def _parse_chunk(name: str, pair: Any) -> ChunkRef:
    if (not isinstance(pair, list) or len(pair) != 2 or not is_sha256_hex(pair[0])
            or not _is_count(pair[1]) or not 1 <= pair[1] <= MAX_CHUNK_SIZE):
        raise ManifestError(f"each chunk is [sha256 hex, size 1..{MAX_CHUNK_SIZE}]",
                            file=name, chunk=repr(pair)[:100])
    return ChunkRef(pair[0], pair[1])


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0

