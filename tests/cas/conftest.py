"""Helpers for the chunk-store tests: seeded data, stores in temp dirs, mutations."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from bitwrk.cas.store import ChunkStore


def data_of(size: int, seed: int = 1) -> bytes:
    """Deterministic incompressible bytes (the worst case for dedup)."""
    return random.Random(seed).randbytes(size)


def overwrite(data: bytes, share: float, places: int = 10, seed: int = 42) -> bytes:
    """Overwrite ``share`` of ``data`` with random bytes in ``places`` spots."""
    rnd = random.Random(seed)
    out = bytearray(data)
    width = int(len(data) * share / places)
    for _ in range(places):
        at = rnd.randrange(len(out) - width)
        out[at:at + width] = rnd.randbytes(width)
    return bytes(out)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ChunkStore]:
    with ChunkStore(tmp_path / "store", cap_bytes=1 << 30) as opened:
        yield opened


@pytest.fixture
def seller(tmp_path: Path) -> Iterator[ChunkStore]:
    with ChunkStore(tmp_path / "seller", cap_bytes=1 << 30) as opened:
        yield opened
