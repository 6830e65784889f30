"""Job folders against hostile manifests: disk bombs, failed units, a blocked event loop."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import pytest

from bitwrk.cas import ChunkStore, JobManifest
from bitwrk.cas.chunking import ChunkRef, FileEntry
from bitwrk.daemon.jobdirs import JobDirs, JobTooLarge, expanded_size
from bitwrk.render.jobspec import JobSpec
from bitwrk.seller.executor import FILES_BY_CLASS, RenderExecutor

SPEC = JobSpec(blend="scene.blend", scene="Shot", view_layers=("ViewLayer",), frame=1,
               width=64, height=48, x0=0, x1=64, y0=0, y1=48, samples=4, seed=0,
               max_bounces=2)


def bomb(store: ChunkStore, repeats: int) -> JobManifest:
    """One 1 MiB chunk (a tiny upload) listed ``repeats`` times in one file."""
    chunk = bytes(1 << 20)
    sha = store.put(chunk)
    whole = hashlib.sha256(b"never assembled").hexdigest()  # hashing GiBs would be slow
    entry = FileEntry("scene.blend", repeats << 20, whole,
                      tuple(ChunkRef(sha, 1 << 20) for _ in range(repeats)))
    return JobManifest(SPEC.to_json(), (entry,))


def small_job(store: ChunkStore, tmp_path: Path, text: bytes = b"blend") -> JobManifest:
    src = tmp_path / f"src-{hashlib.sha256(text).hexdigest()[:8]}.blend"
    src.write_bytes(text)
    return JobManifest.from_files(SPEC.to_json(), {"scene.blend": src}, store)


async def test_a_disk_bomb_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    store = ChunkStore(tmp_path / "chunks")
    dirs = JobDirs(tmp_path / "jobs")
    manifest = bomb(store, 5000)  # 5 GiB from one stored MiB
    assert expanded_size(manifest) == 5000 << 20
    limit = RenderExecutor.__new__(RenderExecutor)
    limit.max_job_bytes = None
    assert limit.job_bytes_limit(manifest) == FILES_BY_CLASS["512M"]
    with pytest.raises(JobTooLarge) as info:
        async with dirs.use(manifest, store, limit.job_bytes_limit(manifest)):
            raise AssertionError("must not be reached")
    assert info.value.data == {"size": 5000 << 20, "limit": FILES_BY_CLASS["512M"]}
    assert list((tmp_path / "jobs").iterdir()) == []
    capped = JobDirs(tmp_path / "jobs", max_bytes=100 << 20)  # the seller's own cap
    with pytest.raises(JobTooLarge):
        capped.check(bomb(store, 101))
    capped.check(bomb(store, 100))


async def test_assembly_runs_off_the_event_loop(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    store = ChunkStore(tmp_path / "chunks")
    dirs = JobDirs(tmp_path / "jobs")
    threads = []
    original = JobDirs._ensure

    def spy(self: JobDirs, *args: object) -> Path:
        threads.append(threading.current_thread())
        return original(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(JobDirs, "_ensure", spy)
    async with dirs.use(small_job(store, tmp_path), store) as folder:
        assert (folder / "scene.blend").read_bytes() == b"blend"
    assert threads and threads[0] is not threading.main_thread()


async def test_a_failed_units_folder_goes_at_once(tmp_path: Path) -> None:
    store = ChunkStore(tmp_path / "chunks")
    dirs = JobDirs(tmp_path / "jobs", keep=4)
    good = small_job(store, tmp_path, b"good")
    async with dirs.use(good, store) as kept:
        pass
    with pytest.raises(RuntimeError):
        async with dirs.use(small_job(store, tmp_path, b"bad"), store) as failed:
            assert failed.is_dir()
            raise RuntimeError("worker refused the scene")
    assert not failed.exists()
    assert kept.is_dir()  # a finished unit's folder stays for the next tile
