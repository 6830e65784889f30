"""Wire formats for moving a job: the wanted list and the chunk stream.

docs/architecture.md: the buyer sends the manifest, the seller answers with the chunks it lacks
(the *wanted list*), the buyer sends only those (the *chunk stream*), the seller checks
each against the hash it asked for. Compared with the original BitWrk
(a permuted bitstream and a concurrent gzip'd multipart upload), both formats are
plain, versioned and self-delimiting, so a cut-off stream is always detected:

* wanted list: ``b"BWW\\x01"`` then the raw 32-byte SHA-256 of each wanted chunk, in the
  order the seller wants them (32 bytes a chunk, half of hex; a tile-2 answer is 4 bytes);
* chunk stream: ``b"BWC\\x01"``, then for each wanted chunk, in wanted order, a 4-byte
  big-endian length and the bytes, then a zero length as the end mark.

A receiver accepts any split of the stream into pieces (as HTTP delivers them), holds at
most one chunk in memory, refuses a length other than the wanted chunk's before reading
its bytes, and stores a chunk only after its hash matched. Chunks verified before a later
failure stay in the store — they are correct by hash and let a retry resume — while the
failure is raised and nothing unverified is kept.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import NoReturn

from ..errors import IntegrityError, TransferError
from .chunking import ChunkRef
from .manifest import MAX_CHUNK_SIZE, JobManifest
from .store import ChunkStore

__all__ = [
    "STREAM_MAGIC",
    "WANTED_MAGIC",
    "ChunkReceiver",
    "SyncStats",
    "decode_wanted",
    "encode_wanted",
    "frame_chunks",
    "stream_chunks",
    "sync_stats",
]

WANTED_MAGIC = b"BWW\x01"
STREAM_MAGIC = b"BWC\x01"
_LENGTH = struct.Struct(">I")
_DIGEST = 32
_END = _LENGTH.pack(0)


# --- the wanted list -----------------------------------------------------------------------


def encode_wanted(wanted: Iterable[ChunkRef]) -> bytes:
    """The seller's answer: which chunks to send, in order."""
    return WANTED_MAGIC + b"".join(bytes.fromhex(ref.sha256) for ref in wanted)


def decode_wanted(data: bytes, offered: Iterable[ChunkRef]) -> list[ChunkRef]:
    """Parse a wanted list; every hash must be one the buyer offered, at most once.

    ``offered`` is the manifest's chunks: a seller must not fetch anything else from the
    buyer's store (it may hold chunks of other jobs).
    """
    if not data.startswith(WANTED_MAGIC):
        raise TransferError("not a BitWrk wanted list (bad magic or version)")
    body = memoryview(data)[len(WANTED_MAGIC):]
    if len(body) % _DIGEST:
        raise TransferError("wanted list length is not a whole number of hashes",
                            size=len(data))
    by_hash = {ref.sha256: ref for ref in offered}
    wanted: list[ChunkRef] = []
    seen: set[str] = set()
    for start in range(0, len(body), _DIGEST):
        sha = body[start:start + _DIGEST].hex()
        if sha not in by_hash:
            raise TransferError("wanted list asks for a chunk that is not in the job",
                                sha256=sha)
        if sha in seen:
            raise TransferError("wanted list names a chunk twice", sha256=sha)
        seen.add(sha)
        wanted.append(by_hash[sha])
    return wanted


# --- the chunk stream ----------------------------------------------------------------------


def frame_chunks(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """The chunk stream for these chunk bodies, as pieces to write in order."""
    yield STREAM_MAGIC
    for data in chunks:
        if not 0 < len(data) <= MAX_CHUNK_SIZE:
            raise ValueError(f"a chunk is 1..{MAX_CHUNK_SIZE} bytes, not {len(data)}")
        yield _LENGTH.pack(len(data))
        yield data
    yield _END


def stream_chunks(store: ChunkStore, wanted: Iterable[ChunkRef]) -> Iterator[bytes]:
    """The buyer's side: frame the wanted chunks straight from its store (verified reads)."""
    return frame_chunks(store.get(ref.sha256) for ref in wanted)


class ChunkReceiver:
    """The seller's side: feed it the stream's pieces, then :meth:`finish`.

    Hold ``store.pin(manifest.chunks())`` for the job: the receiver stores chunks, it does
    not keep them from eviction.
    """

    def __init__(self, store: ChunkStore, wanted: Iterable[ChunkRef]) -> None:
        self._store = store
        self._wanted = list(wanted)
        self._buffer = bytearray()
        self._started = False
        self._ended = False
        self._failed: str | None = None
        self.chunks_stored = 0
        self.chunk_bytes = 0  # chunk payload stored
        self.wire_bytes = 0  # everything fed, framing included

    @property
    def complete(self) -> bool:
        return self._ended and self._failed is None

    def feed(self, piece: bytes | bytearray | memoryview) -> None:
        """Take the next piece of the stream; raises at the first flaw."""
        if self._failed is not None:
            raise TransferError(f"chunk stream already failed: {self._failed}")
        self.wire_bytes += len(piece)
        if self._ended:
            if len(piece):
                self._fail(TransferError("data after the end of the chunk stream"))
            return
        self._buffer += piece
        try:
            self._drain()
        except (TransferError, IntegrityError) as exc:
            self._fail(exc)

    def finish(self) -> None:
        """Raise unless the stream ended properly with every wanted chunk verified."""
        if self._failed is not None:
            raise TransferError(f"chunk stream failed: {self._failed}")
        if not self._ended:
            raise TransferError(
                "chunk stream was cut off", received=self.chunks_stored,
                wanted=len(self._wanted), buffered=len(self._buffer),
                missing=[ref.sha256 for ref in self._wanted[self.chunks_stored:]][:100])

    def _fail(self, exc: TransferError | IntegrityError) -> NoReturn:
        self._failed = exc.message
        self._buffer.clear()
        raise exc

    def _drain(self) -> None:
        if not self._started:
            if len(self._buffer) < len(STREAM_MAGIC):
                return
            if self._buffer[:len(STREAM_MAGIC)] != STREAM_MAGIC:
                raise TransferError("not a BitWrk chunk stream (bad magic or version)")
            del self._buffer[:len(STREAM_MAGIC)]
            self._started = True
        while not self._ended and len(self._buffer) >= _LENGTH.size:
            (size,) = _LENGTH.unpack_from(self._buffer)
            if size == 0:
                self._end()
                return
            self._check_length(size)
            if len(self._buffer) < _LENGTH.size + size:
                return
            data = bytes(self._buffer[_LENGTH.size:_LENGTH.size + size])
            del self._buffer[:_LENGTH.size + size]
            self._accept(data)

    def _check_length(self, size: int) -> None:
        if self.chunks_stored >= len(self._wanted):
            raise TransferError("chunk stream carries more chunks than were asked for",
                                wanted=len(self._wanted))
        ref = self._wanted[self.chunks_stored]
        if size != ref.size:
            raise TransferError("chunk length differs from the chunk asked for",
                                index=self.chunks_stored, sha256=ref.sha256,
                                expected_size=ref.size, size=size)

    def _accept(self, data: bytes) -> None:
        ref = self._wanted[self.chunks_stored]
        actual = hashlib.sha256(data).hexdigest()
        if actual != ref.sha256:
            raise IntegrityError("chunk does not match the hash asked for; not stored",
                                 index=self.chunks_stored, expected=ref.sha256, actual=actual)
        self._store.store_verified(actual, data)
        self.chunks_stored += 1
        self.chunk_bytes += len(data)

    def _end(self) -> None:
        del self._buffer[:_LENGTH.size]
        if self._buffer:
            raise TransferError("data after the end of the chunk stream")
        if self.chunks_stored < len(self._wanted):
            lacking = self._wanted[self.chunks_stored:]
            raise TransferError("chunk stream ended before every wanted chunk",
                                received=self.chunks_stored, wanted=len(self._wanted),
                                missing=[ref.sha256 for ref in lacking][:100])
        self._ended = True


# --- accounting ----------------------------------------------------------------------------


@dataclass
class SyncStats:
    """Bytes one job transfer moves (seller's request + answer + stream) and what it saved."""

    manifest_bytes: int = 0
    wanted_bytes: int = 0
    chunk_bytes_sent: int = 0  # chunk payload in the stream
    stream_bytes: int = 0  # the whole stream, framing included
    chunks_sent: int = 0
    chunks_reused: int = 0  # distinct chunks the seller already had
    bytes_reused: int = 0

    @property
    def bytes_moved(self) -> int:
        return self.manifest_bytes + self.wanted_bytes + self.stream_bytes

    def share_of(self, scene_bytes: int) -> float:
        """Bytes moved as a fraction of the job's files (1.0: as much as the files)."""
        return self.bytes_moved / scene_bytes if scene_bytes else 0.0


def sync_stats(manifest: JobManifest, wanted: list[ChunkRef]) -> SyncStats:
    """What sending ``manifest`` and then ``wanted`` moves, computed without moving it."""
    asked = {ref.sha256 for ref in wanted}
    reused = [ref for ref in manifest.chunks() if ref.sha256 not in asked]
    payload = sum(ref.size for ref in wanted)
    return SyncStats(
        manifest_bytes=len(manifest.to_json()),
        wanted_bytes=len(WANTED_MAGIC) + _DIGEST * len(wanted),
        chunk_bytes_sent=payload,
        stream_bytes=len(STREAM_MAGIC) + payload + _LENGTH.size * (len(wanted) + 1),
        chunks_sent=len(wanted),
        chunks_reused=len(reused),
        bytes_reused=sum(ref.size for ref in reused),
    )
