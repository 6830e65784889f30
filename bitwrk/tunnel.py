"""Many HTTP exchanges over one WebSocket: the relay's tunnel to a seller (docs/relay.md).

A seller behind NAT keeps one outbound WebSocket to the exchange operator's relay; each
buyer request the relay receives for that seller becomes a *stream* on it. Frames are
binary WebSocket messages ``kind (1 byte) ‖ stream id (4 bytes, big-endian) ‖ payload``:

========  ================================  =====================================
OPEN      relay → seller: JSON request head  method, path, the headers that matter
HEAD      seller → relay: JSON response head status, content type
DATA      either way: body bytes             at most FRAME bytes, within credit
END       either way: end of that body
CREDIT    either way: 4-byte increment       the receiver consumed that many bytes
RESET     either way: UTF-8 reason           the stream is over, abnormally
========  ================================  =====================================

Flow control is per stream and per direction, with credit as in HTTP/2: a sender may have
at most ``WINDOW`` unacknowledged body bytes in flight on a stream, and the receiver grants
more as its reader consumes them. One 100 MB upload therefore holds at most one window of
the connection, and frames of other streams interleave with it; a peer that sends beyond
its credit has its stream reset (the relay never buffers more than a window per stream).
The bodies are the peer channel's ciphertext (docs/protocol-security.md): the tunnel adds
no encryption of its own and needs none.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

from .errors import TunnelError

OPEN, HEAD, DATA, END, CREDIT, RESET = range(1, 7)
_HEADER = struct.Struct(">BI")
_CREDIT = struct.Struct(">I")
FRAME = 64 * 1024  # body bytes per DATA frame
WINDOW = 1024 * 1024  # unacknowledged body bytes per stream and direction
MAX_MESSAGE = FRAME + 4096  # the largest WebSocket message either side accepts
MAX_HEAD = 8 * 1024  # a request or response head, JSON


class Socket(Protocol):
    """What the mux needs of an aiohttp WebSocket (client or server side)."""

    async def send_bytes(self, data: bytes, compress: int | None = None) -> None: ...

    def __aiter__(self) -> Any: ...

    async def close(self, *, code: int = ..., message: bytes = ...) -> bool: ...


def frame(kind: int, stream: int, payload: bytes = b"") -> bytes:
    return _HEADER.pack(kind, stream) + payload


def parse(message: bytes) -> tuple[int, int, bytes]:
    if len(message) < _HEADER.size:
        raise TunnelError("tunnel frame shorter than its header")
    kind, stream = _HEADER.unpack_from(message)
    if not OPEN <= kind <= RESET:
        raise TunnelError(f"unknown tunnel frame kind {kind}")
    return kind, stream, message[_HEADER.size:]


class Bucket:
    """A token bucket: ``take(n)`` waits until ``n`` bytes fit under ``rate`` per second
    (a burst of one second's worth). ``rate`` 0: unlimited."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self._tokens = rate
        self._stamp = time.monotonic()

    async def take(self, n: int) -> None:
        if self.rate <= 0:
            return
        while True:
            now = time.monotonic()
            self._tokens = min(self.rate, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            if self._tokens >= min(n, self.rate):
                self._tokens -= n
                return
            await asyncio.sleep((min(n, self.rate) - self._tokens) / self.rate)


class Stream:
    """One request/response exchange on a tunnel; either end reads and writes a body."""

    def __init__(self, mux: Mux, sid: int) -> None:
        self.mux = mux
        self.id = sid
        self.head: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._inbox: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._buffered = 0  # received, not yet read: never more than WINDOW
        self._unacked = 0  # read, not yet granted back
        self._credit = WINDOW
        self._credit_changed = asyncio.Event()
        self.reset_reason: str | None = None
        self.sent = self.received = 0
        self.last_active = time.monotonic()

    # -- sending ----------------------------------------------------------------------------

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        while view:
            piece = bytes(view[:FRAME])
            while self._credit < len(piece):
                self._check_open()
                self._credit_changed.clear()
                await self._credit_changed.wait()
            self._check_open()
            await self.mux.throttle(len(piece))
            self._credit -= len(piece)
            await self.mux.send(frame(DATA, self.id, piece))
            self.sent += len(piece)
            self.last_active = time.monotonic()
            view = view[len(piece):]

    async def end(self) -> None:
        self._check_open()
        await self.mux.send(frame(END, self.id))

    async def send_head(self, head: dict[str, Any]) -> None:
        self._check_open()
        await self.mux.send(frame(HEAD, self.id, json.dumps(head).encode()))

    # -- receiving --------------------------------------------------------------------------

    async def read(self) -> bytes:
        """The next piece of the peer's body; ``b""`` once it ended (TunnelError if reset)."""
        piece = await self._inbox.get()
        if piece is None:
            self._inbox.put_nowait(None)  # stays at the end for any later read
            if self.reset_reason is not None:
                raise TunnelError(f"stream reset: {self.reset_reason}")
            return b""
        self._buffered -= len(piece)
        self._unacked += len(piece)
        if self._unacked >= WINDOW // 4:
            grant, self._unacked = self._unacked, 0
            with contextlib.suppress(TunnelError):
                await self.mux.send(frame(CREDIT, self.id, _CREDIT.pack(grant)))
        return piece

    async def body(self) -> AsyncIterator[bytes]:
        while piece := await self.read():
            yield piece

    async def read_all(self, limit: int) -> bytes:
        data = bytearray()
        async for piece in self.body():
            data += piece
            if len(data) > limit:
                raise TunnelError(f"body larger than {limit} bytes")
        return bytes(data)

    # -- the mux's side -----------------------------------------------------------------------

    def _check_open(self) -> None:
        if self.reset_reason is not None:
            raise TunnelError(f"stream reset: {self.reset_reason}")

    def on_data(self, payload: bytes) -> None:
        self._buffered += len(payload)
        self.received += len(payload)
        self.last_active = time.monotonic()
        if self._buffered > WINDOW:  # the peer ignored our credit
            raise TunnelError("peer sent beyond its flow-control window")
        self._inbox.put_nowait(payload)

    def on_credit(self, payload: bytes) -> None:
        (grant,) = _CREDIT.unpack(payload)
        if self._credit + grant > 2 * WINDOW:
            raise TunnelError("peer granted more credit than a window")
        self._credit += grant
        self._credit_changed.set()

    def on_end(self) -> None:
        self._inbox.put_nowait(None)

    def on_reset(self, reason: str) -> None:
        if self.reset_reason is None:
            self.reset_reason = reason or "reset"
        self._inbox.put_nowait(None)
        self._credit_changed.set()
        if not self.head.done():
            self.head.set_exception(TunnelError(f"stream reset: {self.reset_reason}"))
            self.head.exception()  # marked as seen: nobody may be waiting for this head


Opener = Callable[[Stream, dict[str, Any]], Awaitable[None]]


class Mux:
    """The streams of one WebSocket. The relay opens streams (``open``); the seller
    serves them (``on_open``, run as one task per stream)."""

    def __init__(self, ws: Socket, on_open: Opener | None = None,
                 bucket: Bucket | None = None) -> None:
        self.ws = ws
        self.on_open = on_open
        self.bucket = bucket or Bucket(0)
        self.streams: dict[int, Stream] = {}
        self.closed: str | None = None
        self._next = 1
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()

    async def send(self, message: bytes) -> None:
        if self.closed is not None:
            raise TunnelError(f"tunnel closed: {self.closed}")
        async with self._lock:  # whole frames, one at a time
            try:
                await self.ws.send_bytes(message)
            except (ConnectionError, RuntimeError) as exc:
                raise TunnelError(f"tunnel send failed: {exc}") from exc

    async def throttle(self, n: int) -> None:
        await self.bucket.take(n)

    async def open(self, head: dict[str, Any]) -> Stream:
        sid, self._next = self._next, self._next + 1
        stream = self.streams[sid] = Stream(self, sid)
        await self.send(frame(OPEN, sid, json.dumps(head).encode()))
        return stream

    async def reset(self, stream: Stream, reason: str) -> None:
        if stream.reset_reason is None:
            stream.on_reset(reason)
            with contextlib.suppress(TunnelError):
                await self.send(frame(RESET, stream.id, reason.encode()[:200]))
        self.streams.pop(stream.id, None)

    def reset_soon(self, stream: Stream, reason: str) -> None:
        """``reset`` from code that must not wait (a cancelled handler's cleanup)."""
        task = asyncio.ensure_future(self.reset(stream, reason))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def forget(self, stream: Stream) -> None:
        self.streams.pop(stream.id, None)

    async def run(self) -> None:
        """Dispatch frames until the socket closes; then every stream is reset."""
        reason = "tunnel closed"
        try:
            async for message in self.ws:
                if message.type.name != "BINARY":
                    if message.type.name in ("CLOSE", "CLOSING", "CLOSED", "ERROR"):
                        break
                    continue
                await self._dispatch(*parse(message.data))
        except TunnelError as exc:
            reason = exc.message
            with contextlib.suppress(Exception):
                await self.ws.close(code=1002, message=reason.encode()[:120])
        finally:
            self.closed = reason
            for stream in list(self.streams.values()):
                stream.on_reset(reason)
            self.streams.clear()
            for task in list(self._tasks):
                task.cancel()

    async def _dispatch(self, kind: int, sid: int, payload: bytes) -> None:
        if kind == OPEN:
            await self._opened(sid, payload)
            return
        stream = self.streams.get(sid)
        if stream is None:
            return  # a stream this side already ended: late frames are dropped
        try:
            if kind == HEAD:
                head = _json_head(payload)
                if not stream.head.done():
                    stream.head.set_result(head)
            elif kind == DATA:
                stream.on_data(payload)
            elif kind == END:
                stream.on_end()
            elif kind == CREDIT:
                stream.on_credit(payload)
            elif kind == RESET:
                stream.on_reset(payload.decode(errors="replace"))
                self.streams.pop(sid, None)
        except (TunnelError, struct.error, ValueError) as exc:
            await self.reset(stream, str(exc))

    async def _opened(self, sid: int, payload: bytes) -> None:
        if self.on_open is None or sid in self.streams:
            raise TunnelError("unexpected OPEN frame")
        stream = self.streams[sid] = Stream(self, sid)
        task = asyncio.create_task(self._serve(stream, _json_head(payload)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, stream: Stream, head: dict[str, Any]) -> None:
        assert self.on_open is not None
        try:
            await self.on_open(stream, head)
        except TunnelError:
            pass
        except Exception as exc:  # one stream's failure never ends the tunnel
            await self.reset(stream, f"{type(exc).__name__}: {exc}")
        finally:
            self.streams.pop(stream.id, None)


def _json_head(payload: bytes) -> dict[str, Any]:
    if len(payload) > MAX_HEAD:
        raise TunnelError("tunnel head too large")
    try:
        head = json.loads(payload)
    except ValueError as exc:
        raise TunnelError("tunnel head is not JSON") from exc
    if not isinstance(head, dict):
        raise TunnelError("tunnel head is not a JSON object")
    return head
