"""Chunk sync end to end: buyer manifest -> seller wanted list -> chunk stream -> files.

Covers dedup (a second identical job moves nothing, a 1 %-changed file ~1 %), streams
split at random points, and every way a stream can be cut, padded or carry wrong chunks.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bitwrk.cas.chunking import ChunkRef
from bitwrk.cas.manifest import JobManifest
from bitwrk.cas.store import ChunkStore
from bitwrk.cas.transfer import (
    STREAM_MAGIC,
    WANTED_MAGIC,
    ChunkReceiver,
    SyncStats,
    decode_wanted,
    encode_wanted,
    frame_chunks,
    stream_chunks,
    sync_stats,
)
from bitwrk.errors import IntegrityError, TransferError
from tests.cas.conftest import data_of, overwrite


def job(tmp_path: Path, store: ChunkStore, data: bytes, tile: int = 1) -> JobManifest:
    path = tmp_path / f"scene-{tile}.blend"
    path.write_bytes(data)
    return JobManifest.from_files({"tile": tile}, {"scene.blend": path}, store)


def send(buyer: ChunkStore, seller: ChunkStore, manifest: JobManifest) -> SyncStats:
    """The whole exchange as the daemon will run it, over bytes only."""
    raw = manifest.to_json()
    at_seller = JobManifest.from_json(raw)
    answer = encode_wanted(at_seller.needed_chunks(seller))
    wanted = decode_wanted(answer, manifest.chunks())
    receiver = ChunkReceiver(seller, at_seller.needed_chunks(seller))
    for piece in stream_chunks(buyer, wanted):
        receiver.feed(piece)
    receiver.finish()
    stats = sync_stats(manifest, wanted)
    assert (stats.chunk_bytes_sent, stats.stream_bytes) == (receiver.chunk_bytes,
                                                            receiver.wire_bytes)
    assert stats.wanted_bytes == len(answer) and stats.manifest_bytes == len(raw)
    return stats


def test_full_then_manifest_only_then_a_changed_resend(tmp_path: Path, store: ChunkStore,
                                                       seller: ChunkStore) -> None:
    scene = data_of(12_000_000)
    first = send(store, seller, tile1 := job(tmp_path, store, scene))
    assert first.chunk_bytes_sent == len(scene) and first.chunks_reused == 0
    assert 1.0 < first.share_of(len(scene)) < 1.01
    (out,) = tile1.assemble(seller, tmp_path / "job1")
    assert out.read_bytes() == scene

    second = send(store, seller, job(tmp_path, store, scene, tile=2))
    assert second.chunks_sent == 0 and second.bytes_reused == len(scene)
    assert second.wanted_bytes == len(WANTED_MAGIC)
    assert second.share_of(len(scene)) < 0.005  # the manifest, ~0.3 % of the scene

    # one spot per ~10 MB as in bench/transfer.py: each spot costs ~1 extra chunk around it
    changed = overwrite(scene, 0.01, places=2)
    third = send(store, seller, resend := job(tmp_path, store, changed, tile=3))
    assert 0.01 <= third.chunk_bytes_sent / len(scene) <= 0.02
    (out,) = resend.assemble(seller, tmp_path / "job3")
    assert out.read_bytes() == changed


def wanted_and_stream(store: ChunkStore, count: int = 5) -> tuple[list[ChunkRef], bytes]:
    refs = [ChunkRef(store.put(data_of(3000 + i, i)), 3000 + i) for i in range(count)]
    return refs, b"".join(stream_chunks(store, refs))


@settings(max_examples=15, deadline=None)
@given(cuts=st.lists(st.integers(0, 15_100), max_size=12))
def test_any_split_of_the_stream_is_received(tmp_path_factory: pytest.TempPathFactory,
                                             cuts: list[int]) -> None:
    root = tmp_path_factory.mktemp("split")
    with ChunkStore(root / "b") as buyer, ChunkStore(root / "s") as seller:
        refs, stream = wanted_and_stream(buyer)
        receiver = ChunkReceiver(seller, refs)
        bounds = [0, *sorted(c for c in cuts if c < len(stream)), len(stream)]
        for lo, hi in itertools.pairwise(bounds):
            receiver.feed(stream[lo:hi])
        receiver.finish()
        assert receiver.complete and seller.missing(refs) == []


def test_every_truncation_is_detected_and_keeps_only_verified_chunks(
        store: ChunkStore, seller: ChunkStore) -> None:
    refs, stream = wanted_and_stream(store, count=3)
    for cut in [0, 2, 4, 6, 8, 100, 4 + 4 + 3000, 4 + 4 + 3000 + 2, len(stream) - 4,
                len(stream) - 1]:
        receiver = ChunkReceiver(seller, refs)
        receiver.feed(stream[:cut])
        with pytest.raises(TransferError, match="cut off") as info:
            receiver.finish()
        assert info.value.data["received"] == receiver.chunks_stored
        assert seller.missing(refs) == refs[receiver.chunks_stored:]
        for ref in refs:
            seller.path_of(ref.sha256).unlink(missing_ok=True)


def test_a_wrong_chunk_is_refused_and_not_stored(store: ChunkStore,
                                                 seller: ChunkStore) -> None:
    refs, _ = wanted_and_stream(store, count=2)
    forged = data_of(refs[1].size, seed=99)  # right length, wrong bytes
    receiver = ChunkReceiver(seller, refs)
    pieces = list(frame_chunks([store.get(refs[0].sha256), forged]))
    with pytest.raises(IntegrityError, match="does not match") as info:
        for piece in pieces:
            receiver.feed(piece)
    assert info.value.data["index"] == 1
    assert seller.missing(refs) == [refs[1]]
    with pytest.raises(TransferError, match="already failed"):
        receiver.feed(b"more")
    with pytest.raises(TransferError, match="failed"):
        receiver.finish()


def test_a_wrong_length_is_refused_before_its_bytes(store: ChunkStore,
                                                    seller: ChunkStore) -> None:
    refs, _ = wanted_and_stream(store, count=1)
    receiver = ChunkReceiver(seller, refs)
    with pytest.raises(TransferError, match="length differs"):
        receiver.feed(STREAM_MAGIC + (10**6).to_bytes(4, "big"))


@pytest.mark.parametrize(("extra", "message"), [
    (b"\x00", "after the end"),
    ((100).to_bytes(4, "big"), "after the end"),
])
def test_data_after_the_end_is_refused(store: ChunkStore, seller: ChunkStore, extra: bytes,
                                       message: str) -> None:
    refs, stream = wanted_and_stream(store, count=2)
    receiver = ChunkReceiver(seller, refs)
    with pytest.raises(TransferError, match=message):
        receiver.feed(stream + extra)
    receiver2 = ChunkReceiver(seller, refs)
    receiver2.feed(stream)
    with pytest.raises(TransferError, match=message):
        receiver2.feed(extra)


def test_unrequested_and_missing_chunks_are_refused(store: ChunkStore,
                                                    seller: ChunkStore) -> None:
    refs, _ = wanted_and_stream(store, count=3)
    chunks = [store.get(r.sha256) for r in refs]
    receiver = ChunkReceiver(seller, refs[:2])
    with pytest.raises(TransferError, match="more chunks than were asked"):
        receiver.feed(b"".join(frame_chunks(chunks)))
    early = ChunkReceiver(seller, refs)
    with pytest.raises(TransferError, match="ended before") as info:
        early.feed(b"".join(frame_chunks(chunks[:2])))
    assert info.value.data["missing"] == [refs[2].sha256]


def test_bad_stream_magic(seller: ChunkStore) -> None:
    with pytest.raises(TransferError, match="magic"):
        ChunkReceiver(seller, []).feed(b"HTTP/1.1 200 OK")


def test_an_empty_wanted_list_is_an_empty_stream(seller: ChunkStore) -> None:
    receiver = ChunkReceiver(seller, [])
    for piece in frame_chunks([]):
        receiver.feed(piece)
    receiver.finish()
    assert receiver.wire_bytes == 8 and receiver.chunks_stored == 0


def test_the_buyer_does_not_send_a_corrupt_chunk(store: ChunkStore) -> None:
    refs, _ = wanted_and_stream(store, count=2)
    store.path_of(refs[1].sha256).write_bytes(b"x" * refs[1].size)
    with pytest.raises(IntegrityError, match="corrupt"):
        list(stream_chunks(store, refs))


def test_frame_chunks_refuses_empty_chunks() -> None:
    with pytest.raises(ValueError):
        list(frame_chunks([b""]))


def test_wanted_list_round_trip_and_validation() -> None:
    offered = [ChunkRef(f"{i:064x}", i + 1) for i in range(5)]
    raw = encode_wanted([offered[3], offered[1]])
    assert len(raw) == 4 + 2 * 32
    assert decode_wanted(raw, offered) == [offered[3], offered[1]]
    assert decode_wanted(encode_wanted([]), offered) == []
    with pytest.raises(TransferError, match="not in the job"):
        decode_wanted(encode_wanted([ChunkRef("f" * 64, 1)]), offered)
    with pytest.raises(TransferError, match="twice"):
        decode_wanted(encode_wanted([offered[0], offered[0]]), offered)
    with pytest.raises(TransferError, match="whole number"):
        decode_wanted(raw[:-1], offered)
    with pytest.raises(TransferError, match="magic"):
        decode_wanted(b"BWW\x02", offered)
