"""Dead peers are noticed in seconds, not at the exchange's deadlines (issue 19): a buyer
that goes silent frees its seller, a seller that vanishes mid-unit loses the unit to
another. The other side is a bare client (and, for the seller, a tiny endpoint we shut
down) so that it can die exactly where the test wants. Exchange timeouts are scaled by
0.2: establishing 12 s, transmitting 24 s; patience is 8 s."""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from aiohttp import web

from bitwrk.cas.transfer import encode_wanted
from bitwrk.client import ExchangeClient
from bitwrk.daemon import BuyJob, Daemon, Mandate, Offer, StartSelling
from bitwrk.daemon.buyer import PATIENCE as BUYER_PATIENCE
from bitwrk.daemon.buyer import PROBE_EVERY, PROBE_MISSES
from bitwrk.daemon.events import JobDone, SellerUnit, UnitDone
from bitwrk.daemon.seller import PATIENCE as SELLER_PATIENCE
from bitwrk.keys import PrivateKey
from bitwrk.protocol import work_secret_hash
from bitwrk.wire import Account, Bid, Transaction
from tests.e2e.conftest import ServerProcess, free_port
from tests.e2e.test_daemon_trading import (  # noqa: F401 - fixtures
    ARTICLE,
    FakeRender,
    daemons,
    exchange,
    fund,
    make_units,
)

pytestmark = pytest.mark.slow
SLACK = 6.0  # a loaded 2-core machine


def _events(daemon: Daemon, want: Callable[[object], bool], timeout: float) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        event = daemon.runtime.wait_event(0.2)
        if event is not None and want(event):
            return event
    raise AssertionError("no such event in time")


def test_a_buyer_that_goes_silent_frees_its_seller(
    exchange: ServerProcess, daemons: Callable[[str], Daemon]  # noqa: F811
) -> None:
    seller = daemons("seller")
    seller.call(seller.start_selling(StartSelling(Offer((ARTICLE,), 100), FakeRender())), 30)
    buyer = PrivateKey.generate("regtest")
    fund(exchange, buyer.address, 100_000)

    async def match_then_vanish() -> tuple[int, float]:
        async with ExchangeClient(exchange.url, buyer) as c:
            bid = await c.place_bid("buy", ARTICLE, 100)
            assert bid.state == "matched" and bid.txid is not None, bid
            secret = secrets.token_hex(32)
            await c.send_message(bid.txid, "work", workhash="ab" * 32,
                                 worksecrethash=work_secret_hash("ab" * 32, secret))
            return bid.txid, time.monotonic()

    txid, silent_from = asyncio.run(match_then_vanish())
    # the seller sends its endpoint, waits PATIENCE for a manifest that never comes,
    # rejects (the buyer is refunded) and is free for the next buyer
    failed = _events(seller, lambda e: isinstance(e, SellerUnit) and e.txid == txid
                     and e.stage == "failed", SELLER_PATIENCE + 2 * SLACK)
    assert time.monotonic() - silent_from < SELLER_PATIENCE + 2 * SLACK  # not 24 s
    assert "no work" in failed.detail  # type: ignore[attr-defined]

    async def after() -> tuple[Transaction, Account, list[Bid]]:
        async with ExchangeClient(exchange.url) as c:
            return (await c.transaction(txid), await c.account(buyer.address),
                    await c.bids(seller.address, state="placed"))

    tx, account, placed = asyncio.run(after())
    assert tx.phase != "TRANSMITTING" and account.blocked == 0, (tx, account)
    assert placed, "the seller's slot did not bid again"


def test_a_seller_that_vanishes_mid_unit_loses_it_in_seconds(
    tmp_path: Path, exchange: ServerProcess, daemons: Callable[[str], Daemon]  # noqa: F811
) -> None:
    buyer = daemons("buyer")
    fund(exchange, buyer.address, 1_000_000)
    seller_key = PrivateKey.generate("regtest")
    ghost = asyncio.new_event_loop()
    gone: list[float] = []

    async def manifest(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=encode_wanted([]))  # has every chunk: "received" is next

    async def serve() -> web.AppRunner:
        app = web.Application()
        app.router.add_post("/bitwrk/v1/tx/{txid}/manifest", manifest)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        return runner

    async def take_a_unit() -> int:
        async with ExchangeClient(exchange.url, seller_key) as c:
            bid = await c.place_bid("sell", ARTICLE, 10)  # the cheapest: it gets a unit
            while bid.state == "placed":
                await asyncio.sleep(0.2)
                bid = await c.bid(bid.id)
            assert bid.txid is not None, bid
            txid = bid.txid
            await c.send_message(txid, "endpoint",
                                 workerurl=f"http://127.0.0.1:{port}/bitwrk/v1/tx/{txid}")
            while (await c.transaction(txid)).phase == "ESTABLISHING":
                await asyncio.sleep(0.1)
            return txid

    port = free_port()
    runner = ghost.run_until_complete(serve())
    try:
        units = make_units(tmp_path, buyer, 1, os.urandom(10_000))
        job = BuyJob(ARTICLE, Mandate(1000, 100_000, time.time() + 300), tuple(units),
                     tmp_path / "out", concurrency=1)
        buyer.submit(job)
        txid = ghost.run_until_complete(take_a_unit())
        time.sleep(1.0)  # the buyer pushes its manifest, then waits for "received"
        ghost.run_until_complete(runner.cleanup())  # the seller's machine is gone
        gone.append(time.monotonic())
        # a real seller takes the unit over once the buyer gave up on the ghost
        real = daemons("seller")
        real.call(real.start_selling(StartSelling(Offer((ARTICLE,), 100), FakeRender())), 30)
        done = _events(buyer, lambda e: isinstance(e, UnitDone | JobDone), 60)
        assert isinstance(done, UnitDone), done
        noticed = time.monotonic() - gone[0]
        assert noticed < PROBE_EVERY * (PROBE_MISSES + 1) + BUYER_PATIENCE + SLACK, noticed

        async def ghost_trade() -> Transaction:
            async with ExchangeClient(exchange.url) as c:
                return await c.transaction(txid)

        tx = asyncio.run(ghost_trade())
        assert tx.phase == "CANCELLED", tx  # cancelled in TRANSMITTING: refunded
    finally:
        ghost.run_until_complete(runner.cleanup())
        ghost.close()
