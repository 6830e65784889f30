"""Attacks on the trade protocol, through a real exchange process and real daemons on loopback:
a replayed receipt, an eavesdropper on the buyer↔seller path and on the public views, a seller
endpoint aimed at the buyer's own network, a result key that does not open. After each, the
ledger invariant holds and nobody is paid for what was not delivered."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import http.client
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bitwrk.cas.sealing import WRAPPED_KEY_SIZE
from bitwrk.client import ExchangeClient
from bitwrk.daemon import BuyJob, CancelJob, Daemon, Mandate, Offer, StartSelling
from bitwrk.daemon.events import JobDone, UnitDone, UnitFailed
from bitwrk.daemon.peer import Channel
from bitwrk.errors import InvalidRequest, SealError
from bitwrk.keys import PrivateKey
from bitwrk.protocol import receipt_document, work_secret_hash
from bitwrk.wire import Account, Transaction
from tests.e2e.conftest import ServerProcess
from tests.e2e.test_daemon_trading import (  # noqa: F401 - daemons is a fixture
    ARTICLE,
    FakeRender,
    collect,
    daemons,
    fund,
    make_units,
)
from tools.processes import free_port

pytestmark = pytest.mark.slow


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def totals_ok(url: str) -> dict[str, int]:
    async with ExchangeClient(url) as c:
        t: dict[str, int] = (await c.info())["totals"]
    assert t["available"] + t["blocked"] + t["fees"] == t["deposits"] == -t["world"], t
    return t


async def account(url: str, address: str) -> Account:
    async with ExchangeClient(url) as c:
        return await c.account(address)


# -- a receipt replayed into another trade -----------------------------------------------------


class Trader:
    def __init__(self, url: str) -> None:
        self.key = PrivateKey.generate("regtest")
        self.client = ExchangeClient(url, self.key)

    @property
    def address(self) -> str:
        return self.key.address


async def _to_working(buyer: Trader, seller: Trader, price: int) -> int:
    await seller.client.place_bid("sell", ARTICLE, price)
    txid = (await buyer.client.place_bid("buy", ARTICLE, price)).txid
    assert txid is not None
    workhash = hashlib.sha256(secrets.token_bytes(16)).hexdigest()
    proof = hashlib.sha256(secrets.token_bytes(32)).hexdigest()
    digest = work_secret_hash(workhash, proof)
    await buyer.client.send_message(txid, "work", workhash=workhash, worksecrethash=digest)
    await seller.client.send_message(txid, "endpoint", workerurl=f"http://127.0.0.1:9/w/{txid}")
    await seller.client.send_message(txid, "received", secretproof=proof)
    return txid


def _receipt(buyer: Trader, exchange: str, txid: int, seller: str, enc: str) -> str:
    return buyer.key.sign_message(receipt_document(exchange=exchange, txid=txid, seller=seller,
                                                   encresulthash=enc))


@pytest.fixture
def fast_exchange(server_factory: Callable[..., ServerProcess]) -> ServerProcess:
    return server_factory(timeout_scale=0.05).start()  # WORKING (512M) lasts 15 s


def test_replayed_receipt_is_refused_and_never_paid(fast_exchange: ServerProcess) -> None:
    url = fast_exchange.url

    async def go() -> None:
        buyer, seller, copier = Trader(url), Trader(url), Trader(url)
        async with ExchangeClient(url, fast_exchange.operator_key) as op:
            await op.deposit(buyer.address, 10_000, kind="play", uid=secrets.token_hex(8))
        exchange = await buyer.client.exchange_id()
        # trade A, honest: its hash, receipt and (sealed) key become public
        a = await _to_working(buyer, seller, 100)
        enc = hashlib.sha256(b"sealed result of A").hexdigest()
        await seller.client.send_message(a, "result", encresulthash=enc,
                                         receipt=_receipt(buyer, exchange, a, seller.address, enc),
                                         resultkey=secrets.token_hex(WRAPPED_KEY_SIZE))
        await buyer.client.send_message(a, "accept")
        async with ExchangeClient(url) as anyone:
            public = await anyone.transaction(a)
        copied = {"encresulthash": public.encresulthash, "receipt": public.receipt,
                  "resultkey": public.resultkey}
        # trades B (another seller) and C (the same seller, same buyer) replay it
        b = await _to_working(buyer, copier, 100)
        c = await _to_working(buyer, seller, 100)
        for thief, txid in ((copier, b), (seller, c)):
            with pytest.raises(InvalidRequest, match="receipt"):
                await thief.client.send_message(txid, "result", **copied)
        # even a receipt the buyer really signed for C, over A's ciphertext, is refused
        genuine = _receipt(buyer, exchange, c, seller.address, enc)
        with pytest.raises(InvalidRequest, match="already delivered"):
            await seller.client.send_message(c, "result", encresulthash=enc, receipt=genuine,
                                             resultkey=public.resultkey)
        await totals_ok(url)
        # the WORKING deadline passes: both end EXPIRED, the buyer is refunded
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            phases = {(await buyer.client.transaction(t)).phase for t in (b, c)}
            if phases == {"EXPIRED"}:
                break
            await asyncio.sleep(0.5)
        assert phases == {"EXPIRED"}
        a_tx = await buyer.client.transaction(a)
        assert (await account(url, copier.address)).available == 0
        assert (await account(url, seller.address)).available == a_tx.price
        buyer_account = await account(url, buyer.address)
        assert buyer_account.blocked == 0
        assert buyer_account.available == 10_000 - a_tx.price - a_tx.fee
        await totals_ok(url)
        for t in (buyer, seller, copier):
            await t.client.close()

    run(go())


# -- daemons ---------------------------------------------------------------------------------


@pytest.fixture
def exchange(server_factory: Callable[..., ServerProcess]) -> ServerProcess:
    return server_factory(timeout_scale=0.2).start()


class TapProxy:
    """A TCP relay on loopback that forwards to ``target_port`` and records every byte both
    ways: an eavesdropper (or a hostile relay) on the buyer↔seller path."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.recorded = bytearray()
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> TapProxy:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(
            asyncio.start_server(self._relay, "127.0.0.1", self.port))
        self._ready.set()
        self._loop.run_forever()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await src.read(65536):
                with self._lock:
                    self.recorded += data
                dst.write(data)
                await dst.drain()
        dst.close()


class PublicStream:
    """The exchange's public event stream, as anyone can read it, recorded."""

    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=120)
        self.text = bytearray()
        self._thread = threading.Thread(target=self._read, daemon=True)

    def __enter__(self) -> PublicStream:
        self.conn.request("GET", "/api/v1/events")
        self.response = self.conn.getresponse()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(OSError):
            self.conn.sock.shutdown(2)
        self._thread.join(10)

    def _read(self) -> None:
        with contextlib.suppress(OSError, http.client.HTTPException, ValueError):
            while line := self.response.readline():
                self.text += line


def test_eavesdropper_learns_no_key_secret_or_plaintext(
    tmp_path: Path, exchange: ServerProcess, daemons: Callable[..., Daemon]  # noqa: F811
) -> None:
    buyer, seller = daemons("buyer"), daemons("seller")
    fund(exchange, buyer.address, 1_000_000)
    seller_port = free_port()
    with TapProxy(seller_port) as tap, PublicStream(exchange.url) as stream:
        seller.call(seller.start_selling(StartSelling(
            Offer((ARTICLE,), 100), FakeRender(), port=seller_port,
            public_url=f"http://127.0.0.1:{tap.port}")), 30)
        scene = os.urandom(200_000)
        units = make_units(tmp_path, buyer, 3, scene)
        job = BuyJob(ARTICLE, Mandate(1000, 100_000, time.time() + 600), tuple(units),
                     tmp_path / "out", concurrency=2)
        buyer.submit(job)
        events = collect(buyer, job.job_id, 120)
        time.sleep(1.0)  # the last phase events reach the stream
    done = [e for e in events if isinstance(e, UnitDone)]
    assert len(done) == 3
    wire = bytes(tap.recorded)
    assert b"/bitwrk/v1/tx/" in wire and len(wire) > len(scene)  # the traffic went via the tap
    exchange_id, views = run(_views(exchange.url, done))
    public = repr(views).encode() + bytes(stream.text)
    assert b'"phase"' in bytes(stream.text)
    secrets_seen = _trade_secrets(buyer, seller, exchange_id, views)
    assert len(secrets_seen) == 4 * len(done)
    for label, value in secrets_seen:
        assert value not in wire, f"{label} on the buyer-seller path"
        assert value not in public, f"{label} in the public views"
    for offset in range(0, len(scene) - 32, 4099):  # no piece of the scene in clear
        assert scene[offset:offset + 32] not in wire
    for unit_id, raw in units:
        assert raw[:48] not in wire and b"scene.blend" not in wire  # the manifest
        result = (tmp_path / "out" / f"{unit_id}.exr").read_bytes()
        assert result[:48] not in wire and result[-48:] not in wire  # the result


async def _views(url: str, done: list[UnitDone]) -> tuple[str, list[dict[str, Any]]]:
    """What anyone can read about the job's trades (the transactions with their messages),
    as sent: the wire records would drop a field they do not declare, a leak included."""
    async with ExchangeClient(url) as anyone:
        return (await anyone.exchange_id(),
                [await anyone.get(f"/api/v1/transactions/{e.txid}") for e in done if e.txid])


def _trade_secrets(buyer: Daemon, seller: Daemon, exchange_id: str,
                   views: list[dict[str, Any]]) -> list[tuple[str, bytes]]:
    """Each trade's buyer secret and one-time result key (the latter opened as the buyer
    does), and a check that a stranger's key cannot open the sealed key."""
    journal = sqlite3.connect(buyer.config.data_dir / "journal.sqlite3")
    found: list[tuple[str, bytes]] = []
    for view in views:
        (secret,) = journal.execute("SELECT buyersecret FROM trades WHERE txid = ?",
                                    (view["id"],)).fetchone()
        assert "buyersecret" not in view and view["secretproof"] == hashlib.sha256(
            bytes.fromhex(secret)).hexdigest()
        mine = Channel.between(buyer.key, seller.key.public_key, exchange_id, view["id"])
        key = mine.unwrap_result_key(view["resultkey"])
        stranger = Channel.between(PrivateKey.generate(), seller.key.public_key, exchange_id,
                                   view["id"])
        with pytest.raises(SealError):
            stranger.unwrap_result_key(view["resultkey"])
        found += [("buyer secret", secret.encode()), ("buyer secret", bytes.fromhex(secret)),
                  ("result key", key), ("result key", key.hex().encode())]
    journal.close()
    return found


# -- a seller endpoint on the buyer's own network ----------------------------------------------


def test_local_seller_endpoint_is_refused_unless_allowed(
    tmp_path: Path, exchange: ServerProcess, daemons: Callable[..., Daemon]  # noqa: F811
) -> None:
    buyer, seller = daemons("strict", allow_local=False), daemons("seller")
    fund(exchange, buyer.address, 1_000_000)
    render = FakeRender()
    seller.call(seller.start_selling(StartSelling(Offer((ARTICLE,), 100), render)), 30)
    units = make_units(tmp_path, buyer, 1, os.urandom(20_000))
    job = BuyJob(ARTICLE, Mandate(1000, 100_000, time.time() + 600), tuple(units),
                 tmp_path / "out", concurrency=1)
    buyer.submit(job)
    refusal = None
    deadline = time.monotonic() + 90
    while refusal is None and time.monotonic() < deadline:
        event = buyer.runtime.wait_event(0.2)
        if isinstance(event, UnitFailed) and "endpoint refused" in event.reason:
            refusal = event
    assert refusal is not None and "local or private address" in refusal.reason
    buyer.submit(CancelJob(job.job_id))
    assert render.jobs == 0  # no manifest, no chunk ever reached the seller

    async def settled() -> Account:
        end = time.monotonic() + 60
        while time.monotonic() < end:
            acct = await account(exchange.url, buyer.address)
            if acct.blocked == 0:
                return acct
            await asyncio.sleep(0.5)
        raise AssertionError("buyer's money stayed blocked")

    acct = run(settled())
    assert acct.available == 1_000_000  # every refused trade was cancelled and refunded
    assert (run(account(exchange.url, seller.address))).available == 0
    run(totals_ok(exchange.url))


# -- a result key that does not open ----------------------------------------------------------


class LyingChannel(Channel):
    def wrap_result_key(self, key: bytes) -> str:
        return secrets.token_hex(WRAPPED_KEY_SIZE)  # right shape, opens nothing


def test_result_that_does_not_open_is_disputed_before_any_timeout(
    tmp_path: Path, exchange: ServerProcess, daemons: Callable[..., Daemon]  # noqa: F811
) -> None:
    buyer, bad, good = daemons("buyer"), daemons("bad"), daemons("good")
    fund(exchange, buyer.address, 1_000_000)
    bad.call(bad.start_selling(StartSelling(Offer((ARTICLE,), 50), FakeRender())), 30)
    assert bad.seller is not None
    honest_accept = bad.seller.accept_manifest

    async def lying_accept(trade: Any, *args: Any) -> bytes:
        wanted = await honest_accept(trade, *args)
        ch = trade.channel
        trade.channel = LyingChannel(ch.shared, ch.exchange, ch.txid)
        return wanted

    bad.seller.accept_manifest = lying_accept  # type: ignore[assignment]
    units = make_units(tmp_path, buyer, 1, os.urandom(20_000))
    job = BuyJob(ARTICLE, Mandate(1000, 100_000, time.time() + 600), tuple(units),
                 tmp_path / "out", concurrency=1)
    buyer.submit(job)
    time.sleep(1.0)  # the cheap liar's ask rests first; the honest seller comes later
    good.call(good.start_selling(StartSelling(Offer((ARTICLE,), 200), FakeRender())), 30)
    events = collect(buyer, job.job_id, 120)
    final = next(e for e in events if isinstance(e, JobDone))
    assert (final.done, final.failed) == (1, 0)
    assert {e.seller for e in events if isinstance(e, UnitDone)} == {good.address}

    async def bad_trades() -> list[Transaction]:
        async with ExchangeClient(exchange.url) as c:
            bids = await c.bids(bad.address, limit=200)
            return [await c.transaction(b.txid) for b in bids if b.txid]

    trades = run(bad_trades())
    disputed = [t for t in trades if t.phase == "RESULT_DISPUTED"]
    # disputed (no deadline: only the operator ends it); later matches the buyer cancelled
    assert disputed and all(t.timeout is None for t in disputed), trades
    assert {t.phase for t in trades} <= {"RESULT_DISPUTED", "CANCELLED"}, trades
    assert run(account(exchange.url, bad.address)).available == 0
    run(totals_ok(exchange.url))
