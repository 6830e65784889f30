"""When the buyer's check worker starts: only for a trade whose result will be checked.

The draw is made when the trade is matched (``SpotChecker.expect``); the worker is warmed
once per job, and a job none of whose results is drawn never starts Blender at all. The
worker here is a stand-in that records what it was asked to render (the real renders are
in tests/blender/test_spotcheck.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from bitwrk.cas import ChunkStore, JobManifest
from bitwrk.daemon.jobdirs import JobDirs
from bitwrk.daemon.spotcheck import OWN_SCENES, SellerRecords, SpotChecker
from bitwrk.render.jobspec import JobSpec

SPEC = JobSpec(blend="scene.blend", scene="Shot", view_layers=("ViewLayer",), frame=1,
               width=64, height=32, x0=16, x1=48, y0=0, y1=32, samples=8, seed=0,
               max_bounces=4)


class Recorder:
    """A stand-in worker pool: remembers each render request."""

    def __init__(self) -> None:
        self.renders: list[tuple[Path, JobSpec]] = []

    async def render(self, blend: Path, spec: JobSpec, out: Path, root: Path,
                     owner: str | None = None) -> Any:
        assert blend.is_file() and blend.parent == root
        assert owner == OWN_SCENES  # the buyer's own scenes: one worker for all its jobs
        self.renders.append((blend, spec))


def checker(tmp_path: Path, rate: float, passed: list[str]) -> tuple[SpotChecker, Recorder,
                                                                     list[asyncio.Task[None]]]:
    store = ChunkStore(tmp_path / "store")
    (tmp_path / "scene.blend").write_bytes(b"BLENDER-v500" + bytes(100))
    manifest = JobManifest.from_files(SPEC.to_json(), {"scene.blend": tmp_path / "scene.blend"},
                                      store)
    records = SellerRecords(tmp_path / "sellers.sqlite3")
    for seller in passed:
        records.record(seller, True)
    pool, tracked = Recorder(), []
    check = SpotChecker(store, {"u0": manifest, "u1": manifest}, records, rate,
                        pool, JobDirs(tmp_path / "dirs"),  # type: ignore[arg-type]
                        tmp_path / "evidence", track=tracked.append)
    return check, pool, tracked


async def test_no_result_drawn_for_a_check_no_worker_started(tmp_path: Path) -> None:
    check, pool, tracked = checker(tmp_path, 0.0, passed=["alice", "bob"])
    check.expect(1, "alice")
    check.expect(2, "bob")
    check.expect(1, "alice")  # the same trade seen again: decided once
    await asyncio.sleep(0)
    assert check.decided == {1: "skip", 2: "skip"}
    assert check.warming is None and not tracked and not pool.renders


async def test_a_new_seller_warms_the_worker_once_while_it_renders(tmp_path: Path) -> None:
    check, pool, tracked = checker(tmp_path, 0.0, passed=["alice"])
    check.expect(1, "alice")
    assert check.warming is None  # a known seller at rate 0: not checked
    check.expect(2, "newcomer")  # every unit of a seller not yet checked successfully
    check.expect(3, "another")
    assert check.decided == {1: "skip", 2: "new", 3: "new"}
    assert tracked == [check.warming]  # one warming task, known to the daemon's close
    await tracked[0]
    ((blend, spec),) = pool.renders  # one pixel of the first unit: the scene loaded
    assert blend.name == "scene.blend"
    assert (spec.rect.width, spec.rect.height) == (1, 1)


async def test_every_trade_drawn_at_rate_one(tmp_path: Path) -> None:
    check, _pool, tracked = checker(tmp_path, 1.0, passed=["alice"])
    for txid in range(1, 6):
        check.expect(txid, "alice")
    assert set(check.decided.values()) == {"drawn"} and len(tracked) == 1
    await tracked[0]


async def test_a_new_sellers_result_is_not_checked_once_another_passed(tmp_path: Path) -> None:
    """Matched while new, but an earlier result of the seller passed before this one
    arrived: the rate decides then, as if the seller had been known at the match."""
    check, _pool, tracked = checker(tmp_path, 0.0, passed=[])
    check.expect(1, "newcomer")
    check.expect(2, "newcomer")
    assert check._due(1, "newcomer")
    check.records.record("newcomer", True)  # the first result passed its check
    assert not check._due(2, "newcomer")
    assert not check.decided  # each decision is used once
    await tracked[0]
