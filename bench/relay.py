"""Relay benchmark: what a seller behind NAT pays for the relay (docs/relay.md).

Real processes on loopback, same run: an exchange advertising a relay, the relay
(``python -m service relay``, no bandwidth cap), and a seller stand-in process — it
answers a unit's four requests as the seller's endpoint does (manifest, chunk stream,
result, receipt), opening the chunk stream on the peer channel and hashing it like the
real endpoint (no disk), over HTTP and, behind the real tunnel client, via the relay. The
buyer (this process) signs every request for a real matched transaction, so the relay's
checks — the signed header, the exchange's word on the trade — are all paid for.

1. a sealed 100 MB chunk stream (random bytes, 256 KiB pieces), POSTed directly and
   through the relay, best of 2 each, in MB/s — target: relay ≥ 50 % of direct;
2. per-unit overhead: one unit's four requests on a fresh transaction each (the relay asks
   the exchange once per trade), mean over N units, relay minus direct — target ≤ 20 ms.

Both depend on what else the machine does (three processes share its cores); the rows
say the load average. ``python -m bench.relay [--quick] [--strict]``; ``--quick``: 20 MB
and 10 units.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
from aiohttp import web

from bench.cli import arguments, exit_status
from bench.table import Row, print_table
from bitwrk.client import ExchangeClient
from bitwrk.daemon.endpoint import Answer
from bitwrk.daemon.peer import Channel, sign_peer
from bitwrk.daemon.relay import TunnelClient
from bitwrk.keys import PrivateKey
from bitwrk.protocol import NonceSource, work_secret_hash
from tools.processes import REPO, free_port

NAME = "relay"
MB = 1_000_000
ARTICLE = "net.bitwrk/blender/5.0/512M"
TARGET_SHARE = 50.0  # % of direct throughput
TARGET_OVERHEAD_MS = 20.0
PIECE = 256 * 1024


def log(message: str) -> None:
    print(f"[relay] {message}", file=sys.stderr, flush=True)


# -- the seller stand-in (its own process) ----------------------------------------------------


class StandIn:
    """Answers a unit's requests like the seller's endpoint (``TradeEndpoint.serve``)."""

    def __init__(self, seller: PrivateKey, buyer_public: bytes, exchange_id: str) -> None:
        self.seller, self.buyer_public, self.exchange_id = seller, buyer_public, exchange_id

    async def serve(self, method: str, path: str, header: str | None,
                    body: AsyncIterator[bytes]) -> Answer:
        txid = int(path.split("/")[4])
        if path.endswith("/result"):
            return Answer(200, b"r" * 100_000)
        if not path.endswith("/chunks"):
            total = sum([len(piece) async for piece in body])
            return Answer(200, json.dumps({"bytes": total}).encode(), "application/json")
        # what the endpoint does per byte: open the sealed stream, hash what it holds
        channel = Channel.between(self.seller, self.buyer_public, self.exchange_id, txid)
        opener, digest = channel.opener("chunks"), hashlib.sha256()
        async for piece in body:
            digest.update(opener.feed(piece))
        digest.update(opener.finish())
        return Answer(200, json.dumps({"sha256": digest.hexdigest()}).encode(),
                      "application/json")

    async def route(self, request: web.Request) -> web.Response:
        answer = await self.serve(request.method, request.path, None,
                                  request.content.iter_chunked(PIECE))
        return web.Response(status=answer.status, body=answer.body,
                            content_type=answer.content_type)


async def serve_seller(relay: str, seller_wif: str, buyer_public: str, exchange_id: str) -> None:
    seller = PrivateKey.from_wif(seller_wif)
    stand_in = StandIn(seller, bytes.fromhex(buyer_public), exchange_id)
    app = web.Application()
    app.router.add_route("*", "/bitwrk/v1/tx/{txid}/{action}", stand_in.route)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    local = f"http://127.0.0.1:{runner.addresses[0][1]}"
    tunnel = TunnelClient(relay, seller, stand_in.serve)
    tunnel.start()
    await asyncio.wait_for(tunnel.up.wait(), 30)
    print(f"direct {local}/bitwrk/v1 relay {tunnel.public_url}", flush=True)
    await asyncio.Event().wait()


# -- the buyer (this process) ---------------------------------------------------------------


class Buyer:
    def __init__(self, exchange: str, exchange_id: str, key: PrivateKey, seller: PrivateKey,
                 session: aiohttp.ClientSession) -> None:
        self.exchange, self.exchange_id = exchange, exchange_id
        self.key, self.seller = key, seller
        self.session = session
        self.nonces = NonceSource()

    async def trade(self, base: str = "http://127.0.0.1:9/bitwrk/v1") -> int:
        """A matched transaction in TRANSMITTING, as a unit's requests find it: the buyer
        committed to its work, the seller announced its endpoint (the relay learns the
        parties from these public messages)."""
        async with ExchangeClient(self.exchange, self.seller) as s, \
                ExchangeClient(self.exchange, self.key) as b:
            await s.place_bid("sell", ARTICLE, 10)
            txid = int((await b.place_bid("buy", ARTICLE, 10)).txid or 0)
            work = secrets.token_hex(32)
            await b.send_message(txid, "work", workhash=work,
                                 worksecrethash=work_secret_hash(work, secrets.token_hex(32)))
            await s.send_message(txid, "endpoint", workerurl=f"{base}/tx/{txid}")
            return txid

    async def call(self, method: str, url: str, action: str, txid: int,
                   body: object = None) -> bytes:
        headers = sign_peer(self.key, self.nonces, self.exchange_id, action, txid)
        async with self.session.request(method, url, headers=headers, data=body) as resp:
            data = await resp.read()
            if resp.status != 200:
                raise RuntimeError(f"{method} {url}: {resp.status} {data[:200]!r}")
            return data

    async def stream(self, base: str, plain: bytes) -> float:
        txid = await self.trade()
        channel = Channel.between(self.key, self.seller.public_key, self.exchange_id, txid)
        sealed = list(channel.seal_stream("chunks", (plain[i:i + PIECE]
                                                     for i in range(0, len(plain), PIECE))))

        async def pieces() -> AsyncIterator[bytes]:
            for piece in sealed:
                yield piece

        started = time.perf_counter()
        await self.call("POST", f"{base}/tx/{txid}/chunks", "chunks", txid, pieces())
        return len(plain) / MB / (time.perf_counter() - started)

    async def unit(self, base: str) -> float:
        txid = await self.trade(base)  # not timed: bidding is the same either way
        await asyncio.sleep(0.05)  # as long as a buyer takes to see the endpoint
        started = time.perf_counter()
        await self.call("POST", f"{base}/tx/{txid}/manifest", "manifest", txid, b"m" * 4000)
        channel = Channel.between(self.key, self.seller.public_key, self.exchange_id, txid)
        await self.call("POST", f"{base}/tx/{txid}/chunks", "chunks", txid,
                        b"".join(channel.seal_stream("chunks", [b"c" * 65536])))
        await self.call("GET", f"{base}/tx/{txid}/result", "fetch", txid)
        await self.call("POST", f"{base}/tx/{txid}/receipt", "receipt", txid, b"")
        return time.perf_counter() - started


def _spawn(args: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as out:
        return subprocess.Popen([sys.executable, "-m", *args], cwd=REPO, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


async def _wait_line(log_path: Path, prefix: str, timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log_path.read_text(errors="replace") if log_path.exists() else ""
        found = [line for line in text.splitlines() if line.startswith(prefix)]
        if found:
            return found[0]
        await asyncio.sleep(0.1)
    raise RuntimeError(f"no {prefix!r} in {log_path}")


async def _measure(tmp: Path, scene_mb: int, units: int) -> dict[str, float]:
    eport, rport = free_port(), free_port()
    exchange, relay = f"http://127.0.0.1:{eport}", f"http://127.0.0.1:{rport}"
    procs = [_spawn(["service", "--db", str(tmp / "ex.sqlite3"), "--port", str(eport),
                     "--relay-url", relay], tmp / "exchange.log"),
             _spawn(["service", "relay", "--exchange", exchange, "--port", str(rport),
                     "--seller-rate", "0"], tmp / "relay.log")]
    try:
        await _wait_line(tmp / "exchange.log", "BitWrk exchange on")
        await _wait_line(tmp / "relay.log", "BitWrk relay on")
        await asyncio.sleep(0.5)  # both print just before they bind
        seller, buyer_key = PrivateKey.generate("regtest"), PrivateKey.generate("regtest")
        operator = PrivateKey.from_wif((tmp / "operator.wif").read_text().strip())
        async with ExchangeClient(exchange, operator, retry_for=20) as op, \
                ExchangeClient(exchange, seller) as s:
            await op.deposit(buyer_key.address, 10**9, kind="play",
                             uid="bench-" + secrets.token_hex(8))
            await s.probe("http://127.0.0.1:9/bitwrk/v1")  # registers the seller
            exchange_id = await op.exchange_id()
        procs.append(_spawn(["bench.relay", "--seller", relay, seller.to_wif(),
                             buyer_key.public_key.hex(), exchange_id], tmp / "seller.log"))
        parts = (await _wait_line(tmp / "seller.log", "direct ")).split()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as session:
            buyer = Buyer(exchange, exchange_id, buyer_key, seller, session)
            return await _runs(buyer, parts[1], parts[3], scene_mb, units)
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(10)


async def _runs(buyer: Buyer, direct: str, via: str, scene_mb: int,
                units: int) -> dict[str, float]:
    plain = os.urandom(scene_mb * MB)
    out: dict[str, float] = {}
    for name, base in (("direct", direct), ("relay", via)):
        log(f"{scene_mb} MB {name} ...")
        out[f"{name}_mb_s"] = max([await buyer.stream(base, plain) for _ in range(2)])
    for name, base in (("direct", direct), ("relay", via)):
        await buyer.unit(base)  # warm connections
        times = [await buyer.unit(base) for _ in range(units)]
        out[f"{name}_unit_ms"] = 1000 * sum(times) / len(times)
    return out


def collect(quick: bool = False) -> list[Row]:
    scene_mb, units = (20, 10) if quick else (100, 30)
    with tempfile.TemporaryDirectory(prefix="bitwrk-bench-relay-") as tmp:
        r = asyncio.run(_measure(Path(tmp), scene_mb, units))
    load = f"load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    share = 100 * r["relay_mb_s"] / r["direct_mb_s"]
    overhead = r["relay_unit_ms"] - r["direct_unit_ms"]
    return [
        Row(NAME, f"{scene_mb} MB sealed chunk stream, direct", r["direct_mb_s"], "MB/s",
            note="opened + hashed by the endpoint, best of 2"),
        Row(NAME, f"{scene_mb} MB sealed chunk stream, via relay", r["relay_mb_s"], "MB/s",
            note="relay process + tunnel, same endpoint work"),
        Row(NAME, "relay throughput / direct", share, "%", f">= {TARGET_SHARE:.0f} %",
            share >= TARGET_SHARE, note=load),
        Row(NAME, "per-unit requests, direct", r["direct_unit_ms"], "ms",
            note=f"manifest, chunks, result, receipt; mean of {units}"),
        Row(NAME, "per-unit requests, via relay", r["relay_unit_ms"], "ms",
            note="incl. the relay's look-up of each new trade"),
        Row(NAME, "per-unit overhead of the relay", overhead, "ms",
            f"<= {TARGET_OVERHEAD_MS:.0f} ms", overhead <= TARGET_OVERHEAD_MS, note=load),
    ]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--seller"]:  # the stand-in process of _measure
        asyncio.run(serve_seller(*argv[1:5]))
        return 0
    args = arguments("bench.relay", __doc__).parse_args(argv)
    table = collect(quick=args.quick)
    print_table(table, title="BitWrk relay benchmark")
    return exit_status(table, args.strict)


if __name__ == "__main__":
    sys.exit(main())
