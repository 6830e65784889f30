"""The seller's side of trading: sell bids per free slot, the worker endpoint, the work.

A slot is a unit of capacity (a set of cores, or a GPU). While free it keeps one sell bid
per cost class it accepts; the first to match takes the slot and the others are cancelled.
The buyer pushes the job to the endpoint (manifest, then only the chunks this seller lacks),
the seller publishes SHA256 of the buyer secret (proving receipt without revealing it),
renders, returns the result sealed with a one-time key, and publishes that key — sealed to
the buyer over the trade's ECDH channel — only against the buyer's signed receipt, which
names this exchange, transaction and seller (docs/protocol-security.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import tempfile
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..cas import ChunkReceiver, ChunkRef, ChunkStore, JobManifest, encode_wanted, seal
from ..cas.sealing import ciphertext_hash
from ..client import ExchangeClient, backoff, describe
from ..errors import BitwrkError
from ..keys import PrivateKey, verify_message
from ..protocol import receipt_document, secret_proof, work_secret_hash
from ..wire import Bid, BidState, BidType, Phase, TradeState, Transaction
from .events import Event, SellerUnit
from .jobdirs import JobDirs
from .journal import Journal
from .peer import Channel
from .relay import Reach
from .watch import EventWatcher

log = logging.getLogger("bitwrk.seller")
SLACK = 5.0  # seconds beyond an exchange deadline before giving up locally
HISTORY = 50  # recent units and errors kept for the status page
PATIENCE = 15.0  # seconds a buyer may stay silent on its turn (exchange reachable) before
# it is taken as gone and the slot bids again: a vanished buyer frees its seller. Longer than
# the buyer's patience with sellers (8 s): a loaded buyer may take seconds to push its job.


class Executor(Protocol):
    """Does the work of one job: the files are assembled in ``workdir``; ``owner`` is the
    buyer (a worker may keep serving one buyer's files, never another's)."""

    async def execute(self, manifest: JobManifest, workdir: Path, slot: int,
                      owner: str | None = None) -> bytes: ...


@dataclass(frozen=True)
class Offer:
    articles: tuple[str, ...]  # one per accepted cost class
    min_price: int
    slots: int = 1
    error_backoff: float = 20.0  # a slot whose unit failed rests this long before bidding


@dataclass
class SellTrade:
    txid: int
    buyer: str
    price: int
    deadline: float
    manifest: JobManifest | None = None
    wanted: list[ChunkRef] = field(default_factory=list)
    secretproof: str | None = None  # SHA256(buyer secret), what the exchange checks
    channel: Channel | None = None  # end-to-end keys with the buyer, once it spoke
    bytes_received: int = 0
    manifest_ready: asyncio.Event = field(default_factory=asyncio.Event)
    work_ready: asyncio.Event = field(default_factory=asyncio.Event)
    result_ready: asyncio.Event = field(default_factory=asyncio.Event)
    receipt_ready: asyncio.Event = field(default_factory=asyncio.Event)
    ciphertext: bytes | None = None
    receipt: tuple[str, str] | None = None
    failure: str | None = None
    pins: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    stage: str = "establishing"  # for the status page: establishing … publishing result
    started: float = field(default_factory=time.time)


class SellerAgent:
    """The selling side of one daemon: owns the sell bids, the trades they match and the
    render slots that serve them.

    Each slot loops: bid for the offer's articles, announce the worker endpoint, take the
    buyer's manifest and chunks (the endpoint app calls ``accept_manifest``/``receiver``),
    render through ``executor``, seal and publish the result, then wait to be paid.
    ``selling`` is set while it takes new work (cleared = paused); ``status()`` feeds the
    seller's status page.
    """

    def __init__(self, client: ExchangeClient, watcher: EventWatcher, journal: Journal,
                 store: ChunkStore, executor: Executor, offer: Offer, endpoint_url: str,
                 post: Callable[[Event], None], workroot: Path | None = None) -> None:
        self.client = client
        self.watcher = watcher
        self.journal = journal
        self.store = store
        self.executor = executor
        self.offer = offer
        self.endpoint_url = endpoint_url.rstrip("/")
        self._forward = post
        self.post: Callable[[Event], None] = self._posted
        self.workroot = workroot or Path(tempfile.gettempdir())
        self.jobdirs = JobDirs(self.workroot / "jobs")
        self.trades: dict[int, SellTrade] = {}
        self.open_bids: set[int] = set()
        self.selling = asyncio.Event()  # set: taking new work; cleared: paused
        self.selling.set()
        self.stopping = False
        self._stop = asyncio.Event()
        self.slot_state: dict[int, str] = {}
        self.slot_trade: dict[int, int] = {}  # slot -> txid it works on
        self.recent_units: deque[tuple[float, SellerUnit]] = deque(maxlen=HISTORY)
        self.errors: deque[tuple[float, str]] = deque(maxlen=HISTORY)
        self.earned = 0  # satoshi paid to this seller since it started
        self._tasks: list[asyncio.Task[None]] = []
        self._waiters: set[asyncio.Task[None]] = set()
        self._lifetime: float | None = None
        self.reach = Reach("direct", self.endpoint_url)  # the daemon sets how buyers reach us

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        await self._unwind_after_restart()
        for slot in range(self.offer.slots):
            self._tasks.append(asyncio.create_task(self._slot_loop(slot)))

    async def stop(self, grace: float = 30.0) -> None:
        """Stop bidding, cancel open bids, let current units finish (or reject them)."""
        self.stopping = True
        self._stop.set()
        await self._cancel_bids(set(self.open_bids))
        # A unit being rendered (or delivered) gets ``grace`` to finish; a slot that is only
        # waiting — for a match, or for a buyer to send its work — stops now.
        for slot, task in enumerate(self._tasks):
            trade = self.trades.get(self.slot_trade.get(slot, -1))
            if trade is None or trade.stage not in ("rendering", "awaiting receipt",
                                                    "publishing result"):
                task.cancel()
        pending: set[asyncio.Task[None]] = set()
        if self._tasks:
            pending = (await asyncio.wait(self._tasks, timeout=grace))[1]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for trade in list(self.trades.values()):
            if trade.ciphertext is None:
                await self._reject(trade, "seller shut down")

    async def _unwind_after_restart(self) -> None:
        """Trades a previous run left open cannot resume their render: reject them cleanly
        (the buyer is refunded and re-trades the unit)."""
        for row in self.journal.open_trades("seller"):
            with contextlib.suppress(BitwrkError):
                tx = await self.client.transaction(row["txid"])
                if tx.phase in (Phase.TRANSMITTING, Phase.WORKING):
                    await self.client.send_message(row["txid"], "reject",
                                                   reason="seller restarted")
            self.journal.save_trade(row["txid"], "seller", TradeState.CLOSED)

    # -- bidding --------------------------------------------------------------------------

    async def _slot_loop(self, slot: int) -> None:
        """Bid, serve, repeat until told to stop. Nothing else ends it: a failed round is
        logged, shown on the status page and retried after a capped, jittered backoff
        (the client itself already rides out exchange outages)."""
        failures = 0
        while not self.stopping:
            self.slot_state[slot] = "paused" if not self.selling.is_set() else "bidding"
            while not self.selling.is_set() and not self.stopping:
                await self._rest(1.0)
            if self.stopping:
                break
            try:
                txids = await self._bid_round(await self._bid_lifetime())
            except Exception as exc:  # a seller stops only when told to
                self._slot_error(slot, f"bidding failed: {describe(exc)}", exc)
                self.slot_state[slot] = self.client.outage() or "retrying after an error"
                await self._rest(backoff(failures, base=1.0, cap=10.0))
                failures += 1
                continue
            failures = 0
            for txid in txids:
                if not await self._serve(slot, txid):
                    self.slot_state[slot] = "resting after an error"
                    await self._rest(self.offer.error_backoff)

    def _slot_error(self, slot: int, text: str, exc: Exception) -> None:
        expected = isinstance(exc, BitwrkError | OSError | TimeoutError)
        (log.warning if expected else log.exception)("slot %d: %s", slot, text)
        self.errors.append((time.time(), f"slot {slot}: {text}"))

    async def _bid_lifetime(self) -> float:
        if self._lifetime is None:
            self._lifetime = float((await self.client.info())["bid_lifetime"])
        return self._lifetime

    async def _rest(self, seconds: float) -> None:
        """Sleep, but wake at once when the seller stops."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)

    async def _bid_round(self, lifetime: float) -> list[int]:
        """Place one sell bid per article; wait until one matches (or all expire)."""
        bids = [await self.client.place_bid(BidType.SELL, a, self.offer.min_price)
                for a in self.offer.articles]
        ids = {b.id for b in bids}
        self.open_bids |= ids
        waits = {asyncio.create_task(self.watcher.wait(
            Bid, b.id, lambda x: x.state != BidState.PLACED, lifetime + SLACK))
            for b in bids}
        try:
            pending = (await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED))[1]
            for task in pending:
                task.cancel()
            await self._cancel_bids(ids)
        finally:
            self.open_bids -= ids
        matched = []
        for bid_id in sorted(ids):
            with contextlib.suppress(BitwrkError):
                bid = await self.client.bid(bid_id)
                if bid.state == BidState.MATCHED and bid.txid is not None:
                    matched.append(bid.txid)
        return matched

    async def cancel_open_bids(self) -> None:
        await self._cancel_bids(set(self.open_bids))

    async def _cancel_bids(self, ids: set[int]) -> None:
        for bid_id in ids:
            with contextlib.suppress(BitwrkError):  # already matched or expired: fine
                await self.client.cancel_bid(bid_id)

    # -- one trade ------------------------------------------------------------------------

    async def _serve(self, slot: int, txid: int) -> bool:
        tx = await self.client.transaction(txid)
        trade = SellTrade(txid, tx.buyer, tx.price, tx.timeout or time.time())
        self.trades[txid] = trade
        self.journal.save_trade(txid, "seller", TradeState.OPEN)
        self.slot_state[slot] = f"trading {txid}"
        self.slot_trade[slot] = txid
        self.post(SellerUnit(txid, trade.buyer, "started", trade.price))
        started = time.monotonic()
        try:
            await self._work(slot, trade)
            self.post(SellerUnit(txid, trade.buyer, "rendered", trade.price,
                                 seconds=time.monotonic() - started))
            waiter = asyncio.create_task(self._await_payment(trade))
            self._waiters.add(waiter)
            waiter.add_done_callback(self._waiters.discard)
            return True
        except Exception as exc:  # one failed trade never ends the seller
            why = f"{describe(exc)} (while {trade.stage})"
            (log.warning if isinstance(exc, BitwrkError | TimeoutError | OSError)
             else log.exception)("trade %d failed: %s", txid, why)
            trade.failure = why
            trade.result_ready.set()
            await self._reject(trade, why)
            self.post(SellerUnit(txid, trade.buyer, "failed", trade.price, detail=why))
            # Only a failure of our own work makes the slot rest; a buyer that vanished or
            # an exchange outage is no reason to stop offering.
            return trade.stage not in ("rendering", "awaiting receipt")
        finally:
            trade.pins.close()
            self.slot_state[slot] = "idle"
            self.slot_trade.pop(slot, None)

    async def _work(self, slot: int, trade: SellTrade) -> None:
        await self.reach.ready(PATIENCE)  # a tunnel reconnecting: give it a moment
        await self.client.send_message(trade.txid, "endpoint",
                                       workerurl=f"{self.endpoint_url}/tx/{trade.txid}")
        tx = await self.watcher.wait_for_party(trade.txid, Phase.ESTABLISHING, PATIENCE,
                                               f"buyer {trade.buyer}")
        if tx.phase != Phase.TRANSMITTING:
            raise BitwrkError(f"transaction ended in {tx.phase}")
        trade.stage = "receiving work"
        await self._await_work(trade, _deadline(tx))
        assert trade.manifest is not None and trade.secretproof is not None
        assert trade.channel is not None
        limit = getattr(self.executor, "job_bytes_limit", lambda m: None)(trade.manifest)
        self.jobdirs.check(trade.manifest, limit)  # before anything is written
        tx = await self.client.send_message(trade.txid, "received",
                                            secretproof=trade.secretproof)
        trade.stage = "rendering"
        async with self.jobdirs.use(trade.manifest, self.store, limit) as workdir:
            async with asyncio.timeout(_until(_deadline(tx))):
                result = await self.executor.execute(trade.manifest, workdir, slot,
                                                     owner=trade.buyer)
        key, trade.ciphertext = seal(result)
        trade.result_ready.set()
        trade.stage = "awaiting receipt"
        async with asyncio.timeout(_until(_deadline(tx))):
            await trade.receipt_ready.wait()
        assert trade.receipt is not None
        enc, receipt = trade.receipt
        trade.stage = "publishing result"
        await self.client.send_message(trade.txid, "result", encresulthash=enc,
                                       receipt=receipt,
                                       resultkey=trade.channel.wrap_result_key(key))

    async def _await_work(self, trade: SellTrade, deadline: float) -> None:
        """The buyer's manifest within PATIENCE seconds of reachable exchange (it learns of
        TRANSMITTING from there), then its chunks by the transaction's deadline."""
        waited = 0.0
        while trade.manifest is None:
            if waited >= PATIENCE:
                raise BitwrkError(f"the buyer sent no work within {PATIENCE:.0f} s: gone")
            if time.time() > deadline + SLACK:
                raise TimeoutError("the buyer sent no work before the deadline")
            with contextlib.suppress(TimeoutError):  # the endpoint sets it: no polling delay
                await asyncio.wait_for(trade.manifest_ready.wait(), 0.25)
            if trade.manifest is None and self.watcher.connected.is_set() \
                    and self.client.unreachable_since is None:
                waited += 0.25
        async with asyncio.timeout(_until(deadline)):
            await trade.work_ready.wait()

    async def _await_payment(self, trade: SellTrade) -> None:
        """Report the payment once the buyer accepts (or review time passes)."""
        try:
            tx = await self.watcher.wait(Transaction, trade.txid,
                                         lambda t: t.retired is not None, 3600)
            paid = tx.phase == Phase.FINISHED
            self.post(SellerUnit(trade.txid, trade.buyer, "paid" if paid else "failed",
                                 trade.price if paid else 0, detail=tx.phase))
        except (BitwrkError, TimeoutError) as exc:
            log.info("trade %d: no settlement seen: %s", trade.txid, exc)
        finally:
            self.journal.save_trade(trade.txid, "seller", TradeState.CLOSED)
            self.trades.pop(trade.txid, None)

    async def _reject(self, trade: SellTrade, reason: str) -> None:
        with contextlib.suppress(BitwrkError):
            tx = await self.client.transaction(trade.txid)
            if tx.phase in (Phase.TRANSMITTING, Phase.WORKING):
                await self.client.send_message(trade.txid, "reject", reason=reason[:400])
        self.journal.save_trade(trade.txid, "seller", TradeState.CLOSED)
        self.trades.pop(trade.txid, None)

    # -- called by the endpoint -------------------------------------------------------------

    def trade_for(self, txid: int) -> SellTrade:
        trade = self.trades.get(txid)
        if trade is None:
            raise BitwrkError(f"no open trade {txid} here")
        return trade

    async def accept_manifest(self, trade: SellTrade, sealed: bytes, workhash: str,
                              buyer_public: bytes, exchange: str) -> bytes:
        """Open the buyer's sealed secret ‖ manifest, check both against the trade, and
        answer the chunks still wanted (the caller seals the answer)."""
        channel = Channel.between(self.client_key(), buyer_public, exchange, trade.txid)
        plain = channel.open("manifest", sealed)
        secret, raw = plain[:32], plain[32:]
        tx = await self.client.transaction(trade.txid)
        digest = hashlib.sha256(raw).hexdigest()
        if digest != workhash or digest != tx.workhash:
            raise BitwrkError("manifest does not match the transaction's workhash")
        proof = secret_proof(secret)
        if work_secret_hash(digest, proof) != tx.worksecrethash:
            raise BitwrkError("buyer secret does not match worksecrethash")
        manifest = JobManifest.from_json(raw)
        trade.pins.enter_context(self.store.pin(manifest.chunks()))
        trade.manifest, trade.secretproof, trade.channel = manifest, proof, channel
        trade.wanted = manifest.needed_chunks(self.store)
        trade.manifest_ready.set()
        if not trade.wanted:
            trade.work_ready.set()
        return encode_wanted(trade.wanted)

    def receiver(self, trade: SellTrade) -> ChunkReceiver:
        if trade.manifest is None:
            raise BitwrkError("send the manifest first")
        return ChunkReceiver(self.store, trade.wanted)

    def client_key(self) -> PrivateKey:
        key = self.client.key
        assert key is not None, "a seller signs: its client has a key"
        return key

    def accept_receipt(self, trade: SellTrade, enc: str, receipt: str, exchange: str) -> None:
        if trade.ciphertext is None or enc != ciphertext_hash(trade.ciphertext):
            raise BitwrkError("receipt is not for this result")
        document = receipt_document(exchange=exchange, txid=trade.txid,
                                    seller=self.client_key().address, encresulthash=enc)
        if not verify_message(trade.buyer, receipt, document):
            raise BitwrkError("receipt is not the buyer's signature for this trade")
        trade.receipt = (enc, receipt)
        trade.receipt_ready.set()

    def _posted(self, event: Event) -> None:
        """Keep a bounded history for the status page, then pass the event on."""
        if isinstance(event, SellerUnit):
            self.recent_units.append((time.time(), event))
            if event.stage == "paid":
                self.earned += event.price
            elif event.stage == "failed":
                self.errors.append((time.time(), f"tx {event.txid}: {event.detail}"))
        self._forward(event)

    def status(self) -> dict[str, Any]:
        return {"slots": dict(self.slot_state), "paused": not self.selling.is_set(),
                "trades": sorted(self.trades), "reach": self.reach.view()}


def _until(deadline: float) -> float:
    return max(1.0, deadline - time.time() + SLACK)


def _deadline(tx: Transaction) -> float:
    if tx.timeout is None:  # every phase a seller works in has one
        raise BitwrkError(f"transaction {tx.id} in {tx.phase} has no deadline")
    return tx.timeout
