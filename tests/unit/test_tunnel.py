"""The tunnel's multiplexing (bitwrk/tunnel.py) over an in-memory socket pair: credit
windows keep a stalled big body from starving other streams, a peer that ignores its
credit loses only its stream, and a closed socket ends every stream."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import WSMsgType

from bitwrk.errors import TunnelError
from bitwrk.tunnel import DATA, WINDOW, Bucket, Mux, Stream, frame


@dataclass
class Message:
    data: bytes
    type: WSMsgType = WSMsgType.BINARY


class Pipe:
    """One end of an in-memory WebSocket."""

    def __init__(self) -> None:
        self.inbox: asyncio.Queue[Message | None] = asyncio.Queue()
        self.peer: Pipe = self
        self.closed = False

    async def send_bytes(self, data: bytes, compress: int | None = None) -> None:
        if self.closed:
            raise ConnectionError("closed")
        await self.peer.inbox.put(Message(data))

    def __aiter__(self) -> Pipe:
        return self

    async def __anext__(self) -> Message:
        message = await self.inbox.get()
        if message is None:
            raise StopAsyncIteration
        return message

    async def close(self, *, code: int = 1000, message: bytes = b"") -> bool:
        self.closed = self.peer.closed = True
        self.inbox.put_nowait(None)
        self.peer.inbox.put_nowait(None)
        return True


def pair() -> tuple[Pipe, Pipe]:
    a, b = Pipe(), Pipe()
    a.peer, b.peer = b, a
    return a, b


async def echo(stream: Stream, head: dict[str, Any]) -> None:
    if head.get("stall"):  # never reads its body: the sender must stop at one window
        await asyncio.sleep(3600)
    body = await stream.read_all(10**8)
    await stream.send_head({"status": 200, "path": head["path"]})
    await stream.write(body[::-1])
    await stream.end()


@pytest.fixture
async def muxes() -> Any:
    left, right = pair()
    relay, seller = Mux(left), Mux(right, on_open=echo)
    tasks = [asyncio.create_task(relay.run()), asyncio.create_task(seller.run())]
    yield relay, seller
    await left.close()
    await asyncio.gather(*tasks, return_exceptions=True)


async def roundtrip(relay: Mux, body: bytes, path: str = "/x") -> bytes:
    stream = await relay.open({"path": path})
    await stream.write(body)
    await stream.end()
    head = await asyncio.wait_for(stream.head, 10)
    assert head["path"] == path
    return await asyncio.wait_for(stream.read_all(10**8), 10)


async def test_streams_carry_bodies_both_ways(muxes: tuple[Mux, Mux]) -> None:
    relay, _ = muxes
    bodies = [bytes([i]) * (i * 300_000 + 1) for i in range(4)]
    answers = await asyncio.gather(*(roundtrip(relay, b, f"/{i}") for i, b in
                                     enumerate(bodies)))
    assert answers == [b[::-1] for b in bodies]


async def test_a_stalled_big_body_does_not_starve_other_streams(
        muxes: tuple[Mux, Mux]) -> None:
    relay, seller = muxes
    big = await relay.open({"path": "/big", "stall": True})
    writer = asyncio.create_task(big.write(b"\0" * (8 * WINDOW)))
    await asyncio.sleep(0.2)
    assert not writer.done()  # stopped at its credit ...
    assert big.sent == WINDOW  # ... exactly one window in flight
    assert await roundtrip(relay, b"small" * 1000, "/small") == (b"small" * 1000)[::-1]
    buffered = sum(s._buffered for s in seller.streams.values())
    assert buffered <= WINDOW  # the receiver never holds more than a window per stream
    writer.cancel()


async def test_a_peer_beyond_its_window_loses_only_its_stream() -> None:
    left, right = pair()
    relay = Mux(left)
    task = asyncio.create_task(relay.run())
    victim = await relay.open({"path": "/a"})
    other = await relay.open({"path": "/b"})
    for _ in range(WINDOW // 65536 + 2):  # a rogue seller ignores the window
        await right.send_bytes(frame(DATA, victim.id, b"x" * 65536))
    await asyncio.sleep(0.1)
    assert victim.reset_reason is not None and "window" in victim.reset_reason
    assert other.reset_reason is None and relay.closed is None
    await left.close()
    await task
    with pytest.raises(TunnelError):
        await other.read()  # a closed tunnel resets every stream


async def test_bucket_caps_the_rate() -> None:
    bucket = Bucket(1_000_000)
    started = time.monotonic()
    for _ in range(30):
        await bucket.take(100_000)  # 3 MB at 1 MB/s, one second of burst
    assert time.monotonic() - started >= 1.8
