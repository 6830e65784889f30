"""Content-defined chunking: split files where their content says, name pieces by SHA-256.

docs/architecture.md. Cut points come from FastCDC-2020 (Xia et al., "The Design of Fast
Content-Defined Chunking for Data Deduplication Based Storage Systems", IEEE TPDS 2020)
as implemented by ``pyfastcdc`` (Cython, wheels for every Blender platform with a pure
fallback). docs/measured-facts.md P3 measured it at 2.1–2.4 GB/s, faster
than SHA-256 itself, so hashing the chunks is the cost, not finding them.

Sizes (min/avg/max = 4/16/128 KiB) were picked by measurement on 100 MB of random data and
of a synthetic scene-like file (random blocks, repeated records, zero runs); pyfastcdc's
real mean is about avg + min:

=========== ======== ============= ============ =================== ================
setting     mean     manifest size 1 % overwrite 10 tiny insertions  200 x 16 B edits
=========== ======== ============= ============ =================== ================
2/8/64 K    10 KiB   0.64–0.75 %   1.08–1.13 %  0.12–0.15 %         2.4–3.5 %
4/16/128 K  20 KiB   0.31–0.37 %   1.11–1.20 %  0.21–0.31 %         4.9–6.9 %
8/32/256 K  40 KiB   0.16–0.19 %   1.47–1.65 %  0.58–0.68 %         9.2–13 %
16/64/256 K 80 KiB   0.08–0.09 %   2.44–2.78 %  1.03–1.57 %         19–22 %
=========== ======== ============= ============ =================== ================

(manifest = ~76 bytes of JSON per chunk, as a share of the scene; the edit columns are new
bytes a changed resend moves). 4/16/128 K has the lowest total for a 1 %-changed resend
(manifest + new chunks ≈ 1.5 %) while the manifest alone — all a tile-2 request moves —
stays near a third of 1 %. The max of 128 KiB bounds chunks in long zero runs, where the
gear hash never matches (docs/measured-facts.md P3: 2–4.7 % of .blend chunks hit the max).

These numbers are part of the wire contract only through dedup: a seller never re-chunks,
it verifies hashes. Changing them costs one cold transfer per scene, nothing breaks.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from pyfastcdc import FastCDC

__all__ = [
    "AVG_SIZE",
    "MAX_SIZE",
    "MIN_SIZE",
    "ChunkRef",
    "FileEntry",
    "chunk_bytes",
    "chunk_file",
    "is_sha256_hex",
    "iter_chunks",
]

MIN_SIZE = 4 * 1024
AVG_SIZE = 16 * 1024
MAX_SIZE = 128 * 1024

_HEX64 = re.compile(r"[0-9a-f]{64}")
_CDC = FastCDC(AVG_SIZE, min_size=MIN_SIZE, max_size=MAX_SIZE)


def is_sha256_hex(text: object) -> bool:
    """True for exactly 64 lowercase hex digits (the one spelling we write and accept)."""
    return isinstance(text, str) and _HEX64.fullmatch(text) is not None


@dataclass(frozen=True, slots=True)
class ChunkRef:
    """One chunk by content: its SHA-256 (lowercase hex) and length in bytes."""

    sha256: str
    size: int


@dataclass(frozen=True, slots=True)
class FileEntry:
    """One file of a job: its name in the job, size, whole-file SHA-256 and its chunks."""

    name: str
    size: int
    sha256: str
    chunks: tuple[ChunkRef, ...]


def iter_chunks(data: bytes | bytearray | memoryview) -> Iterator[tuple[ChunkRef, memoryview]]:
    """Yield each chunk of ``data`` with its reference; the views point into ``data``."""
    # FastCDC keeps no state between calls (its gear table is read-only), so one module
    # instance serves every caller; its own docs only warn about concurrent use of a
    # single cut_stream, which we do not use.
    for chunk in _CDC.cut_buf(data):
        view = chunk.data
        yield ChunkRef(hashlib.sha256(view).hexdigest(), chunk.length), view


def chunk_bytes(data: bytes | bytearray | memoryview) -> list[ChunkRef]:
    """The chunk references of ``data``, in order (empty data has no chunks)."""
    return [ref for ref, _ in iter_chunks(data)]


def chunk_file(
    path: str | os.PathLike[str],
    *,
    name: str | None = None,
    on_chunk: Callable[[ChunkRef, memoryview], None] | None = None,
) -> FileEntry:
    """Chunk a file without reading it into memory (pyfastcdc maps it), hashing as it goes.

    ``name`` is the file's name in the job (default: the file's base name). ``on_chunk``
    sees every chunk's bytes once, so a store can keep them without a second read.
    """
    path = Path(path)
    whole = hashlib.sha256()
    refs: list[ChunkRef] = []
    size = 0
    # cut_file maps the file (mmap); the views die with the loop, so the map is released.
    for chunk in _CDC.cut_file(str(path)):
        view = chunk.data
        whole.update(view)
        ref = ChunkRef(hashlib.sha256(view).hexdigest(), chunk.length)
        if on_chunk is not None:
            on_chunk(ref, view)
        refs.append(ref)
        size += chunk.length
        del chunk, view
    return FileEntry(name if name is not None else path.name, size, whole.hexdigest(),
                     tuple(refs))
