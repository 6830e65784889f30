"""The relay's limits against abuse, through a real relay and exchange process: a tunnel
only for a registered seller that signs this connection's fresh challenge (a recorded
handshake is refused), a cap on tunnels, and a cap on one seller's streams."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bitwrk.client import ExchangeClient
from bitwrk.daemon.endpoint import Answer
from bitwrk.daemon.peer import sign_peer
from bitwrk.daemon.relay import TunnelClient
from bitwrk.keys import PrivateKey
from bitwrk.protocol import NonceSource, sign_request
from tests.e2e.relayproc import relay_pair
from tests.e2e.test_daemon_trading import ARTICLE, fund

pytestmark = pytest.mark.slow


async def hello(session: aiohttp.ClientSession, url: str, key: PrivateKey,
                signed: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """One handshake: (what we sent, what the relay answered)."""
    async with session.ws_connect(url + "/relay/v1/tunnel") as ws:
        challenge = await ws.receive_json(timeout=10)
        if signed is None:
            signed = sign_request(key, {"action": "tunnel", "nonce": 1,
                                        "exchange": challenge["exchange"],
                                        "challenge": challenge["challenge"]})
        await ws.send_str(json.dumps(signed))
        return signed, await ws.receive_json(timeout=10)


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[tuple[Any, Any]]:
    exchange, relay = await asyncio.to_thread(
        relay_pair, tmp_path, 0.5, False, ("--max-tunnels", "2", "--max-streams-per-seller",
                                           "1", "--body-idle", "2"))
    yield exchange, relay
    relay.close()
    exchange.close()


async def nothing(method: str, path: str, header: str | None,
                  body: AsyncIterator[bytes]) -> Answer:
    return Answer(404, b"")


async def register(url: str, key: PrivateKey) -> None:
    async with ExchangeClient(url, key) as client:
        answer = await client.probe("http://127.0.0.1:9/bitwrk/v1")
    assert answer["reachable"] is False  # a loopback URL: never called, refused


async def test_tunnels_only_for_registered_sellers_and_fresh_challenges(
        pair: tuple[Any, Any]) -> None:
    exchange, relay = pair
    key = PrivateKey.generate("regtest")
    async with aiohttp.ClientSession() as session:
        _, answer = await hello(session, relay.url, key)
        assert answer["error"] == "forbidden"  # the exchange never saw this address
        await register(exchange.url, key)
        signed, answer = await hello(session, relay.url, key)
        assert answer["ok"] is True
        _, replayed = await hello(session, relay.url, key, signed)  # an old handshake
        assert replayed["error"] == "invalid_request"
        others = [PrivateKey.generate("regtest") for _ in range(2)]
        for other in others:
            await register(exchange.url, other)
        # hold two tunnels, then a third is refused before the upgrade
        clients = [TunnelClient(relay.url, other, nothing) for other in others]
        for client in clients:
            client.start()
            await asyncio.wait_for(client.up.wait(), 20)
        with pytest.raises(aiohttp.WSServerHandshakeError) as full:
            await hello(session, relay.url, key)
        assert full.value.status == 503
        for client in clients:
            await client.close()


async def test_one_sellers_streams_are_capped(pair: tuple[Any, Any]) -> None:
    exchange, relay = pair
    seller, buyer = PrivateKey.generate("regtest"), PrivateKey.generate("regtest")
    await asyncio.to_thread(fund, exchange, buyer.address, 100_000)
    release = asyncio.Event()

    async def serve(method: str, path: str, header: str | None,
                    body: AsyncIterator[bytes]) -> Answer:
        if path.endswith("/result"):
            await release.wait()  # a render that takes its time
            return Answer(200, b"sealed")
        return Answer(200, str(sum([len(p) async for p in body])).encode())

    async with ExchangeClient(exchange.url, seller) as s, \
            ExchangeClient(exchange.url, buyer) as b, aiohttp.ClientSession() as session:
        await s.place_bid("sell", ARTICLE, 100)
        txid = int((await b.place_bid("buy", ARTICLE, 100)).txid or 0)
        tunnel = TunnelClient(relay.url, seller, serve)
        tunnel.start()
        await asyncio.wait_for(tunnel.up.wait(), 20)
        url = f"{tunnel.public_url}/tx/{txid}/result"
        nonces = NonceSource()
        exchange_id = exchange.info["exchange"]

        async def fetch() -> tuple[int, bytes]:
            headers = sign_peer(buyer, nonces, exchange_id, "fetch", txid)
            async with session.get(url, headers=headers) as resp:
                return resp.status, await resp.read()

        first = asyncio.create_task(fetch())
        await asyncio.sleep(1.0)
        status, body = await fetch()
        assert status == 429 and b"too_many_streams" in body
        release.set()
        assert await first == (200, b"sealed")
        # a body that stalls mid-way ends its stream after --body-idle (2 s), not never
        assert await _stalled_upload(relay.port, url.replace("/result", "/chunks"),
                                     sign_peer(buyer, nonces, exchange_id, "chunks", txid))
        assert relay.status()["streams"] == 0
        await tunnel.close()


async def _stalled_upload(port: int, url: str, headers: dict[str, str]) -> bool:
    """Send a request whose body stops after 1,000 of 100,000 bytes; True when the relay
    answers 502 (the stream ended) within 20 s."""
    path = url.split(f":{port}", 1)[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    writer.write(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n{head}\r\n"
                 .encode() + b"x" * 1000)
    await writer.drain()
    try:
        status = await asyncio.wait_for(reader.readline(), 20)
    finally:
        writer.close()
    return b" 502 " in status
