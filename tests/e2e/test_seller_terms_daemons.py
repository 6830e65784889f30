"""A buyer's mandate that requires a seller record or excludes sellers (issue 10 item 4),
through a real exchange process and real buyer and seller daemons on loopback: the
exchange never matches the buyer with a seller its signed terms refuse, a bid with no
acceptable seller waits (it is neither refused nor matched and cancelled in a loop), and
money is neither made nor lost."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from bitwrk.client import ExchangeClient
from bitwrk.daemon import BuyJob, Daemon, Mandate, Offer, StartSelling
from bitwrk.daemon.events import JobDone, UnitDone
from bitwrk.protocol import SellerTerms
from bitwrk.wire import Bid, BidState, Transaction
from tests.e2e.conftest import ServerProcess
from tests.e2e.test_daemon_trading import (  # noqa: F401 - exchange, daemons: fixtures
    ARTICLE,
    FakeRender,
    collect,
    daemons,
    exchange,
    fund,
    make_units,
)
from tests.e2e.test_trade_attacks import totals_ok

pytestmark = pytest.mark.slow


def sell(daemon: Daemon, price: int, render: FakeRender) -> None:
    daemon.call(daemon.start_selling(StartSelling(Offer((ARTICLE,), price), render)), 30)


def buy(buyer: Daemon, tmp_path: Path, count: int, terms: SellerTerms) -> BuyJob:
    units = make_units(tmp_path, buyer, count, os.urandom(20_000))
    job = BuyJob(ARTICLE, Mandate(1000, 100_000, time.time() + 600, sellers=terms),
                 tuple(units), tmp_path / "out", concurrency=2)
    buyer.submit(job)
    return job


async def trades_of(url: str, buyer: str) -> tuple[list[Bid], list[Transaction]]:
    """The buyer's bids and the transactions they made."""
    async with ExchangeClient(url) as c:
        bids = await c.bids(buyer, limit=200)
        return bids, [await c.transaction(b.txid) for b in bids if b.txid]


def finished(url: str, seller: str) -> int:
    async def go() -> int:
        async with ExchangeClient(url) as c:
            return (await c.account(seller)).reputation.finished
    return asyncio.run(go())


def establish(tmp_path: Path, server: ServerProcess, make: Callable[..., Daemon],
              seller: Daemon) -> None:
    """One plain purchase from ``seller`` (the only one selling now): a public record."""
    warmup = make("warmup")
    fund(server, warmup.address, 100_000)
    job = buy(warmup, tmp_path / "warmup", 1, SellerTerms())
    done = [e for e in collect(warmup, job.job_id, 90) if isinstance(e, UnitDone)]
    assert [e.seller for e in done] == [seller.address]
    deadline = time.monotonic() + 30
    while finished(server.url, seller.address) < 1 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert finished(server.url, seller.address) == 1


def test_a_buyer_requiring_a_record_never_trades_with_a_fresh_seller(
        tmp_path: Path, exchange: ServerProcess,  # noqa: F811
        daemons: Callable[..., Daemon]) -> None:  # noqa: F811
    known, fresh = daemons("known"), daemons("fresh")
    known_render, fresh_render = FakeRender(), FakeRender()
    sell(known, 200, known_render)
    establish(tmp_path, exchange, daemons, known)
    sell(fresh, 50, fresh_render)  # the cheapest ask: a buyer without terms takes it
    buyer = daemons("buyer")
    fund(exchange, buyer.address, 1_000_000)
    job = buy(buyer, tmp_path / "picky", 4, SellerTerms(min_finished=1))
    events = collect(buyer, job.job_id, 120)
    final = next(e for e in events if isinstance(e, JobDone))
    assert (final.done, final.failed) == (4, 0)
    assert {e.seller for e in events if isinstance(e, UnitDone)} == {known.address}
    _, txs = asyncio.run(trades_of(exchange.url, buyer.address))
    assert txs and {t.seller for t in txs} == {known.address}  # never even matched
    assert fresh_render.jobs == 0
    plain = daemons("plain")
    fund(exchange, plain.address, 100_000)
    job = buy(plain, tmp_path / "plain", 1, SellerTerms())  # the control: no terms
    done = [e for e in collect(plain, job.job_id, 90) if isinstance(e, UnitDone)]
    assert [e.seller for e in done] == [fresh.address]
    asyncio.run(totals_ok(exchange.url))


def test_with_only_fresh_sellers_the_bid_waits_until_one_has_a_record(
        tmp_path: Path, exchange: ServerProcess,  # noqa: F811
        daemons: Callable[..., Daemon]) -> None:  # noqa: F811
    fresh = daemons("fresh")
    fresh_render = FakeRender()
    sell(fresh, 50, fresh_render)
    buyer = daemons("buyer")
    fund(exchange, buyer.address, 1_000_000)
    job = buy(buyer, tmp_path / "picky", 1, SellerTerms(min_finished=1))
    time.sleep(4.0)
    bids, txs = asyncio.run(trades_of(exchange.url, buyer.address))
    assert [b.state for b in bids] == [BidState.PLACED] and txs == []  # waiting, no loop
    assert fresh_render.jobs == 0
    assert not [e for e in buyer.pump(0.2) if isinstance(e, JobDone | UnitDone)]
    # Another buyer's plain purchase gives the seller its first finished trade; its next
    # ask (or the picky bid's next placing) then crosses: no livelock, no restart needed.
    establish(tmp_path, exchange, daemons, fresh)
    events = collect(buyer, job.job_id, 120)
    final = next(e for e in events if isinstance(e, JobDone))
    assert (final.done, final.failed) == (1, 0)
    bids, txs = asyncio.run(trades_of(exchange.url, buyer.address))
    assert [t.seller for t in txs] == [fresh.address]
    asyncio.run(totals_ok(exchange.url))


def test_an_excluded_seller_is_never_matched(
        tmp_path: Path, exchange: ServerProcess,  # noqa: F811
        daemons: Callable[..., Daemon]) -> None:  # noqa: F811
    cheat, honest = daemons("cheat"), daemons("honest")
    cheat_render, honest_render = FakeRender(), FakeRender()
    sell(cheat, 10, cheat_render)
    sell(honest, 300, honest_render)
    buyer = daemons("buyer")
    fund(exchange, buyer.address, 1_000_000)
    job = buy(buyer, tmp_path / "job", 3, SellerTerms(exclude=frozenset({cheat.address})))
    events = collect(buyer, job.job_id, 120)
    final = next(e for e in events if isinstance(e, JobDone))
    assert (final.done, final.failed) == (3, 0)
    assert {e.seller for e in events if isinstance(e, UnitDone)} == {honest.address}
    _, txs = asyncio.run(trades_of(exchange.url, buyer.address))
    assert {t.seller for t in txs} == {honest.address}
    assert all(t.price == 300 for t in txs)
    assert cheat_render.jobs == 0
    asyncio.run(totals_ok(exchange.url))
