"""The on-disk chunk store: verified in and out, atomic, LRU-capped with pins, restartable."""

from __future__ import annotations

import hashlib
import os
import sys
import threading
import time
from pathlib import Path

import pytest

from bitwrk.cas.chunking import ChunkRef, FileEntry, chunk_file
from bitwrk.cas.store import ChunkStore, default_root
from bitwrk.errors import ChunkMissing, IntegrityError, InvalidRequest
from tests.cas.conftest import data_of

KB = 1024


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def blobs(count: int, size: int = 10 * KB, seed: int = 0) -> list[bytes]:
    return [data_of(size, seed * 1000 + i) for i in range(count)]


def stored_files(store: ChunkStore) -> list[Path]:
    return [p for p in store.root.glob("??/*") if p.is_file()]


def test_put_get_has_missing(store: ChunkStore) -> None:
    a, b = blobs(2)
    assert store.put(a) == sha(a)
    assert store.put(a, expected=sha(a)) == sha(a)  # again: no second copy
    assert store.has(sha(a)) and not store.has(sha(b))
    assert store.get(sha(a)) == a
    refs = [ChunkRef(sha(b), len(b)), ChunkRef(sha(a), len(a)), ChunkRef(sha(b), len(b))]
    assert store.missing(refs) == [ChunkRef(sha(b), len(b))]
    assert store.size_bytes == len(a)
    assert store.path_of(sha(a)) == store.root / sha(a)[:2] / sha(a)


def test_a_chunk_that_does_not_match_its_hash_is_not_stored(store: ChunkStore) -> None:
    a, b = blobs(2)
    with pytest.raises(IntegrityError, match="does not match") as info:
        store.put(b, expected=sha(a))
    assert info.value.data == {"expected": sha(a), "actual": sha(b)}
    assert not store.has(sha(a)) and not store.has(sha(b))
    assert stored_files(store) == [] and list((store.root / "tmp").iterdir()) == []
    assert store.size_bytes == 0


def test_a_corrupt_file_is_deleted_and_reported(store: ChunkStore) -> None:
    (a,) = blobs(1)
    store.put(a)
    path = store.path_of(sha(a))
    path.write_bytes(b"bit rot" + a[7:])
    with pytest.raises(IntegrityError, match="corrupt") as info:
        store.get(sha(a))
    assert info.value.data["expected"] == sha(a) and info.value.data["path"] == str(path)
    assert not path.exists() and not store.has(sha(a)) and store.size_bytes == 0


def test_a_missing_chunk_is_reported(store: ChunkStore) -> None:
    (a,) = blobs(1)
    with pytest.raises(ChunkMissing) as info:
        store.get(sha(a))
    assert info.value.data["missing"] == [sha(a)]


@pytest.mark.parametrize("name", ["../" + "0" * 61, "A" * 64, "0" * 63, "/etc/passwd", ""])
def test_chunk_names_are_only_hex(store: ChunkStore, name: str) -> None:
    with pytest.raises(InvalidRequest):
        store.get(name)


def test_add_file_and_assemble(store: ChunkStore, tmp_path: Path) -> None:
    data = data_of(700_000)
    src = tmp_path / "scene.blend"
    src.write_bytes(data)
    entry = store.add_file(src, name="job/scene.blend")
    assert entry == chunk_file(src, name="job/scene.blend")
    assert store.missing(entry.chunks) == []
    src.unlink()
    dest = tmp_path / "out" / "scene.blend"
    store.assemble(entry, dest)
    assert dest.read_bytes() == data
    assert [p.name for p in dest.parent.iterdir()] == ["scene.blend"]  # no temp left


def test_assemble_refuses_missing_chunks(store: ChunkStore, tmp_path: Path) -> None:
    src = tmp_path / "a"
    src.write_bytes(data_of(300_000))
    entry = store.add_file(src)
    store.path_of(entry.chunks[1].sha256).unlink()
    dest = tmp_path / "out" / "a"
    with pytest.raises(ChunkMissing) as info:
        store.assemble(entry, dest)
    assert info.value.data["missing"] == [entry.chunks[1].sha256]
    assert not dest.exists()


def test_assemble_checks_the_whole_file_hash(store: ChunkStore, tmp_path: Path) -> None:
    src = tmp_path / "a"
    src.write_bytes(data_of(300_000))
    entry = store.add_file(src)
    lying = FileEntry(entry.name, entry.size, "0" * 64, entry.chunks)
    dest = tmp_path / "out" / "a"
    with pytest.raises(IntegrityError, match="does not match its manifest"):
        store.assemble(lying, dest)
    assert not dest.exists() and list(dest.parent.iterdir()) == []


def test_eviction_keeps_the_store_under_its_cap_least_recent_first(tmp_path: Path) -> None:
    chunks = blobs(20)
    with ChunkStore(tmp_path / "s", cap_bytes=100 * KB) as store:
        for data in chunks[:8]:
            store.put(data)
        store.get(sha(chunks[0]))  # chunk 0 is now the most recent
        for data in chunks[8:]:
            store.put(data)
            assert store.size_bytes <= 100 * KB
        assert store.has(sha(chunks[-1]))
        assert not store.has(sha(chunks[1]))  # the least recently used went first
        on_disk = sum(p.stat().st_size for p in stored_files(store))
        assert on_disk == store.size_bytes


def test_recent_use_protects_a_chunk(tmp_path: Path) -> None:
    chunks = blobs(12)
    with ChunkStore(tmp_path / "s", cap_bytes=100 * KB) as store:
        for data in chunks[:9]:
            store.put(data)
        store.get(sha(chunks[0]))
        for data in chunks[9:]:
            store.put(data)
        assert store.has(sha(chunks[0])) and not store.has(sha(chunks[1]))


def test_pinned_chunks_are_not_evicted(tmp_path: Path) -> None:
    chunks = blobs(20)
    refs = [ChunkRef(sha(d), len(d)) for d in chunks]
    with ChunkStore(tmp_path / "s", cap_bytes=100 * KB) as store:
        with store.pin(refs[:12]):  # a job bigger than the cap
            for data in chunks[:12]:
                store.put(data)
            for data in chunks[12:]:
                store.put(data)
            assert store.missing(refs[:12]) == []
            assert store.size_bytes > 100 * KB
        assert store.size_bytes <= 100 * KB  # caught up on release


def test_nested_pins_count(tmp_path: Path) -> None:
    chunks = blobs(15)
    ref = ChunkRef(sha(chunks[0]), len(chunks[0]))
    with ChunkStore(tmp_path / "s", cap_bytes=50 * KB) as store:
        store.put(chunks[0])
        with store.pin([ref]):
            with store.pin([ref]):
                pass
            for data in chunks[1:]:
                store.put(data)
            assert store.has(ref.sha256)


def test_last_use_survives_a_restart(tmp_path: Path) -> None:
    chunks = blobs(12)
    with ChunkStore(tmp_path / "s", cap_bytes=100 * KB) as store:
        for data in chunks[:9]:
            store.put(data)
        time.sleep(0.002)
        store.get(sha(chunks[0]))
    with ChunkStore(tmp_path / "s", cap_bytes=100 * KB) as store:
        assert store.size_bytes == 9 * 10 * KB
        for data in chunks[9:]:
            store.put(data)
        assert store.has(sha(chunks[0])) and not store.has(sha(chunks[1]))


def test_a_lost_index_is_rebuilt_from_the_files(tmp_path: Path) -> None:
    chunks = blobs(5)
    with ChunkStore(tmp_path / "s") as store:
        for data in chunks:
            store.put(data)
    for name in ("index.sqlite3", "index.sqlite3-wal", "index.sqlite3-shm"):
        (tmp_path / "s" / name).unlink(missing_ok=True)
    with ChunkStore(tmp_path / "s") as store:
        assert store.size_bytes == 5 * 10 * KB
        assert all(store.get(sha(d)) == d for d in chunks)


def test_reopening_with_a_smaller_cap_evicts(tmp_path: Path) -> None:
    with ChunkStore(tmp_path / "s") as store:
        for data in blobs(10):
            store.put(data)
    with ChunkStore(tmp_path / "s", cap_bytes=40 * KB) as store:
        assert store.size_bytes <= 40 * KB


def test_stale_temp_files_are_cleaned(tmp_path: Path) -> None:
    with ChunkStore(tmp_path / "s"):
        pass
    old, fresh = tmp_path / "s" / "tmp" / "old", tmp_path / "s" / "tmp" / "fresh"
    old.write_bytes(b"x")
    fresh.write_bytes(b"x")
    os.utime(old, (0, 0))
    with ChunkStore(tmp_path / "s"):
        assert not old.exists() and fresh.exists()


def test_threads_share_a_store(store: ChunkStore) -> None:
    chunks = blobs(40, size=2 * KB)

    def put_all(offset: int) -> None:
        for data in chunks[offset:] + chunks[:offset]:
            store.put(data)

    workers = [threading.Thread(target=put_all, args=(i * 10,)) for i in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert store.size_bytes == 40 * 2 * KB
    assert all(store.get(sha(d)) == d for d in chunks)


def test_default_root_is_in_the_user_cache(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    if sys.platform != "linux":
        pytest.skip("XDG_CACHE_HOME is the Linux convention")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert default_root() == tmp_path / "cache" / "bitwrk" / "chunks"


def test_a_damaged_index_is_rebuilt(tmp_path: Path) -> None:
    chunks = blobs(3)
    with ChunkStore(tmp_path / "s") as store:
        for data in chunks:
            store.put(data)
    for name in ("index.sqlite3-wal", "index.sqlite3-shm"):
        (tmp_path / "s" / name).unlink(missing_ok=True)
    (tmp_path / "s" / "index.sqlite3").write_bytes(b"this is not a database" * 100)
    with ChunkStore(tmp_path / "s") as store:
        assert store.size_bytes == 3 * 10 * KB
        assert all(store.get(sha(d)) == d for d in chunks)
