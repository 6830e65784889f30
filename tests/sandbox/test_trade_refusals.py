"""Hostile units bought through a real exchange from a sandboxed seller (real bpy).

One seller daemon renders with the default (sandboxed) worker pool. Buyers send a scene
that reads seller files through computed paths, a disk bomb, a memory bomb and an endless
render; each is refused with its reason on the exchange (the endless one at the seller's
wall-time limit), the buyer gets its money back, no job folder of a refused unit is left,
and the seller goes on to sell a good unit afterwards.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bitwrk.cas import JobManifest
from bitwrk.client import ExchangeClient
from bitwrk.daemon import BuyJob, CancelJob, Daemon, DaemonConfig, Mandate, Offer, StartSelling
from bitwrk.daemon.events import JobDone, UnitDone, UnitFailed
from bitwrk.daemon.jobdirs import files_key
from bitwrk.seller.executor import RenderExecutor
from bitwrk.seller.pool import WorkerPool
from bitwrk.wire import Account, Transaction
from tests.blender.conftest import needs_bpy, run_bpy
from tests.e2e.conftest import ServerProcess
from tests.e2e.test_daemon_trading import fund
from tests.sandbox.test_attacks import SPEC, place_secrets
from tests.sandbox.test_jobdirs import bomb

pytestmark = [needs_bpy, pytest.mark.slow]
HERE = Path(__file__).resolve().parent
ARTICLE = "net.bitwrk/blender/5.0/512M"
FUNDS = 1_000_000
RACE = "manifest does not match the transaction's workhash"
UNIT_SECONDS = 15.0  # the seller's wall-time limit per unit


@pytest.fixture
def exchange(tmp_path: Path) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path / "exchange", timeout_scale=0.2).start()
    yield server
    server.close()


@pytest.fixture
def scenes(tmp_path: Path) -> dict[str, Path]:
    run_bpy([str(HERE / "make_bombs.py"), str(tmp_path / "scenes")], tmp_path)
    secret = tmp_path / "seller-secrets"
    secret.mkdir()
    place_secrets(secret)
    run_bpy([str(HERE / "make_attack.py"), str(tmp_path / "scenes" / "leak"), str(secret)],
            tmp_path)
    return {name: tmp_path / "scenes" / name / "scene.blend"
            for name in ("plain", "memory", "leak")}


@pytest.fixture
def seller(tmp_path: Path, exchange: ServerProcess) -> Iterator[Daemon]:
    daemon = Daemon(DaemonConfig(exchange.url, data_dir=tmp_path / "seller" / "data",
                                 cache_dir=tmp_path / "seller" / "cache"))
    daemon.start()
    pool = WorkerPool(slots=1, cost_class="512M", timeout=UNIT_SECONDS)
    assert pool.sandbox.active
    offer = Offer((ARTICLE,), 100, error_backoff=0.5)
    daemon.call(daemon.start_selling(StartSelling(offer, RenderExecutor(pool))), 30)
    yield daemon
    daemon.call(pool.close(), 30)
    assert daemon.stop(20)


def unit(buyer: Daemon, blend: Path, tile: int, samples: int = 4) -> tuple[str, bytes]:
    spec = SPEC.to_json() | {"seed": tile, "samples": samples}
    return f"u{tile}", JobManifest.from_files(spec, {"scene.blend": blend}, buyer.store).to_json()


def buy(buyer: Daemon, tmp_path: Path, units: tuple[tuple[str, bytes], ...],
        refused: bool) -> list[Any]:
    """Submit one job; for a refused unit, cancel it after its first failed trade."""
    job = BuyJob(ARTICLE, Mandate(1000, 100_000, time.time() + 600), units,
                 tmp_path / "out", concurrency=1)
    buyer.submit(job)
    events: list[Any] = []
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        event = buyer.runtime.wait_event(0.2)
        if event is None:
            continue
        events.append(event)
        if refused and isinstance(event, UnitFailed):
            buyer.submit(CancelJob(job.job_id))
        if isinstance(event, JobDone) and event.job_id == job.job_id:
            return events
    raise AssertionError(f"job did not finish: {events[-10:]}")


def exchange_view(exchange: ServerProcess, address: str) -> tuple[Account, list[Transaction]]:
    async def go() -> tuple[Account, list[Transaction]]:
        async with ExchangeClient(exchange.url) as c:
            bids = await c.bids(address, limit=200)
            txs = [await c.transaction(b.txid) for b in bids if b.txid]
            return await c.account(address), txs
    return asyncio.run(go())


def test_hostile_units_are_refused_refunded_and_the_seller_sells_on(
        tmp_path: Path, exchange: ServerProcess, seller: Daemon,
        scenes: dict[str, Path]) -> None:
    buyer = Daemon(DaemonConfig(exchange.url, data_dir=tmp_path / "buyer" / "data",
                                cache_dir=tmp_path / "buyer" / "cache",
                                allow_local_sellers=True))  # the seller is on loopback
    buyer.start()
    try:
        fund(exchange, buyer.address, FUNDS)
        good = unit(buyer, scenes["plain"], 1)
        done = buy(buyer, tmp_path, (good,), refused=False)
        assert any(isinstance(e, UnitDone) for e in done)
        reasons = {}
        disk_bomb = bomb(buyer.store, 5000)
        hostile = {"leak": unit(buyer, scenes["leak"], 2),
                   "disk": ("u3", disk_bomb.to_json()),
                   "memory": unit(buyer, scenes["memory"], 4),
                   # within the class's ray budget, but minutes of rendering on one core
                   "endless": unit(buyer, scenes["plain"], 6, samples=50_000)}
        for name, bad in hostile.items():
            for _ in range(3):
                events = buy(buyer, tmp_path, (bad,), refused=True)
                failed = [e for e in events if isinstance(e, UnitFailed)]
                assert failed and not any(isinstance(e, UnitDone) for e in events), events
                reasons[name] = " | ".join(e.reason for e in failed)
                # A trade can also fail on a rare race outside this test's subject (the
                # seller reading the transaction before the buyer's workhash shows); the
                # buyer then avoids the seller for that job, so buy again in a new job.
                if RACE not in reasons[name]:
                    break
        assert "computed or outside the job" in reasons["leak"]
        assert "expand to" in reasons["disk"]
        assert "died while rendering" in reasons["memory"]
        assert "wall-time limit" in reasons["endless"]
        again = buy(buyer, tmp_path, (unit(buyer, scenes["plain"], 5),), refused=False)
        assert any(isinstance(e, UnitDone) for e in again)  # the seller sells on

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            account, txs = exchange_view(exchange, buyer.address)
            if account.blocked == 0 and all(t.retired for t in txs):
                break
            time.sleep(0.5)
        paid = [t for t in txs if t.phase == "FINISHED"]
        refused = [t for t in txs if t.phase == "WORK_DISPUTED"]
        phases = [t.phase for t in txs]
        assert len(paid) == 2 and len(refused) >= 4, phases  # one more per race retried
        assert set(phases) <= {"FINISHED", "WORK_DISPUTED", "CANCELLED"}, phases
        spent = sum(t.price + t.fee for t in paid)
        assert (account.available, account.blocked) == (FUNDS - spent, 0)
        jobs = tmp_path / "seller" / "cache" / "work" / "jobs"
        left = sorted(p.name for p in jobs.iterdir())
        assert left == sorted({files_key(JobManifest.from_json(u[1]))
                               for u in (good,)}), left  # only the good scene's folder
    finally:
        assert buyer.stop(20)
