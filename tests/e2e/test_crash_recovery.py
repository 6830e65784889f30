"""Crash recovery under load: the exchange is a real process on loopback, ~20 concurrent
clients trade on it, the server is SIGKILLed mid-load and restarted on the same database.

Checked afterwards:

* every acknowledged bid, cancel, deposit and transaction message is still there, in the
  acknowledged state or a later one (durability of every acknowledged commit);
* deadlines still fire: ones that fell while the server was down are retired on restart,
  later ones at their time; every bid left on the book expires, every transaction left
  open ends EXPIRED/FINISHED;
* the ledger: Σ balances + fees = Σ deposits, no negative balance, every buyer's blocked
  balance back to 0, and every account's balance follows from the transactions' outcomes;
* the SQLite file itself: ``PRAGMA integrity_check``, every movement sums to zero, balances
  equal the sum of their movements, one settlement per retired transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import os
import random
import secrets
import sqlite3
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiohttp
import pytest

from bitwrk.cas.sealing import WRAPPED_KEY_SIZE
from bitwrk.client import ExchangeClient
from bitwrk.errors import ApiError, BitwrkError, NotFound
from bitwrk.keys import PrivateKey
from bitwrk.protocol import receipt_document, work_secret_hash
from bitwrk.wire import Bid, Transaction
from tests.e2e.conftest import ServerProcess, pid_alive

T = TypeVar("T")

ARTICLES = ("net.bitwrk/blender/4.2/512M", "net.bitwrk/blender/4.2/2G")
PROBE_REST = "net.bitwrk/blender/4.2/8G"  # only the probe's lonely bid: it must expire
PROBE_TRADE = "net.bitwrk/blender/4.2/32G"  # only the probe pair trades here
PROBE_BOOK = "net.bitwrk/blender/4.1/512M"  # a sell resting across the restart
N_BUYERS = 10
N_SELLERS = 10
FUNDS = 5_000_000
TOP_UP = 10_000
LOAD_BEFORE_KILL = 6.0  # seconds of load before the SIGKILL
DOWNTIME = 1.0  # the server stays dead this long (clients keep trying)
LOAD_AFTER_RESTART = 2.5  # clients carry on this long after the restart
POLL = 0.1
RUSH = 3  # bids per trader sent together right before the SIGKILL
SLACK = 2.0  # how late a deadline may fire on a loaded 2-core machine
SETTLE_LIMIT = 20.0  # bounded wait for every deadline after the load stops

OPEN = frozenset({"ESTABLISHING", "TRANSMITTING", "WORKING", "UNVERIFIED"})
TERMINAL = frozenset({"FINISHED", "CANCELLED", "EXPIRED", "WORK_DISPUTED"})
BID_LATER = {
    "placed": {"placed", "matched", "expired", "cancelled"},
    "matched": {"matched"},
    "cancelled": {"cancelled"},
    "expired": {"expired"},
}
TRANSPORT_ERRORS = (aiohttp.ClientError, TimeoutError, ConnectionError)
# Refusals a correct exchange gives racing participants (both parties and the clock act
# on one transaction), and the bar on sellers whose trades expire without an endpoint
# (this load abandons some trades on purpose): anything else is a bug.
EXPECTED_REFUSALS = frozenset({"stale_revision", "wrong_phase", "barred"})
ABANDON = "abandon"


# -- what the clients saw acknowledged ------------------------------------------------------

@dataclass(frozen=True)
class BidAck:
    bid_id: int
    address: str
    state: str
    txid: int | None


@dataclass(frozen=True)
class MessageAck:
    txid: int
    sender: str
    action: str
    revision: int
    phase: str


@dataclass
class DepositTry:
    uid: str
    account: str
    amount: int
    acked: bool = False


@dataclass
class Journal:
    bids: list[BidAck] = field(default_factory=list)
    messages: list[MessageAck] = field(default_factory=list)
    deposits: dict[str, DepositTry] = field(default_factory=dict)
    errors: Counter[str] = field(default_factory=Counter)
    killed_at: float = math.inf  # time.monotonic() of the SIGKILL
    cut: int = 0  # requests sent before the SIGKILL that it cut off (no answer)

    def bid(self, view: Bid) -> None:
        self.bids.append(BidAck(view.id, view.address, view.state, view.txid))

    def message(self, sender: str, action: str, view: Transaction) -> None:
        self.messages.append(
            MessageAck(view.id, sender, action, view.revision, view.phase)
        )

    def snapshot(self) -> Journal:
        return Journal(list(self.bids), list(self.messages),
                       {u: d for u, d in self.deposits.items() if d.acked}, Counter())

    def refusals(self) -> Counter[str]:
        return Counter({k: n for k, n in self.errors.items() if not k.startswith("transport:")})

    def transport_errors(self) -> int:
        return sum(n for k, n in self.errors.items() if k.startswith("transport:"))


async def attempt(journal: Journal, request: Awaitable[T]) -> T | None:
    """The response, or None when the exchange refused or the connection failed (an
    unacknowledged request: it may or may not have been committed)."""
    started = time.monotonic()
    try:
        return await request
    except aiohttp.ClientConnectorError as exc:  # never reached the server
        journal.errors[f"transport:{type(exc).__name__}"] += 1
    except ApiError as exc:
        journal.errors[f"api_error:{exc.data.get('status')}:{exc.message[:60]}"] += 1
    except BitwrkError as exc:
        journal.errors[exc.code] += 1
    except TRANSPORT_ERRORS as exc:
        journal.errors[f"transport:{type(exc).__name__}"] += 1
        if started < journal.killed_at:
            journal.cut += 1
    return None


def work_secret() -> tuple[str, str, str]:
    """(workhash, secretproof, worksecrethash): the seller shows SHA256(secret)."""
    workhash = hashlib.sha256(secrets.token_bytes(16)).hexdigest()
    proof = hashlib.sha256(secrets.token_bytes(32)).hexdigest()
    digest = work_secret_hash(workhash, proof)
    return workhash, proof, digest


def trade_receipt(buyer: PrivateKey, exchange: str, tx: Transaction, enc: str) -> str:
    return buyer.sign_message(receipt_document(exchange=exchange, txid=tx.id,
                                               seller=tx.seller, encresulthash=enc))


# -- the participants -----------------------------------------------------------------------

class Trader:
    """One identity with its own key and client: places bids (at most two open at once) and
    drives each matched transaction through its side of the phases. ``channel`` stands for
    the direct buyer↔seller link (work secret, encrypted result hash, receipt)."""

    def __init__(self, name: str, side: str, url: str, journal: Journal,
                 channel: dict[int, dict[str, str]], rng: random.Random) -> None:
        self.name = name
        self.side = side
        self.key = PrivateKey.generate("regtest")
        self.address = self.key.address
        self.client = ExchangeClient(url, self.key, timeout=5.0)
        self.journal = journal
        self.channel = channel
        self.rng = random.Random(rng.random())
        self.tasks: set[asyncio.Task[None]] = set()
        self.open_bids = 0
        self.exchange_id = ""  # what receipts are bound to, learned on the first trade

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            if self.open_bids < 2:
                self.spawn(self.bid_cycle(stop))
            await asyncio.sleep(self.rng.uniform(0.15, 0.45))

    async def bid_cycle(self, stop: asyncio.Event,
                        on_ack: Callable[[], None] = lambda: None) -> None:
        j, rng = self.journal, self.rng
        self.open_bids += 1
        try:
            price = rng.randint(950, 1100) if self.side == "buy" else rng.randint(900, 1050)
            bid = await attempt(j, self.client.place_bid(self.side, rng.choice(ARTICLES), price))
            if bid is None:
                return
            j.bid(bid)
            on_ack()
            loop = asyncio.get_running_loop()
            cancel_at = loop.time() + rng.uniform(0.2, 2.0) if rng.random() < 0.15 else math.inf
            while bid.state == "placed" and not stop.is_set():
                await asyncio.sleep(POLL)
                if loop.time() >= cancel_at:
                    cancel_at = math.inf
                    cancelled = await attempt(j, self.client.cancel_bid(bid.id))
                    if cancelled is not None:
                        j.bid(cancelled)
                        bid = cancelled
                        continue
                seen = await attempt(j, self.client.bid(bid.id))
                if seen is not None:
                    bid = seen
        finally:
            self.open_bids -= 1
        if bid.state == "matched":
            await self.trade(bid.txid, stop)

    async def trade(self, txid: int, stop: asyncio.Event) -> None:
        plan = self.rng.random()
        while not stop.is_set():
            tx = await attempt(self.journal, self.client.transaction(txid))
            if tx is None:
                await asyncio.sleep(POLL)
                continue
            if tx.phase not in OPEN:
                return
            if not self.exchange_id:
                self.exchange_id = await attempt(self.journal, self.client.exchange_id()) or ""
                continue
            move = self.buyer_move(tx, plan) if self.side == "buy" else self.seller_move(tx, plan)
            if move == ABANDON:
                return
            if move is None:
                await asyncio.sleep(POLL)
                continue
            action, fields = move
            view = await attempt(self.journal, self.client.send_message(
                txid, action, revision=tx.revision, **fields))
            if view is not None:
                self.journal.message(self.address, action, view)

    def buyer_move(self, tx: Transaction, plan: float) -> Any:
        ch = self.channel.setdefault(tx.id, {})
        phase = tx.phase
        if phase == "ESTABLISHING":
            if tx.workhash is not None:
                return None
            if plan < 0.07:
                return ABANDON  # never sends work: the establish deadline must end it
            if plan < 0.14:
                return "cancel", {}
            if "secret" not in ch:  # once per transaction: a resend after a lost ack matches
                ch["workhash"], ch["secret"], ch["digest"] = work_secret()
            return "work", {"workhash": ch["workhash"], "worksecrethash": ch["digest"]}
        if phase == "TRANSMITTING":
            return ("cancel", {}) if 0.14 <= plan < 0.21 else None
        if phase == "WORKING":
            if 0.31 <= plan < 0.36:
                return ABANDON  # gone after sending work: the wind-down finishes it
            if "enc" in ch and "receipt" not in ch:
                ch["receipt"] = trade_receipt(self.key, self.exchange_id, tx, ch["enc"])
            return None
        if 0.21 <= plan < 0.31:
            return "dispute", {"reason": "the tile is black"}
        return "accept", {}

    def seller_move(self, tx: Transaction, plan: float) -> Any:
        ch = self.channel.setdefault(tx.id, {})
        phase = tx.phase
        if phase == "ESTABLISHING":
            if tx.workerurl is not None:
                return None
            if plan < 0.05:
                return ABANDON
            return "endpoint", {"workerurl": f"http://127.0.0.1:9/work/{tx.id}"}
        if phase == "TRANSMITTING":
            if 0.05 <= plan < 0.10:
                return "reject", {"reason": "cannot fetch the work"}
            return ("received", {"secretproof": ch["secret"]}) if "secret" in ch else None
        if phase == "WORKING":
            if 0.10 <= plan < 0.15:
                return "reject", {"reason": "scene does not fit the cost class"}
            if 0.15 <= plan < 0.20:
                return ABANDON
            ch.setdefault("enc", hashlib.sha256(secrets.token_bytes(16)).hexdigest())
            ch.setdefault("resultkey", secrets.token_hex(WRAPPED_KEY_SIZE))
            if "receipt" not in ch:
                return None
            return "result", {"encresulthash": ch["enc"], "receipt": ch["receipt"],
                              "resultkey": ch["resultkey"]}
        return ABANDON  # UNVERIFIED: the seller's part is done


async def credit(operator: ExchangeClient, journal: Journal, account: str, amount: int,
                 uid: str | None = None) -> dict[str, Any] | None:
    """An operator deposit; retried with the same uid it is idempotent."""
    if uid is None:
        uid = "e2e-" + secrets.token_hex(10)
        journal.deposits[uid] = DepositTry(uid, account, amount)
    view = await attempt(journal, operator.deposit(account, amount, kind="play", uid=uid,
                                                   ref="e2e"))
    if view is not None:
        assert (view["uid"], view["account"], view["amount"]) == (uid, account, amount), view
        journal.deposits[uid].acked = True
    return view


async def operator_loop(operator: ExchangeClient, journal: Journal, buyers: list[Trader],
                        rng: random.Random, stop: asyncio.Event) -> None:
    """Small top-ups throughout the load; an unacknowledged one is retried with its uid."""
    while not stop.is_set():
        for d in [d for d in journal.deposits.values() if not d.acked]:
            await credit(operator, journal, d.account, d.amount, uid=d.uid)
        await credit(operator, journal, rng.choice(buyers).address, TOP_UP)
        await asyncio.sleep(0.25)


@dataclass
class Probes:
    """Deterministic deadlines around the kill (wall-clock times from the server's view)."""

    lonely_bid: Bid | None = None  # expires while the server is down
    dead_tx: Transaction | None = None  # ESTABLISHING, its deadline falls in the downtime
    late_tx: Transaction | None = None  # TRANSMITTING, its deadline comes after restart
    resting: Bid | None = None  # a sell that must still be on the book afterwards


async def run_probes(buyer: Trader, seller: Trader, journal: Journal, kill_at: float) -> Probes:
    """``kill_at`` is the loop time of the planned SIGKILL."""
    loop = asyncio.get_running_loop()
    probes = Probes()
    life, establish = 6.0, 3.0  # --timeout-scale 0.05

    await asyncio.sleep(kill_at - (life - 0.5) - loop.time())
    probes.lonely_bid = await buyer.client.place_bid("buy", PROBE_REST, 500)
    journal.bid(probes.lonely_bid)

    await asyncio.sleep(kill_at - (establish - 0.5) - loop.time())
    for name in ("dead_tx", "late_tx"):
        journal.bid(await seller.client.place_bid("sell", PROBE_TRADE, 1000))
        bid = await buyer.client.place_bid("buy", PROBE_TRADE, 1000)
        journal.bid(bid)
        assert bid.state == "matched", bid
        setattr(probes, name, await buyer.client.transaction(bid.txid))
    assert probes.late_tx is not None
    txid = probes.late_tx.id
    workhash, _, digest = work_secret()
    steps: tuple[tuple[Trader, str, dict[str, Any]], ...] = (
        (buyer, "work", {"workhash": workhash, "worksecrethash": digest}),
        (seller, "endpoint", {"workerurl": "http://127.0.0.1:9/probe"}),
    )
    for trader, action, fields in steps:
        view = await trader.client.send_message(txid, action, **fields)
        journal.message(trader.address, action, view)
    probes.late_tx = view
    assert view.phase == "TRANSMITTING", view

    await asyncio.sleep(kill_at - 1.0 - loop.time())
    probes.resting = await seller.client.place_bid("sell", PROBE_BOOK, 700)
    journal.bid(probes.resting)
    assert probes.resting.state == "placed", probes.resting
    return probes


# -- checks ---------------------------------------------------------------------------------

async def gather_limited(coros: list[Awaitable[T]], limit: int = 8) -> list[T]:
    sem = asyncio.Semaphore(limit)

    async def one(c: Awaitable[T]) -> T:
        async with sem:
            return await c

    return await asyncio.gather(*(one(c) for c in coros))


async def check_acknowledged(observer: ExchangeClient, journal: Journal) -> None:
    """Every acknowledged write is in the store, in its state or a later one."""
    bids = {b.bid_id: b for b in journal.bids}  # the latest ack of each bid
    views = await gather_limited([observer.bid(i) for i in bids])
    for ack, bid in zip(bids.values(), views, strict=True):
        assert bid.address == ack.address
        assert bid.state in BID_LATER[ack.state], (ack, bid)
        if ack.state == "matched":
            assert bid.txid == ack.txid, (ack, bid)
    txids = sorted({m.txid for m in journal.messages} | {b.txid for b in journal.bids
                                                         if b.txid is not None})
    txs = dict(zip(txids, await gather_limited([observer.transaction(t) for t in txids]),
                   strict=True))
    for sent in journal.messages:
        tx = txs[sent.txid]
        assert tx.revision >= sent.revision, (sent, tx.revision)
        if tx.revision == sent.revision:
            assert tx.phase == sent.phase, (sent, tx.phase)
        found = [m for m in tx.messages if m.revision == sent.revision]
        assert len(found) == 1, (sent, tx.messages)
        m = found[0]
        assert (m.sender, m.action, m.post_phase) == (sent.sender, sent.action,
                                                               sent.phase), (sent, m)
    for placed in journal.bids:
        if placed.txid is not None:
            tx = txs[placed.txid]
            assert placed.bid_id in (tx.buy_bid, tx.sell_bid), (placed, tx)
    for d in journal.deposits.values():
        if d.acked:
            got = await observer.get(f"/api/v1/deposits/{d.uid}")
            assert (got["account"], got["amount"]) == (d.account, d.amount), (d, got)


def check_message_chain(tx: Transaction) -> None:
    """Messages number the revisions 1..n and chain the phases to the current one."""
    msgs = tx.messages
    assert [m.revision for m in msgs] == list(range(1, len(msgs) + 1)), tx
    assert tx.revision == len(msgs), tx
    phase = "ESTABLISHING"
    for m in msgs:
        assert m.pre_phase == phase, (tx.id, msgs)
        phase = m.post_phase
    assert phase == tx.phase, tx
    timeouts = [m for m in msgs if m.action == "timeout"]
    assert all(m.sender == "exchange" for m in timeouts), msgs
    assert len(timeouts) <= 1, msgs


async def wait_until_settled(observer: ExchangeClient, txids: set[int], bid_ids: set[int]
                             ) -> tuple[dict[int, Transaction], dict[int, Bid]]:
    """Poll until every transaction is terminal and no bid is placed, within SETTLE_LIMIT."""
    txs: dict[int, Transaction] = {}
    bids: dict[int, Bid] = {}
    pending_tx, pending_bids = set(txids), set(bid_ids)
    limit = time.monotonic() + SETTLE_LIMIT
    while True:
        for tx in await gather_limited([observer.transaction(t) for t in sorted(pending_tx)]):
            txs[tx.id] = tx
            if tx.phase in TERMINAL:
                pending_tx.discard(tx.id)
        for bid in await gather_limited([observer.bid(b) for b in sorted(pending_bids)]):
            bids[bid.id] = bid
            if bid.state != "placed":
                pending_bids.discard(bid.id)
        if not pending_tx and not pending_bids:
            return txs, bids
        if time.monotonic() > limit:
            stuck = [(t, txs[t].phase, txs[t].timeout) for t in sorted(pending_tx)]
            raise AssertionError(f"still open after {SETTLE_LIMIT} s (now {time.time():.2f}): "
                                 f"transactions {stuck}, bids {sorted(pending_bids)}")
        await asyncio.sleep(0.25)


def check_database(path: os.PathLike[str], participants: dict[str, Trader]) -> None:
    """Open the stopped server's SQLite file directly."""
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        bad = conn.execute(
            "SELECT id FROM movements"
            " WHERE available_delta + blocked_delta + fee_delta + world_delta != 0"
        ).fetchall()
        assert bad == [], f"movements that do not sum to zero: {bad}"
        assert conn.execute("SELECT COUNT(*) FROM bids WHERE state = 'placed'").fetchone() == (0,)
        assert conn.execute(
            "SELECT COUNT(*) FROM transactions WHERE timeout IS NOT NULL OR retired IS NULL"
        ).fetchone() == (0,)
        # Every balance is the sum of its movements.
        for address, available, blocked in conn.execute(
            "SELECT address, available, blocked FROM accounts"
        ).fetchall():
            (a,) = conn.execute("SELECT COALESCE(SUM(available_delta), 0) FROM movements"
                                " WHERE available_account = ?", (address,)).fetchone()
            (b,) = conn.execute("SELECT COALESCE(SUM(blocked_delta), 0) FROM movements"
                                " WHERE blocked_account = ?", (address,)).fetchone()
            assert (available, blocked) == (a, b), address
            assert available >= 0 and blocked >= 0, address
        moving = {r[0] for r in conn.execute(
            "SELECT available_account FROM movements UNION SELECT blocked_account FROM movements"
        ) if r[0] is not None}
        assert moving <= set(participants), moving - set(participants)
        # Exactly one settlement per retired transaction, of the kind its outcome needs.
        for txid, phase in conn.execute("SELECT id, phase FROM transactions").fetchall():
            kinds = [r[0] for r in conn.execute(
                "SELECT kind FROM movements WHERE txid = ? AND kind IN ('settle', 'refund')",
                (txid,))]
            assert kinds == (["settle"] if phase == "FINISHED" else ["refund"]), (txid, phase)
        # A buy bid blocks once; an unmatched one (expired/cancelled) is released once.
        for bid_id, side, state in conn.execute("SELECT id, type, state FROM bids").fetchall():
            kinds = sorted(r[0] for r in conn.execute(
                "SELECT kind FROM movements WHERE bid_id = ?", (bid_id,)))
            want = [] if side == "sell" else ["bid"] if state == "matched" else [
                "bid", "bid_release"]
            assert kinds == want, (bid_id, side, state, kinds)
        (deposits,) = conn.execute("SELECT COALESCE(SUM(amount), 0) FROM deposits").fetchone()
        (world,) = conn.execute("SELECT COALESCE(SUM(world_delta), 0) FROM movements").fetchone()
        assert world == -deposits
    finally:
        conn.close()


# -- the test -------------------------------------------------------------------------------

@pytest.mark.slow
async def test_sigkill_under_load_keeps_every_acknowledged_write(
    server_factory: Callable[..., ServerProcess],
) -> None:
    # Deadlines must fire exactly when stored, across the restart: without the shift by the
    # downtime (that shift is checked by test_soak.py).
    server = server_factory(extra_args=("--no-deadline-shift",)).start()
    async with asyncio.timeout(90):
        await _scenario(server)


async def _scenario(server: ServerProcess) -> None:
    seed = int.from_bytes(os.urandom(4), "big")
    rng = random.Random(seed)
    journal = Journal()
    channel: dict[int, dict[str, str]] = {}
    url = server.url
    buyers = [Trader(f"buyer{i}", "buy", url, journal, channel, rng) for i in range(N_BUYERS)]
    sellers = [Trader(f"seller{i}", "sell", url, journal, channel, rng) for i in range(N_SELLERS)]
    probe_buyer = Trader("probe-buyer", "buy", url, journal, channel, rng)
    probe_seller = Trader("probe-seller", "sell", url, journal, channel, rng)
    traders = [*buyers, *sellers, probe_buyer, probe_seller]
    participants = {t.address: t for t in traders}
    operator = ExchangeClient(url, server.operator_key, timeout=5.0)
    observer = ExchangeClient(url, timeout=10.0)

    async with contextlib.AsyncExitStack() as stack:
        for c in (operator, observer, *(t.client for t in traders)):
            stack.push_async_callback(c.close)

        # Fund the buyers (must all be acknowledged: the server is up and idle).
        for t in [*buyers, probe_buyer]:
            assert await credit(operator, journal, t.address, FUNDS) is not None, journal.errors
        for t in traders:
            await t.client.exchange_id()

        # Load; the SIGKILL lands while the traders' requests are in flight.
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        kill_at = loop.time() + LOAD_BEFORE_KILL
        runners = [asyncio.create_task(t.run(stop)) for t in [*buyers, *sellers]]
        runners.append(asyncio.create_task(operator_loop(operator, journal, buyers, rng, stop)))
        probe_task = asyncio.create_task(run_probes(probe_buyer, probe_seller, journal, kill_at))
        await asyncio.sleep(kill_at - loop.time())
        # A rush of bids from every trader; once the first is answered the server is busy
        # with the rest (one trader's signed requests queue behind each other): kill it.
        busy = asyncio.Event()
        for t in [*buyers, *sellers]:
            for _ in range(RUSH):
                t.spawn(t.bid_cycle(stop, on_ack=busy.set))
        await asyncio.wait_for(busy.wait(), 5)
        before_kill = journal.snapshot()
        journal.killed_at = time.monotonic()
        server.kill()
        t_killed = time.time()
        probes = await probe_task  # finished 1 s before the kill
        assert probes.resting is not None
        await asyncio.sleep(DOWNTIME)
        t_spawn = time.time()
        await server.restart_async()
        t_ready = time.time()

        # Everything acknowledged before the kill survived (checked while the load resumes),
        # and the order book was rebuilt: a crossing buy trades with the pre-crash sell at
        # the resting bid's price.
        await check_acknowledged(observer, before_kill)
        crossing = await probe_buyer.client.place_bid("buy", PROBE_BOOK, 800)
        journal.bid(crossing)
        assert crossing.state == "matched", (crossing, probes.resting)
        crossed = await observer.transaction(crossing.txid)
        assert (crossed.sell_bid, crossed.price) == (probes.resting.id, 700), crossed
        await asyncio.sleep(max(0.0, t_ready + LOAD_AFTER_RESTART - time.time()))
        stop.set()
        await asyncio.wait_for(asyncio.gather(*runners), 10)
        children = {task for t in traders for task in t.tasks}
        await asyncio.wait_for(asyncio.gather(*children), 10)
        t_stopped = time.time()

        # Wind-down: participants come back for what has no short deadline (WORKING lasts
        # 15-45 s, UNVERIFIED 45 s, a dispute waits for the operator); ESTABLISHING and
        # TRANSMITTING are left to their deadlines, placed bids to their lifetime.
        all_bids: dict[int, Bid] = {}
        for t in traders:
            listed = await observer.bids(t.address, limit=200)
            assert len(listed) < 200, "page full: raise the limit or paginate"
            all_bids.update((b.id, b) for b in listed)
        txids = {b.txid for b in all_bids.values() if b.txid is not None}
        left_open: dict[int, Transaction] = {}
        exchange_id = await observer.exchange_id()
        for n, txid in enumerate(sorted(txids)):
            tx = await observer.transaction(txid)
            if tx.phase in ("ESTABLISHING", "TRANSMITTING"):
                left_open[txid] = tx
            else:
                await _finish_by_hand(journal, n, tx, participants, operator, exchange_id)

        txs, bids = await wait_until_settled(observer, txids, set(all_bids))
        t_settled = time.time()

        # 1. Durability: every acknowledgement, before and after the crash.
        await check_acknowledged(observer, journal)
        assert {b.bid_id for b in journal.bids} <= set(bids)

        # 2. Deadlines fired, also across the restart, and not late.
        check_deadlines(txs, bids, left_open, probes, (t_killed, t_spawn, t_ready))

        # 3. Money: deposits that exist are exactly the acknowledged ones plus those whose
        # acknowledgement the crash swallowed; balances follow from the outcomes.
        await check_money(observer, journal, txs, participants)

        # 4. The load was real, the crash hit it, and nothing failed unexpectedly.
        refusals = journal.refusals()
        phases = Counter(tx.phase for tx in txs.values())
        acked_revisions = {(m.txid, m.revision) for m in journal.messages}
        lost_acks = len(set(bids) - {b.bid_id for b in journal.bids}) + sum(
            1 for tx in txs.values() for m in tx.messages
            if m.sender != "exchange" and (tx.id, m.revision) not in acked_revisions)
        transport = {k: n for k, n in journal.errors.items() if k.startswith("transport:")}
        summary = (f"seed={seed} bids={len(bids)} txs={len(txs)} {dict(phases)} "
                   f"acked: bids={len(journal.bids)} messages={len(journal.messages)} "
                   f"(before kill {len(before_kill.bids)}/{len(before_kill.messages)}) "
                   f"deposits={sum(d.acked for d in journal.deposits.values())}/"
                   f"{len(journal.deposits)} transport errors={journal.transport_errors()} "
                   f"{transport} cut in flight={journal.cut} "
                   f"committed without ack={lost_acks} refusals={dict(refusals)} "
                   f"left open={len(left_open)} restart took {t_ready - t_spawn:.2f} s, "
                   f"settled {t_settled - t_stopped:.1f} s after the load stopped")
        print(summary)
        assert set(refusals) <= EXPECTED_REFUSALS, summary
        assert len(txs) >= 20 and len(before_kill.messages) >= 40, summary
        assert journal.cut > 0, f"no request was in flight at the SIGKILL: {summary}"
        assert phases["FINISHED"] and phases["EXPIRED"], summary

    # 5. The file itself, after a clean stop.
    server.stop()
    assert not any(pid_alive(pid) for pid in server.pids), server.pids
    check_database(server.db_path, participants)


async def _finish_by_hand(journal: Journal, n: int, tx: Transaction,
                          participants: dict[str, Trader], operator: ExchangeClient,
                          exchange_id: str) -> None:
    """Wind-down of one transaction that has no short deadline: the seller rejects or
    delivers (and the buyer accepts), the buyer accepts, the operator resolves a dispute
    (alternating by ``n``)."""
    buyer, seller = participants[tx.buyer], participants[tx.seller]
    if tx.phase == "WORKING" and n % 2:
        await _send(journal, seller, tx, "reject", reason="gave up")
    elif tx.phase == "WORKING":
        enc = hashlib.sha256(secrets.token_bytes(16)).hexdigest()
        view = await _send(journal, seller, tx, "result", encresulthash=enc,
                           receipt=trade_receipt(buyer.key, exchange_id, tx, enc),
                           resultkey=secrets.token_hex(WRAPPED_KEY_SIZE))
        if view is not None:
            await _send(journal, buyer, view, "accept")
    elif tx.phase == "UNVERIFIED":
        await _send(journal, buyer, tx, "accept")
    elif tx.phase == "RESULT_DISPUTED":
        outcome = "seller" if n % 2 else "buyer"
        view = await attempt(journal, operator.send_message(
            tx.id, "resolve", revision=tx.revision, outcome=outcome))
        if view is not None:
            journal.message(operator.address, "resolve", view)


def check_deadlines(txs: dict[int, Transaction], bids: dict[int, Bid],
                    left_open: dict[int, Transaction], probes: Probes,
                    times: tuple[float, float, float]) -> None:
    """Deadlines fired, also across the restart, and not late. ``times``: the wall-clock
    moments of the kill, the restart's spawn and the server being ready again."""
    t_killed, t_spawn, t_ready = times
    for tx in txs.values():
        check_message_chain(tx)
    for txid, opened in left_open.items():
        tx = txs[txid]
        last = tx.messages[-1]
        assert (tx.phase, last.action) == ("EXPIRED", "timeout"), tx
        deadline = opened.timeout
        assert deadline <= last.time <= max(deadline, t_ready) + SLACK, (tx, t_ready)
    for bid in bids.values():
        assert bid.state in ("matched", "expired", "cancelled"), bid
        if bid.state == "expired":
            assert bid.expires <= bid.closed <= max(bid.expires, t_ready) + SLACK, (
                bid, t_ready)
    assert probes.lonely_bid is not None
    assert probes.dead_tx is not None and probes.late_tx is not None
    lonely = bids[probes.lonely_bid.id]
    assert t_killed < lonely.expires < t_spawn, (lonely, t_killed, t_spawn)
    assert lonely.state == "expired" and t_killed < lonely.closed <= t_ready + SLACK
    dead = txs[probes.dead_tx.id]
    assert t_killed < probes.dead_tx.timeout < t_spawn, (dead, t_killed, t_spawn)
    assert dead.phase == "EXPIRED" and dead.messages[-1].action == "timeout"
    assert t_killed < dead.messages[-1].time <= t_ready + SLACK, dead
    late = txs[probes.late_tx.id]
    deadline = probes.late_tx.timeout
    assert t_ready < deadline, (probes.late_tx, t_ready)
    assert late.phase == "EXPIRED" and late.messages[-1].action == "timeout", late
    assert deadline <= late.messages[-1].time <= deadline + SLACK, late


async def check_money(observer: ExchangeClient, journal: Journal,
                      txs: dict[int, Transaction], participants: dict[str, Trader]) -> None:
    """Deposits that exist are exactly the acknowledged ones plus those whose
    acknowledgement the crash swallowed; balances follow from the outcomes."""
    deposited: Counter[str] = Counter()
    for d in journal.deposits.values():
        try:
            got = await observer.get(f"/api/v1/deposits/{d.uid}")
        except NotFound:
            assert not d.acked, d
            continue
        assert (got["account"], got["amount"]) == (d.account, d.amount), got
        deposited[d.account] += d.amount
    info = await observer.info()
    totals = info["totals"]
    assert totals["deposits"] == sum(deposited.values()), (totals, deposited)
    assert totals["available"] + totals["blocked"] + totals["fees"] == totals["deposits"]
    assert totals["world"] == -totals["deposits"]
    assert totals["blocked"] == 0, totals
    finished = [tx for tx in txs.values() if tx.phase == "FINISHED"]
    assert totals["fees"] == sum(tx.fee for tx in finished)
    expected: Counter[str] = Counter(deposited)
    for tx in finished:
        expected[tx.buyer] -= tx.price + tx.fee
        expected[tx.seller] += tx.price
    held = 0
    for address, t in participants.items():
        acct = await observer.account(address)
        assert acct.available >= 0 and acct.blocked == 0, (t.name, acct)
        assert acct.available == expected[address], (t.name, acct, expected[address])
        held += acct.available + acct.blocked
    assert held + totals["fees"] == totals["deposits"]


async def _send(journal: Journal, trader: Trader, tx: Transaction, action: str,
                **fields: Any) -> Transaction | None:
    view = await attempt(journal, trader.client.send_message(
        tx.id, action, revision=tx.revision, **fields))
    if view is not None:
        journal.message(trader.address, action, view)
    return view

