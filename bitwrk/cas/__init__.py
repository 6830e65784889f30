"""Moving work: content-defined chunks, the on-disk chunk store, job manifests, chunk sync
and sealed results (docs/architecture.md). No bpy, no service: plain bytes, paths and dataclasses.
"""

from __future__ import annotations

from .chunking import ChunkRef, FileEntry, chunk_bytes, chunk_file
from .manifest import JobManifest
from .sealing import ciphertext_hash, seal, unseal
from .store import ChunkStore, default_root
from .transfer import (
    ChunkReceiver,
    SyncStats,
    decode_wanted,
    encode_wanted,
    frame_chunks,
    stream_chunks,
    sync_stats,
)

__all__ = [
    "ChunkReceiver",
    "ChunkRef",
    "ChunkStore",
    "FileEntry",
    "JobManifest",
    "SyncStats",
    "chunk_bytes",
    "chunk_file",
    "ciphertext_hash",
    "decode_wanted",
    "default_root",
    "encode_wanted",
    "frame_chunks",
    "seal",
    "stream_chunks",
    "sync_stats",
    "unseal",
]
