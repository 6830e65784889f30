"""How buyers reach this seller: directly, or through the exchange operator's relay.

``choose`` decides when selling starts (docs/relay.md): a seller told ``direct`` announces
its URL; ``relay`` always tunnels; ``auto`` asks the exchange to probe the direct URL
(``POST /api/v1/probe``: the exchange calls it back with a nonce) and tunnels when that
fails and the exchange advertises a relay. No UPnP/NAT-PMP: no well-kept asyncio library
does it, and a mapped port still needs the probe — the relay covers every NAT.

:class:`TunnelClient` keeps the seller's one outbound WebSocket to the relay: it answers
the relay's fresh challenge with a signature of the seller's key on every (re)connect, and
hands each stream the relay opens to the endpoint's own ``serve`` (the routes behind the
HTTP endpoint, :class:`~bitwrk.daemon.endpoint.TradeEndpoint`) — so every check of the
endpoint (signed header, nonce, trade) holds unchanged, no loopback HTTP hop costs time,
and the bodies stay the peer channel's ciphertext end to end.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp

from ..client import ExchangeClient
from ..errors import BitwrkError, TunnelError
from ..keys import PrivateKey
from ..protocol import NonceSource, sign_request
from ..retry import backoff, describe
from ..tunnel import MAX_MESSAGE, Mux, Stream
from .peer import HEADER

log = logging.getLogger("bitwrk.seller")
MODES = ("auto", "direct", "relay")
CONNECT_WAIT = 20.0  # seconds selling waits for the first tunnel before giving up on it
LONG_ENOUGH = 30.0  # a tunnel up this long resets the reconnect backoff


class Answered(Protocol):
    """What a served request returns (:class:`~bitwrk.daemon.endpoint.Answer`)."""

    @property
    def status(self) -> int: ...

    @property
    def body(self) -> bytes: ...

    @property
    def content_type(self) -> str: ...


Serve = Callable[[str, str, "str | None", AsyncIterator[bytes]], Awaitable[Answered]]


class RelayRefused(BitwrkError):
    """The relay would not give this seller a tunnel (not registered, wrong signature)."""

    code = "relay_refused"


class TunnelClient:
    """The seller's side of the tunnel: connect, authenticate, serve, reconnect."""

    def __init__(self, relay_url: str, key: PrivateKey, serve: Serve) -> None:
        self.relay_url = relay_url.rstrip("/")
        self.key = key
        self.serve = serve
        self.public_url: str | None = None  # the relay's URL for us, from its welcome
        self.up = asyncio.Event()
        self.state = "connecting"
        self.connects = 0
        self._nonces = NonceSource()
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))
        self._task = asyncio.create_task(self._run())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._session is not None:
            await self._session.close()
        self.up.clear()
        self.state = "closed"

    async def _run(self) -> None:
        failures = 0
        while True:
            started = asyncio.get_running_loop().time()
            try:
                await self._once()
            except (aiohttp.ClientError, OSError, TimeoutError, ValueError, KeyError,
                    BitwrkError) as exc:
                self.state = f"reconnecting: {describe(exc)}"
                log.warning("relay tunnel: %s", describe(exc))
            self.up.clear()
            if asyncio.get_running_loop().time() - started > LONG_ENOUGH:
                failures = 0
            await asyncio.sleep(backoff(failures, base=0.5, cap=10.0))
            failures += 1

    async def _once(self) -> None:
        assert self._session is not None
        async with self._session.ws_connect(
                self.relay_url + "/relay/v1/tunnel", heartbeat=10.0, max_msg_size=MAX_MESSAGE,
                timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=5.0)) as ws:
            hello = await ws.receive_json(timeout=15.0)
            _refused(hello)
            signed = sign_request(self.key, {"action": "tunnel", "nonce": self._nonces(),
                                             "exchange": str(hello["exchange"]),
                                             "challenge": str(hello["challenge"])})
            await ws.send_str(json.dumps(signed))
            welcome = await ws.receive_json(timeout=15.0)
            _refused(welcome)
            self.public_url = str(welcome["url"])
            self.connects += 1
            self.state = "up"
            self.up.set()
            mux = Mux(ws, on_open=self._serve)
            await mux.run()
            raise TunnelError(f"tunnel closed ({mux.closed})")

    async def _serve(self, stream: Stream, head: dict[str, Any]) -> None:
        """One buyer request: served by the endpoint's routes, the answer streamed back."""
        headers = head.get("headers")
        header = headers.get(HEADER) if isinstance(headers, dict) else None
        answer = await self.serve(str(head.get("method")), str(head.get("path")),
                                  str(header) if header is not None else None, stream.body())
        await stream.send_head({"status": answer.status, "content_type": answer.content_type})
        await stream.write(answer.body)
        await stream.end()


def _refused(message: dict[str, Any]) -> None:
    if "error" in message:
        raise RelayRefused(f"the relay refused the tunnel: {message.get('message')}")


@dataclass
class Reach:
    """How buyers reach this seller, for the status page and panel."""

    mode: str = "direct"  # "direct" | "via relay"
    url: str = ""
    detail: str = ""
    tunnel: TunnelClient | None = field(default=None, repr=False)

    async def ready(self, timeout: float) -> None:
        """Wait (bounded) for a dropped tunnel to come back before announcing the URL."""
        if self.tunnel is not None and not self.tunnel.up.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.tunnel.up.wait(), timeout)

    def view(self) -> dict[str, Any]:
        view = {"mode": self.mode, "url": self.url, "detail": self.detail}
        if self.tunnel is not None:
            view["tunnel"] = self.tunnel.state
        return view


async def choose(client: ExchangeClient, mode: str, direct_url: str, serve: Serve,
                 relay_url: str | None = None) -> Reach:
    """Decide how buyers reach us; with a tunnel, it is up when this returns."""
    if mode not in MODES:
        raise BitwrkError(f"reach must be one of {MODES}, not {mode!r}")
    relay_url = relay_url or (await client.info()).get("relay")
    if mode == "direct":
        return Reach("direct", direct_url, "as configured (no probe)")
    if not relay_url:
        if mode == "relay":
            raise BitwrkError("this exchange advertises no relay (and none was given)")
        return Reach("direct", direct_url, "the exchange runs no relay; not probed")
    # The probe also makes the exchange know this address: the relay's condition for a tunnel.
    probe = await _probe(client, direct_url)
    if mode == "auto" and probe.get("reachable"):
        return Reach("direct", direct_url, "reachable: the exchange's probe got through")
    why = "forced (--via-relay)" if mode == "relay" else \
        f"not reachable directly ({probe.get('reason')})"
    assert client.key is not None
    tunnel = TunnelClient(str(relay_url), client.key, serve)
    tunnel.start()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(tunnel.up.wait(), CONNECT_WAIT)
    if tunnel.public_url is None:
        state = tunnel.state
        await tunnel.close()
        if mode == "relay":
            raise BitwrkError(f"no tunnel to the relay {relay_url}: {state}")
        return Reach("direct", direct_url, f"{why}; relay unavailable: {state}")
    return Reach("via relay", tunnel.public_url, why, tunnel)


async def _probe(client: ExchangeClient, url: str) -> dict[str, Any]:
    try:
        answer: dict[str, Any] = await client.probe(url)
        return answer
    except BitwrkError as exc:  # an exchange without probes: treat as not reachable
        return {"reachable": None, "reason": f"probe failed: {exc.message}"}
