"""Content-defined chunking: exact round trips, bounded sizes, cuts that follow content."""

from __future__ import annotations

import hashlib
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from bitwrk.cas.chunking import (
    MAX_SIZE,
    MIN_SIZE,
    ChunkRef,
    chunk_bytes,
    chunk_file,
    is_sha256_hex,
    iter_chunks,
)
from tests.cas.conftest import data_of, overwrite


def new_bytes(old: list[ChunkRef], new: list[ChunkRef]) -> int:
    known = {ref.sha256 for ref in old}
    return sum(ref.size for ref in {r.sha256: r for r in new if r.sha256 not in known}.values())


@settings(max_examples=40, deadline=None)
@given(size=st.integers(0, 600_000), seed=st.integers(0, 2**32))
def test_chunks_cover_the_data_exactly(size: int, seed: int) -> None:
    data = data_of(size, seed)
    pieces = list(iter_chunks(data))
    assert b"".join(bytes(view) for _, view in pieces) == data
    for ref, view in pieces:
        assert ref == ChunkRef(hashlib.sha256(view).hexdigest(), len(view))
    sizes = [ref.size for ref, _ in pieces]
    assert all(MIN_SIZE <= s <= MAX_SIZE for s in sizes[:-1])
    assert all(0 < s <= MAX_SIZE for s in sizes)


def test_empty_data_has_no_chunks() -> None:
    assert chunk_bytes(b"") == []


def test_zero_runs_are_cut_at_the_max_size() -> None:
    refs = chunk_bytes(bytes(10 * MAX_SIZE))
    assert [ref.size for ref in refs] == [MAX_SIZE] * 10
    assert len({ref.sha256 for ref in refs}) == 1


def test_an_insertion_moves_only_nearby_cuts() -> None:
    data = data_of(4_000_000)
    shifted = data[:1_000_000] + b"xyz" + data[1_000_000:]
    # fixed-size blocks would make everything after the insertion new (docs/measured-facts.md P3)
    assert new_bytes(chunk_bytes(data), chunk_bytes(shifted)) < 3 * MAX_SIZE


def test_a_one_percent_overwrite_costs_about_one_percent() -> None:
    data = data_of(32_000_000)
    changed = overwrite(data, 0.01)
    share = new_bytes(chunk_bytes(data), chunk_bytes(changed)) / len(data)
    assert 0.01 <= share <= 0.02


def test_chunk_file_matches_chunk_bytes(tmp_path: Path) -> None:
    data = data_of(1_500_000, seed=3)
    path = tmp_path / "scene.blend"
    path.write_bytes(data)
    seen: list[bytes] = []
    entry = chunk_file(path, on_chunk=lambda ref, view: seen.append(bytes(view)))
    assert entry.name == "scene.blend"
    assert entry.size == len(data)
    assert entry.sha256 == hashlib.sha256(data).hexdigest()
    assert list(entry.chunks) == chunk_bytes(data)
    assert b"".join(seen) == data
    assert chunk_file(path, name="x/y.blend").name == "x/y.blend"


def test_chunk_file_of_an_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty"
    path.write_bytes(b"")
    entry = chunk_file(path)
    assert (entry.size, entry.chunks) == (0, ())
    assert entry.sha256 == hashlib.sha256(b"").hexdigest()


def test_is_sha256_hex() -> None:
    assert is_sha256_hex("0" * 64)
    assert not is_sha256_hex("A" * 64)
    assert not is_sha256_hex("0" * 63)
    assert not is_sha256_hex("0" * 64 + "\n")
    assert not is_sha256_hex(None)
