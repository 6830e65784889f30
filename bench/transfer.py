"""Transfer benchmark: chunking, sealing and what a job transfer moves (docs/architecture.md).

Measured side by side in one run, on this machine:

1. content-defined chunking + SHA-256 of every chunk over 200 MB of random bytes (the
   worst case: no runs, no repeats), best of 3, and ``chunk_file`` over the scene file;
2. sealing and unsealing a 100 MB result (AES-256-GCM in 64 KiB records), best of 3, and
   the peer channel's streamed seal/open of a chunk stream (HKDF key from ECDH, 256 KiB
   pieces as HTTP delivers them: docs/protocol-security.md);
3. the bytes one job transfer moves — manifest + wanted list + chunk stream — between a
   buyer's and a seller's chunk store on disk, for tile 1 (seller has nothing), tile 2
   (same scene, another tile: only the manifest) and a resend after 1 % of the scene was
   overwritten (10 places for 100 MB), each as a share of the scene.

The scene is synthetic and seeded (~100 MB: random blocks like packed textures, repeated
fixed-size records with sparse changes like mesh arrays, zero runs); ``bpy`` is never
imported, so this runs anywhere. ``--quick`` shrinks everything about 5x.

``python -m bench.transfer [--quick] [--strict]``: the table goes to stdout; exit 1 with
--strict when a target is missed.
"""

from __future__ import annotations

import os
import random
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.cli import arguments, exit_status
from bench.table import Row, print_table
from bitwrk.cas.chunking import (
    AVG_SIZE,
    MAX_SIZE,
    MIN_SIZE,
    chunk_bytes,
    chunk_file,
    iter_chunks,
)
from bitwrk.cas.manifest import JobManifest
from bitwrk.cas.sealing import seal, unseal
from bitwrk.cas.store import ChunkStore
from bitwrk.cas.transfer import (
    ChunkReceiver,
    SyncStats,
    decode_wanted,
    encode_wanted,
    stream_chunks,
    sync_stats,
)
from bitwrk.daemon.peer import Channel
from bitwrk.keys import PrivateKey

NAME = "transfer"
MB = 1_000_000
TARGET_CHUNK_MB_S = 500.0
TARGET_SEAL_MB_S = 500.0
TARGET_TILE2 = 1.0  # % of the scene
TARGET_RESEND = 2.0  # % of the scene for a 1 % change


@dataclass(frozen=True)
class Settings:
    hash_bytes: int
    scene_bytes: int
    seal_bytes: int
    repeats: int


DEFAULT = Settings(hash_bytes=200 * MB, scene_bytes=100 * MB, seal_bytes=100 * MB, repeats=3)
QUICK = Settings(hash_bytes=40 * MB, scene_bytes=20 * MB, seal_bytes=20 * MB, repeats=2)


def log(message: str) -> None:
    print(f"[transfer] {message}", file=sys.stderr, flush=True)


# --- data ----------------------------------------------------------------------------------


def scene_like(size: int, seed: int = 1) -> bytes:
    """Seeded bytes shaped like a .blend: random blocks, repeated records, zero runs."""
    rnd = random.Random(seed)
    out = bytearray()
    while len(out) < size:
        kind = rnd.random()
        if kind < 0.6:
            out += rnd.randbytes(rnd.randint(16_000, 2_000_000))
        elif kind < 0.85:
            record = rnd.randbytes(rnd.choice([12, 24, 48, 64]))
            block = bytearray(record * rnd.randint(1000, 40000))
            for at in range(0, len(block), 97):  # records differ a little, like vertices
                block[at] = rnd.randrange(256)
            out += block
        else:
            out += bytes(rnd.randint(1000, 500_000))
    return bytes(out[:size])


def overwrite(data: bytes, share: float, places: int = 10, seed: int = 42) -> bytes:
    rnd = random.Random(seed)
    out = bytearray(data)
    width = int(len(data) * share / places)
    for _ in range(places):
        at = rnd.randrange(len(out) - width)
        out[at:at + width] = rnd.randbytes(width)
    return bytes(out)


def best_rate(nbytes: int, repeats: int, work: Callable[[], object]) -> float:
    """MB/s of the fastest of ``repeats`` runs (the least disturbed by the machine)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - start)
    return nbytes / best / MB


# --- measurements --------------------------------------------------------------------------


def send(buyer: ChunkStore, seller: ChunkStore, manifest: JobManifest) -> SyncStats:
    """One job transfer over bytes, as the daemon will run it; checks the counts agree."""
    at_seller = JobManifest.from_json(manifest.to_json())
    needed = at_seller.needed_chunks(seller)
    wanted = decode_wanted(encode_wanted(needed), manifest.chunks())
    receiver = ChunkReceiver(seller, needed)
    for piece in stream_chunks(buyer, wanted):
        receiver.feed(piece)
    receiver.finish()
    stats = sync_stats(manifest, wanted)
    assert stats.stream_bytes == receiver.wire_bytes
    return stats


def measure_chunking(s: Settings) -> float:
    log(f"chunk + sha256 over {s.hash_bytes // MB} MB of random bytes ...")
    noise = random.Random(7).randbytes(s.hash_bytes)
    return best_rate(len(noise), s.repeats, lambda: chunk_bytes(noise))


def measure_sealing(s: Settings) -> tuple[float, float]:
    log(f"seal / unseal {s.seal_bytes // MB} MB ...")
    result = random.Random(8).randbytes(s.seal_bytes)
    key, sealed = seal(result)
    return (best_rate(len(result), s.repeats, lambda: seal(result)),
            best_rate(len(result), s.repeats, lambda: unseal(key, sealed)))


def measure_channel(s: Settings) -> tuple[float, float]:
    """MB/s of the peer channel: the buyer sealing a chunk stream piece by piece, the
    seller opening it in the pieces HTTP hands over."""
    log(f"peer channel seal / open {s.seal_bytes // MB} MB in 256 KiB pieces ...")
    data = random.Random(9).randbytes(s.seal_bytes)
    piece = 256 * 1024
    pieces = [data[i:i + piece] for i in range(0, len(data), piece)]
    buyer, seller = PrivateKey.generate(), PrivateKey.generate()
    sending = Channel.between(buyer, seller.public_key, "bench", 1)
    receiving = Channel.between(seller, buyer.public_key, "bench", 1)
    body = b"".join(sending.seal_stream("chunks", pieces))

    def open_all() -> None:
        opener = receiving.opener("chunks")
        for start in range(0, len(body), piece):
            opener.feed(body[start:start + piece])
        opener.finish()

    return (best_rate(len(data), s.repeats,
                      lambda: sum(map(len, sending.seal_stream("chunks", pieces)))),
            best_rate(len(data), s.repeats, open_all))


@dataclass
class SyncResults:
    tile1: SyncStats
    tile2: SyncStats
    resend: SyncStats
    tile1_mb_s: float
    chunk_file_mb_s: float
    disk_floor_mb_s: float


def disk_floor(scene: bytes, where: Path) -> float:
    """MB/s of just writing the scene's chunks as files (temp + rename), no store logic.

    Both stores write every chunk once on tile 1, so tile 1 cannot beat half of this.
    """
    (where / "tmp").mkdir(parents=True)
    start = time.perf_counter()
    for ref, view in iter_chunks(scene):
        final = where / ref.sha256[:2] / ref.sha256
        final.parent.mkdir(exist_ok=True)
        tmp = where / "tmp" / ref.sha256
        tmp.write_bytes(view)
        os.replace(tmp, final)
    return len(scene) / (time.perf_counter() - start) / MB


def measure_sync(scene: bytes, workdir: Path) -> SyncResults:
    buyer = ChunkStore(workdir / "buyer", cap_bytes=4 * len(scene))
    seller = ChunkStore(workdir / "seller", cap_bytes=4 * len(scene))
    path = workdir / "scene.blend"
    path.write_bytes(scene)
    start = time.perf_counter()
    chunk_file(path)
    chunk_file_mb_s = len(scene) / (time.perf_counter() - start) / MB
    files = {"scene.blend": path}
    start = time.perf_counter()
    tile1 = send(buyer, seller, JobManifest.from_files({"tile": 1}, files, buyer))
    tile1_mb_s = len(scene) / (time.perf_counter() - start) / MB
    tile2 = send(buyer, seller, JobManifest.from_files({"tile": 2}, files, buyer))
    # 1 % of the scene in one spot per 10 MB (10 spots for 100 MB): each spot costs about
    # one extra chunk around it, so a fixed count would over-weigh the --quick scene.
    path.write_bytes(overwrite(scene, 0.01, places=max(2, len(scene) // (10 * MB))))
    resend = send(buyer, seller, JobManifest.from_files({"tile": 1}, files, buyer))
    buyer.close()
    seller.close()
    floor = disk_floor(scene, workdir / "floor")
    return SyncResults(tile1, tile2, resend, tile1_mb_s, chunk_file_mb_s, floor)


def collect(quick: bool = False) -> list[Row]:
    """Run the benchmark and return its table rows (for bench/run_all.py)."""
    s = QUICK if quick else DEFAULT
    out: list[Row] = []

    def add(metric: str, value: float | None, unit: str = "", target: str = "",
            ok: bool | None = None, note: str = "") -> None:
        out.append(Row(NAME, metric, value, unit, target, ok, note))

    rate = measure_chunking(s)
    add("chunk + sha256 throughput", rate, "MB/s", f">= {TARGET_CHUNK_MB_S:.0f} MB/s",
        rate >= TARGET_CHUNK_MB_S,
        note=f"{s.hash_bytes // MB} MB random, {MIN_SIZE >> 10}/{AVG_SIZE >> 10}/"
             f"{MAX_SIZE >> 10} KiB")
    for what, value in zip(("seal", "unseal"), measure_sealing(s), strict=True):
        add(f"AEAD {what} throughput", value, "MB/s", f">= {TARGET_SEAL_MB_S:.0f} MB/s",
            value >= TARGET_SEAL_MB_S, note=f"{s.seal_bytes // MB} MB, AES-256-GCM, "
                                            "64 KiB records")
    for what, value in zip(("seal", "open"), measure_channel(s), strict=True):
        add(f"peer channel {what} (streamed)", value, "MB/s", f">= {TARGET_SEAL_MB_S:.0f} MB/s",
            value >= TARGET_SEAL_MB_S, note="chunk stream, 256 KiB pieces, ECDH+HKDF key")

    log(f"job transfers of a {s.scene_bytes // MB} MB scene between two stores ...")
    scene = scene_like(s.scene_bytes)
    with tempfile.TemporaryDirectory(prefix="bitwrk-bench-") as tmp:
        sync = measure_sync(scene, Path(tmp))
    n = len(scene)
    add("chunk_file throughput (page cache)", sync.chunk_file_mb_s, "MB/s",
        note=f"{n // MB} MB scene")
    t1, t2, rs = sync.tile1, sync.tile2, sync.resend
    add("tile 1 bytes moved / scene", 100 * t1.share_of(n), "%",
        note=f"{t1.chunks_sent} chunks, manifest {t1.manifest_bytes:,} B")
    add("tile 1 transfer, chunk + store + receive", sync.tile1_mb_s, "MB/s",
        note="both stores on one disk")
    add("  disk floor: chunk files written, no store", sync.disk_floor_mb_s, "MB/s",
        note="temp + rename per chunk")
    add("tile 2 bytes moved / scene", 100 * t2.share_of(n), "%", f"<= {TARGET_TILE2:g} %",
        100 * t2.share_of(n) <= TARGET_TILE2, note=f"{t2.bytes_moved:,} B, manifest only")
    add("1 %-changed resend bytes moved / scene", 100 * rs.share_of(n), "%",
        f"<= {TARGET_RESEND:g} %", 100 * rs.share_of(n) <= TARGET_RESEND,
        note=f"{rs.chunks_sent} new chunks, {rs.chunk_bytes_sent:,} B")
    return out


def main(argv: list[str] | None = None) -> int:
    args = arguments("bench.transfer", __doc__).parse_args(argv)
    table = collect(quick=args.quick)
    print_table(table, title="BitWrk transfer benchmark")
    return exit_status(table, args.strict)


if __name__ == "__main__":
    sys.exit(main())
