"""The buyer's side of trading: a job's units bought under a mandate.

Each unit gets a buy bid at the mandate's max price; a matched trade is driven phase by
phase from what the exchange says (so a restarted daemon resumes any trade from its
journal); a failed, expired or rejected trade puts the unit back to be bought again
(avoiding that seller), and a unit is marked done — and paid — exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import aiohttp

from ..cas import ChunkStore, JobManifest, ciphertext_hash, decode_wanted, unseal
from ..cas.transfer import stream_chunks
from ..client import ExchangeClient, backoff, describe, raise_for_error
from ..endpoints import check_endpoint_url, check_public_host
from ..errors import BitwrkError, InvalidRequest, WrongPhase
from ..money import fee_for
from ..protocol import (
    NonceSource,
    SellerTerms,
    receipt_document,
    secret_proof,
    work_secret_hash,
)
from ..wire import (
    UNIT_SETTLED,
    Bid,
    BidState,
    BidType,
    JobState,
    Phase,
    TradeState,
    Transaction,
    UnitState,
)
from .events import Event, UnitDone, UnitFailed, UnitProgress
from .journal import Journal, UnitRow
from .lan import LanHub
from .peer import Channel, endpoint_signer_key, sign_peer
from .spotcheck import SpotChecker, dispute_fields
from .watch import EventWatcher

log = logging.getLogger("bitwrk.buyer")
SLACK = 5.0
MAX_ATTEMPTS = 6
PATIENCE = 8.0  # seconds a seller may stay silent on its turn before it is taken as gone
PROBE_EVERY = 2.0  # seconds between looks at the endpoint of a seller we wait for
PROBE_MISSES = 2  # endpoint lookups failing in a row that mean the seller is gone
SHUN_SECONDS = 15.0  # a seller lost in transit is not traded with for this long


class ResultSink(Protocol):
    """Checks and stores a decrypted result; raises to dispute it."""

    def accept(self, job_id: str, unit_id: str, result: bytes) -> Path: ...


EXR_MAGIC = b"\x76\x2f\x31\x01"  # OpenEXR files start with these bytes


@dataclass(frozen=True)
class DirectorySink:
    """Writes each result to ``directory/<unit id><suffix>``; EXR results must look like EXR
    (a seller cannot be paid for garbage that decrypts fine)."""

    directory: Path
    suffix: str = ".exr"

    def accept(self, job_id: str, unit_id: str, result: bytes) -> Path:
        if self.suffix == ".exr" and not result.startswith(EXR_MAGIC):
            raise BitwrkError("result is not an OpenEXR file")
        self.directory.mkdir(parents=True, exist_ok=True)
        target = self.directory / f"{unit_id}{self.suffix}"
        tmp = target.with_suffix(target.suffix + ".part")
        tmp.write_bytes(result)
        tmp.replace(target)
        return target


@dataclass(frozen=True)
class Mandate:
    max_price: int  # per unit, satoshi
    budget: int  # price + fee over the whole job
    valid_until: float  # epoch seconds
    # Share of a known seller's units the buyer re-renders patches of (a seller's units are
    # all checked until one passes); see bitwrk.daemon.spotcheck.
    check_rate: float = 0.2
    # The seller record every bid asks for and the sellers it excludes, signed into the
    # bid: the exchange never matches it with a seller they refuse (docs/buying.md).
    sellers: SellerTerms = field(default_factory=SellerTerms)


class Retry(BitwrkError):
    """This trade failed; buy the unit again (from another seller if ``blame``)."""

    code = "retry"

    def __init__(self, message: str, blame: bool = False) -> None:
        super().__init__(message)
        self.blame = blame


@dataclass
class JobRun:
    job_id: str
    article: str
    mandate: Mandate
    sink: ResultSink
    avoid: set[str] = field(default_factory=set)  # sellers not to trade with again
    shun: dict[str, float] = field(default_factory=dict)  # seller -> monotonic time: not before
    spent: int = 0
    sent: dict[int, int] = field(default_factory=dict)  # bytes pushed per transaction
    check: SpotChecker | None = None  # render jobs: results are checked before accept


class BuyerAgent:
    """The buying side of one daemon: owns every job's units from bid to stored result.

    For each unit it places a buy bid, drives the matched trade phase by phase (work and
    commitment, manifest and chunks to the seller's endpoint, the sealed result, receipt,
    accept or dispute), journals each step so a restart resumes it, and pays for a unit
    exactly once. It shares the daemon's ``client``, ``watcher``, ``journal`` and chunk
    ``store``; ``post`` delivers progress events to the caller's thread.
    """

    def __init__(self, client: ExchangeClient, watcher: EventWatcher, journal: Journal,
                 store: ChunkStore, post: Callable[[Event], None], spool: Path,
                 fee_bps: int, allow_local_sellers: bool = False) -> None:
        self.client = client
        # False: seller endpoints on loopback/private/link-local addresses are refused
        self.allow_local_sellers = allow_local_sellers
        self.watcher = watcher
        self.journal = journal
        self.store = store
        self.post = post
        self.spool = spool
        self.fee_bps = fee_bps
        self.nonces = NonceSource()
        self.cancelled: set[str] = set()
        self.lan: LanHub | None = None
        self._disputers: set[asyncio.Task[None]] = set()

    # -- a job ------------------------------------------------------------------------------

    async def run_job(self, run: JobRun, concurrency: int) -> tuple[int, int]:
        """Buy every pending unit; (done, failed)."""
        limit = asyncio.Semaphore(concurrency)
        units = [u for u in self.journal.units(run.job_id) if u.state not in UNIT_SETTLED]
        manifests = {u.unit_id: JobManifest.from_json(u.payload["manifest"].encode())
                     for u in units}
        with contextlib.ExitStack() as pins:
            for manifest in manifests.values():
                pins.enter_context(self.store.pin(manifest.chunks()))
            await asyncio.gather(*(self._unit(run, u.unit_id, manifests[u.unit_id], limit)
                                   for u in units))
        rows = self.journal.units(run.job_id)
        done = sum(r.state == UnitState.DONE for r in rows)
        return done, sum(r.state == UnitState.FAILED for r in rows)

    async def _unit(self, run: JobRun, unit_id: str, manifest: JobManifest,
                    limit: asyncio.Semaphore) -> None:
        failures = 0  # in a row: each one waits longer before the next try
        while True:
            row = next(u for u in self.journal.units(run.job_id) if u.unit_id == unit_id)
            if row.state in UNIT_SETTLED:
                return
            reason = self._give_up(run, row.attempts)
            if reason and not await self._still_working(row):
                self.journal.update_unit(run.job_id, unit_id, state=UnitState.FAILED, error=reason)
                self.post(UnitFailed(run.job_id, unit_id, reason, final=True))
                return
            if row.state == UnitState.BIDDING and row.bid_id is not None:  # a restart mid-bid
                await self._adopt_bid(run, unit_id, row.bid_id)
                continue
            if row.txid is not None:  # resuming a trade after a restart
                await limit.acquire()
            elif await self._lan_first(run, unit_id, manifest, limit):
                continue  # a LAN worker took it (done, or failed and counted): look again
            try:
                await self._attempt(run, unit_id, manifest, row.txid)
            except Exception as exc:  # any failure puts the unit back; the job goes on
                why = describe(exc)
                expected = isinstance(exc, BitwrkError | aiohttp.ClientError | TimeoutError
                                      | OSError)
                (log.info if expected else log.exception)("unit %s/%s: %s", run.job_id,
                                                          unit_id, why)
                self.journal.update_unit(run.job_id, unit_id, state=UnitState.PENDING, txid=None,
                                         bid_id=None, error=why[:300])
                self.post(UnitFailed(run.job_id, unit_id, why[:300], final=False))
                failures += 1
                if not isinstance(exc, Retry):  # the exchange refused or was unreachable
                    self._count_attempt(run, unit_id, row.attempts)
            else:
                failures = 0
            finally:
                limit.release()
            if failures:
                await asyncio.sleep(backoff(failures - 1, base=0.5, cap=15.0))

    async def _still_working(self, row: UnitRow) -> bool:
        """A unit given up (job cancelled, mandate over) whose trade a seller already works
        on is driven to its end all the same: fetched, checked, paid for work done (never
        left to expire with the money blocked). A trade not started yet is cancelled."""
        if row.state != UnitState.TRADING or row.txid is None:
            return False
        try:
            tx = await self.client.transaction(row.txid)
        except (BitwrkError, aiohttp.ClientError, TimeoutError):
            return False  # the exchange times the trade out and refunds it
        if tx.phase in (Phase.WORKING, Phase.UNVERIFIED):
            return True
        await self._cancel(row.txid)
        return False

    def _count_attempt(self, run: JobRun, unit_id: str, before: int) -> None:
        """An attempt that failed before its bid was placed (no funds, exchange down) still
        counts, so a unit cannot spin forever."""
        row = next(u for u in self.journal.units(run.job_id) if u.unit_id == unit_id)
        if row.attempts == before:
            self.journal.update_unit(run.job_id, unit_id, attempts=before + 1)

    async def _lan_first(self, run: JobRun, unit_id: str, manifest: JobManifest,
                         limit: asyncio.Semaphore) -> bool:
        """Wait for an exchange slot, or for an idle LAN worker — whichever comes first.
        True if the unit went to LAN (the slot is not held); False with the slot held."""
        if self.lan is None:
            await limit.acquire()
            return False
        while True:
            if self.lan.idle() and await self._lan_attempt(run, unit_id, manifest):
                return True
            slot = asyncio.ensure_future(limit.acquire())
            idle = asyncio.ensure_future(self.lan.wait_idle())
            await asyncio.wait({slot, idle}, return_when=asyncio.FIRST_COMPLETED)
            idle.cancel()
            if slot.done():
                if self.lan.idle():  # LAN first, even with a slot free
                    limit.release()
                    continue
                return False
            slot.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await slot
            if slot.done() and not slot.cancelled():
                limit.release()

    async def _lan_attempt(self, run: JobRun, unit_id: str, manifest: JobManifest) -> bool:
        assert self.lan is not None
        assignment = self.lan.offer(run.job_id, unit_id, manifest)
        if assignment is None:
            return False
        row = next(u for u in self.journal.units(run.job_id) if u.unit_id == unit_id)
        self.journal.update_unit(run.job_id, unit_id, attempts=row.attempts + 1)
        self.post(UnitProgress(run.job_id, unit_id, "lan", None, assignment.worker))
        try:
            result = await assignment.result
            stored = run.sink.accept(run.job_id, unit_id, result)
        except (BitwrkError, OSError) as exc:
            self.post(UnitFailed(run.job_id, unit_id, f"LAN: {exc}"[:300], final=False))
            return True
        if self.journal.claim_unit(run.job_id, unit_id, UnitState.PENDING, UnitState.DONE,
                                   result=str(stored), seller=f"lan:{assignment.worker}", price=0):
            self.post(UnitDone(run.job_id, unit_id, str(stored), 0, 0,
                               f"lan:{assignment.worker}", None, 0))
        return True

    async def cancel_job(self, job_id: str) -> None:
        """Stop buying: no new bids; trades not yet working are cancelled (refunded);
        working ones run out (a seller already rendering is not robbed of its deadline)."""
        self.cancelled.add(job_id)
        self.journal.set_job_state(job_id, JobState.CANCELLED)
        for unit in self.journal.units(job_id):
            if unit.state == UnitState.BIDDING and unit.bid_id is not None:
                await self._withdraw_bid(unit.bid_id)
            elif unit.state == UnitState.TRADING and unit.txid is not None:
                await self._cancel(unit.txid)

    async def _withdraw_bid(self, bid_id: int) -> None:
        """Cancel a buy bid; if it matched meanwhile, cancel the trade it made (not started
        yet, so the buyer is refunded)."""
        with contextlib.suppress(BitwrkError, aiohttp.ClientError, TimeoutError):
            try:
                await self.client.cancel_bid(bid_id)
            except WrongPhase:
                bid = await self.client.bid(bid_id)
                if bid.state == BidState.MATCHED:
                    await self._cancel(_txid_of(bid))

    async def withdraw_orphans(self) -> None:
        """After a restart: buy bids the journal never learned of (the daemon stopped while
        placing them) are cancelled, and so are trades they made that have not started, so
        no money stays blocked for work nobody will send. One daemon per identity."""
        known_bids, known_txs = self.journal.known_ids()
        with contextlib.suppress(BitwrkError, aiohttp.ClientError):
            for bid in await self.client.bids(limit=200):
                if bid.type != BidType.BUY or bid.id in known_bids:
                    continue
                if bid.state == BidState.PLACED:
                    with contextlib.suppress(BitwrkError):
                        await self.client.cancel_bid(bid.id)
                elif bid.state == BidState.MATCHED and bid.txid not in known_txs:
                    await self._cancel(_txid_of(bid))

    async def settle_leftovers(self) -> None:
        """After a restart: a unit marked done whose trade still waits for our ``accept``
        gets it now (the seller delivered; it is paid once, on time)."""
        for row in self.journal.open_trades("buyer"):
            units = self.journal.units(row["job_id"]) if row["job_id"] else []
            unit = next((u for u in units if u.unit_id == row["unit_id"]), None)
            if unit is None or unit.state != UnitState.DONE or unit.txid != row["txid"]:
                continue
            with contextlib.suppress(BitwrkError, aiohttp.ClientError):
                tx = await self.client.transaction(row["txid"])
                if tx.phase == Phase.UNVERIFIED:
                    await self.client.send_message(row["txid"], "accept")
                self.journal.save_trade(row["txid"], "buyer", TradeState.CLOSED)

    async def _adopt_bid(self, run: JobRun, unit_id: str, bid_id: int) -> None:
        """A bid placed before a restart: take over its trade, or withdraw it."""
        price = run.mandate.max_price
        reserve = price + fee_for(price, self.fee_bps)
        with contextlib.suppress(BitwrkError):
            await self.client.cancel_bid(bid_id)
        bid = await self.client.bid(bid_id)
        if bid.state == BidState.MATCHED:
            tx = await self.client.transaction(_txid_of(bid))
            self.journal.commit_budget(run.job_id, tx.price + tx.fee - reserve)
            self.journal.update_unit(run.job_id, unit_id, state=UnitState.TRADING, txid=tx.id,
                                     seller=tx.seller, price=tx.price)
        else:
            self.journal.commit_budget(run.job_id, -reserve)
            self.journal.update_unit(run.job_id, unit_id, state=UnitState.PENDING, bid_id=None)

    def _give_up(self, run: JobRun, attempts: int) -> str | None:
        if run.job_id in self.cancelled:
            return "job cancelled"
        if attempts >= MAX_ATTEMPTS:
            return f"gave up after {attempts} attempts"
        if time.time() > run.mandate.valid_until:
            return "mandate expired"
        return None

    async def _attempt(self, run: JobRun, unit_id: str, manifest: JobManifest,
                       txid: int | None) -> None:
        if txid is None:
            txid = await self._buy(run, unit_id)
        await self._drive(run, unit_id, manifest, txid)

    async def _buy(self, run: JobRun, unit_id: str) -> int:
        price = run.mandate.max_price
        reserve = price + fee_for(price, self.fee_bps)
        if not self.journal.commit_budget(run.job_id, reserve):
            raise BitwrkError("budget used up")
        row = next(u for u in self.journal.units(run.job_id) if u.unit_id == unit_id)
        try:
            bid = await self.client.place_bid(BidType.BUY, run.article, price,
                                              run.mandate.sellers)
        except BaseException:
            self.journal.commit_budget(run.job_id, -reserve)
            raise
        self.journal.update_unit(run.job_id, unit_id, state=UnitState.BIDDING, bid_id=bid.id,
                                 attempts=row.attempts + 1)
        self.post(UnitProgress(run.job_id, unit_id, "bidding"))
        lifetime = bid.expires - bid.created
        try:
            bid = await self.watcher.wait(Bid, bid.id, lambda b: b.state != BidState.PLACED,
                                          lifetime + SLACK)
        except BaseException:  # giving up (stop, Ctrl-C, an error): leave no bid behind
            await self._withdraw_bid(bid.id)
            raise
        if bid.state != BidState.MATCHED:
            self.journal.commit_budget(run.job_id, -reserve)
            self.journal.update_unit(run.job_id, unit_id, attempts=row.attempts)  # no fault
            raise Retry(f"bid {bid.state} without a seller")
        txid = _txid_of(bid)
        tx = await self.client.transaction(txid)
        # the reservation becomes the trade's real cost
        self.journal.commit_budget(run.job_id, tx.price + tx.fee - reserve)
        self.journal.update_unit(run.job_id, unit_id, state=UnitState.TRADING, txid=txid,
                                 seller=tx.seller, price=tx.price)
        shunned = run.shun.get(tx.seller, 0.0) > time.monotonic()
        if tx.seller in run.avoid or shunned:  # not the unit's failure: no attempt counted
            await self._cancel(txid)
            self._refund_budget(run, tx)
            self.journal.update_unit(run.job_id, unit_id, attempts=row.attempts)
            raise Retry(f"matched seller {tx.seller} failed before")
        return txid

    # -- one trade, driven by its phase -------------------------------------------------------

    async def _drive(self, run: JobRun, unit_id: str, manifest: JobManifest, txid: int) -> None:
        tx = await self.client.transaction(txid)
        try:
            while True:
                phase = tx.phase
                self.post(UnitProgress(run.job_id, unit_id, phase.lower(), txid, tx.seller))
                if phase == Phase.ESTABLISHING:
                    if run.check is not None:
                        run.check.expect(tx.id, tx.seller)
                    tx = await self._establish(run, unit_id, manifest, tx)
                elif phase == Phase.TRANSMITTING:
                    tx = await self._transmit(run, manifest, tx)
                elif phase == Phase.WORKING:
                    tx = await self._fetch(tx)
                elif phase == Phase.UNVERIFIED:
                    await self._verify(run, unit_id, tx)
                    return
                else:
                    why = f": {tx.reason}" if tx.reason else ""  # seller's reason
                    raise Retry(f"trade {txid} ended {phase}{why}", blame=True)
        except (Retry, BitwrkError, aiohttp.ClientError, TimeoutError, OSError) as exc:
            # the seller's endpoint failing, timing out or rejecting: try someone else
            seller_fault = isinstance(exc, aiohttp.ClientError | TimeoutError | OSError)
            if isinstance(exc, Retry) and exc.blame:
                run.avoid.add(tx.seller)
            elif seller_fault:
                # Lost in transit: the seller may have died, and may be back in seconds
                # (the cheapest sell bid would otherwise match again and again). Keep away
                # from it a while; a second time, for good.
                if tx.seller in run.shun:
                    run.avoid.add(tx.seller)
                run.shun[tx.seller] = time.monotonic() + SHUN_SECONDS
            # a unit already marked done with this trade was delivered: never dispute it
            done = any(u.unit_id == unit_id and u.state == UnitState.DONE and u.txid == txid
                       for u in self.journal.units(run.job_id))
            await self._abandon(txid, f"buyer gave up: {exc}", dispute=not done)
            self._refund_budget(run, tx)
            raise

    def _refund_budget(self, run: JobRun, tx: Transaction) -> None:
        self.journal.commit_budget(run.job_id, -(tx.price + tx.fee))
        self.journal.save_trade(tx.id, "buyer", TradeState.CLOSED)

    async def _establish(self, run: JobRun, unit_id: str, manifest: JobManifest,
                         tx: Transaction) -> Transaction:
        txid = tx.id
        if tx.workhash is None:
            secret = secrets.token_hex(32)
            workhash = manifest.workhash
            # the seller will prove receipt with SHA256(secret); the secret stays between us
            commitment = work_secret_hash(workhash, secret_proof(bytes.fromhex(secret)))
            # the secret is journalled before it can matter
            self.journal.save_trade(txid, "buyer", TradeState.OPEN, job_id=run.job_id,
                                    unit_id=unit_id, buyersecret=secret, workhash=workhash)
            tx = await self.client.send_message(txid, "work", workhash=workhash,
                                                worksecrethash=commitment)
        try:
            return await self.watcher.wait_for_party(txid, Phase.ESTABLISHING, PATIENCE,
                                                     f"seller {tx.seller}")
        except TimeoutError as exc:  # gone, or busy with another unit: no blame, buy again
            raise Retry(str(exc)) from None

    async def _transmit(self, run: JobRun, manifest: JobManifest,
                        tx: Transaction) -> Transaction:
        txid, url = tx.id, _worker_url(tx)
        trade = self.journal.trade(txid)
        if trade is None or trade["buyersecret"] is None:
            raise Retry("no journalled secret for this trade")
        await self._check_endpoint(url, tx.seller)
        exchange = await self.client.exchange_id()
        key = self.client.key
        assert key is not None
        channel = await self._channel(tx)
        raw = manifest.to_json()
        async with asyncio.timeout(_until(tx)):
            headers = sign_peer(key, self.nonces, exchange, "manifest", txid,
                                workhash=manifest.workhash)
            body = channel.seal("manifest", bytes.fromhex(trade["buyersecret"]) + raw)
            wanted_raw = await self._peer("POST", f"{url}/manifest", headers, body)
            wanted = decode_wanted(channel.open("wanted", wanted_raw), manifest.chunks())
            run.sent[txid] = len(raw)
            if wanted:
                headers = sign_peer(key, self.nonces, exchange, "chunks", txid)
                pieces = channel.seal_stream("chunks", stream_chunks(self.store, wanted))
                await self._peer("POST", f"{url}/chunks", headers, _aiter(pieces))
                run.sent[txid] += sum(ref.size for ref in wanted)
        return await self._while_seller_alive(tx, self.watcher.wait(
            Transaction, txid, lambda t: t.phase != Phase.TRANSMITTING, _until(tx)))

    async def _while_seller_alive(self, tx: Transaction,
                                  waiting: Awaitable[Transaction]) -> Transaction:
        """``waiting``, unless the seller's endpoint stops answering first: a seller that
        died (or lost its network) mid-unit is noticed in seconds, not at the deadline."""
        status = _worker_url(tx).rsplit("/tx/", 1)[0] + "/status"
        task = asyncio.ensure_future(waiting)
        misses = 0
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=PROBE_EVERY)
                if done:
                    return task.result()
                reason = await self._probe(status)
                misses = misses + 1 if reason else 0
                if misses >= PROBE_MISSES:
                    raise ConnectionError(f"seller {tx.seller} unreachable: {reason}")
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _probe(self, url: str) -> str | None:
        """Why the endpoint at ``url`` cannot be reached, or None if it answers."""
        try:
            async with self.client.session.get(
                url, timeout=aiohttp.ClientTimeout(total=PROBE_EVERY * 2)) as resp:
                await resp.read()
            return None
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return describe(exc)

    async def _check_endpoint(self, url: str, seller: str) -> None:
        """Only ``http(s)://host[:port]/path``, and no local host unless allowed. A seller
        whose endpoint this buyer cannot use is avoided at the exchange: with the cheapest
        ask it would otherwise match every new bid of this buyer, only to be cancelled."""
        try:
            check_endpoint_url(url)
            if not self.allow_local_sellers:
                await check_public_host(url)
        except BitwrkError as exc:
            await self._avoid_for_good(seller)
            raise Retry(f"seller endpoint refused: {exc}", blame=True) from exc

    async def _channel(self, tx: Transaction) -> Channel:
        """The trade's end-to-end keys: ECDH with the key that signed the seller's endpoint."""
        key = self.client.key
        assert key is not None
        seller_public = endpoint_signer_key(await self.client.messages(tx.id), tx.seller)
        return Channel.between(key, seller_public, await self.client.exchange_id(), tx.id)

    async def _fetch(self, tx: Transaction) -> Transaction:
        """Get the sealed result, keep it, sign the receipt over its hash."""
        txid, url = tx.id, _worker_url(tx)
        exchange = await self.client.exchange_id()
        key = self.client.key
        assert key is not None
        path = self.spool / f"tx{txid}.sealed"
        async with asyncio.timeout(_until(tx)):
            if not path.exists():
                headers = sign_peer(key, self.nonces, exchange, "fetch", txid)
                ciphertext = await self._peer("GET", f"{url}/result", headers, None)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.with_suffix(".tmp").write_bytes(ciphertext)
                path.with_suffix(".tmp").replace(path)
                self.journal.save_trade(txid, "buyer", TradeState.OPEN, ciphertext=str(path))
            enc = ciphertext_hash(path.read_bytes())
            receipt = key.sign_message(receipt_document(
                exchange=exchange, txid=txid, seller=tx.seller, encresulthash=enc))
            headers = sign_peer(key, self.nonces, exchange, "receipt", txid,
                                encresulthash=enc, receipt=receipt)
            await self._peer("POST", f"{url}/receipt", headers, b"")
        return await self._while_seller_alive(tx, self.watcher.wait(
            Transaction, txid, lambda t: t.phase != Phase.WORKING, _until(tx)))

    async def _verify(self, run: JobRun, unit_id: str, tx: Transaction) -> None:
        txid = tx.id
        path = self.spool / f"tx{txid}.sealed"
        try:
            resultkey = (await self._channel(tx)).unwrap_result_key(tx.resultkey or "")
            result = unseal(resultkey, path.read_bytes())
            stored = await self._checked(run, unit_id, tx, result)
        except (BitwrkError, ValueError, OSError) as exc:
            await self._dispute(tx, exc)
            if not isinstance(exc, OSError):  # a result that does not open or check out
                await self._avoid_for_good(tx.seller)
            raise Retry(f"result of trade {txid} refused: {exc}", blame=True) from exc
        # Mark done before accepting: a crash in between leaves the trade to time out into
        # payment (once); never a second purchase of a unit we already have.
        if self.journal.claim_unit(run.job_id, unit_id, UnitState.TRADING, UnitState.DONE,
                                   result=str(stored)):
            await self.client.send_message(txid, "accept")
            run.spent += tx.price + tx.fee
            self.post(UnitDone(run.job_id, unit_id, str(stored), tx.price, tx.fee,
                               tx.seller, txid, run.sent.get(txid, 0)))
        self.journal.save_trade(txid, "buyer", TradeState.CLOSED)
        path.unlink(missing_ok=True)

    async def _avoid_for_good(self, seller: str) -> None:
        """Tell the exchange this buyer avoids ``seller`` (a signed ``avoids`` relation), so
        its bids never match that seller's again: a cheater with the cheapest ask would
        otherwise win every new bid, only to be cancelled, again and again."""
        try:
            await self.client.set_relation(seller, "avoids", True)
        except (BitwrkError, aiohttp.ClientError, TimeoutError) as exc:
            log.warning("could not record that we avoid %s: %s", seller, exc)

    async def _abandon(self, txid: int, reason: str, dispute: bool = True) -> None:
        """Leave a failed trade so that the seller is not paid by a timeout: cancel it
        before work starts, dispute a published result we cannot fetch or open, and — if we
        signed a receipt while it is WORKING — dispute when (if) its result appears."""
        with contextlib.suppress(BitwrkError, aiohttp.ClientError):
            tx = await self.client.transaction(txid)
            if tx.phase in (Phase.ESTABLISHING, Phase.TRANSMITTING):
                await self.client.send_message(txid, "cancel")
            elif not dispute:
                return
            elif tx.phase == Phase.UNVERIFIED:
                await self.client.send_message(txid, "dispute", reason=reason[:400])
            elif tx.phase == Phase.WORKING and (self.spool / f"tx{txid}.sealed").exists():
                task = asyncio.create_task(self._dispute_when_unverified(tx, reason))
                self._disputers.add(task)
                task.add_done_callback(self._disputers.discard)

    async def _dispute_when_unverified(self, tx: Transaction, reason: str) -> None:
        with contextlib.suppress(BitwrkError, aiohttp.ClientError, TimeoutError):
            tx = await self.watcher.wait(Transaction, tx.id,
                                         lambda t: t.phase != Phase.WORKING, _until(tx))
            if tx.phase == Phase.UNVERIFIED:
                await self.client.send_message(tx.id, "dispute", reason=reason[:400])

    # -- checking a result before accept (bitwrk.daemon.spotcheck) ------------------------------

    async def _checked(self, run: JobRun, unit_id: str, tx: Transaction,
                       result: bytes) -> Path:
        """Store ``result`` once it passed the job's checks; raise to dispute it."""
        if run.check is not None:
            await run.check.check(unit_id, tx.seller, tx.id, tx.encresulthash or "", result)
        return run.sink.accept(run.job_id, unit_id, result)

    async def _dispute(self, tx: Transaction, exc: BaseException) -> None:
        """Dispute with the evidence; an exchange that does not take the evidence field
        still gets the reason, so a refused result is never paid by the review timeout."""
        fields = dispute_fields(exc, str(tx.encresulthash))
        try:
            await self.client.send_message(tx.id, "dispute", reason=fields["reason"],
                                           evidence=fields["evidence"])
        except InvalidRequest:
            with contextlib.suppress(BitwrkError):
                await self.client.send_message(tx.id, "dispute", reason=fields["reason"])
        except BitwrkError as err:
            log.warning("dispute of trade %s failed: %s", tx.id, err)

    async def _cancel(self, txid: int) -> None:
        with contextlib.suppress(BitwrkError, aiohttp.ClientError):
            tx = await self.client.transaction(txid)
            if tx.phase in (Phase.ESTABLISHING, Phase.TRANSMITTING):
                await self.client.send_message(txid, "cancel")

    async def _peer(self, method: str, url: str, headers: dict[str, str], body: Any) -> bytes:
        async with self.client.session.request(method, url, headers=headers, data=body,
                                               timeout=aiohttp.ClientTimeout(total=None)
                                               ) as resp:
            data = await resp.read()
            if resp.status >= 400:
                try:
                    import json

                    raise_for_error(resp.status, json.loads(data))
                except ValueError:
                    raise_for_error(resp.status, data[:200].decode(errors="replace"))
            return data


def _until(tx: Transaction) -> float:
    if tx.timeout is None:
        return SLACK
    return max(1.0, tx.timeout - time.time() + SLACK)


def _txid_of(bid: Bid) -> int:
    if bid.txid is None:  # the exchange sets it when it matches a bid
        raise BitwrkError(f"bid {bid.id} is {bid.state} without a transaction")
    return bid.txid


def _worker_url(tx: Transaction) -> str:
    if tx.workerurl is None:  # the seller's endpoint message sets it, before TRANSMITTING
        raise Retry(f"transaction {tx.id} in {tx.phase} has no worker url", blame=True)
    return tx.workerurl


async def _aiter(pieces: Any) -> AsyncIterator[bytes]:
    for piece in pieces:
        yield piece
        await asyncio.sleep(0)
