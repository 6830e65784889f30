"""Async client of the exchange API (aiohttp), for the daemon, the CLI and the tests.

Signed requests from one client are sent one at a time (an asyncio lock around sign and
send), so nonces reach the exchange in increasing order even when callers run concurrently.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import quote

import aiohttp

from .errors import ApiError, BitwrkError, ReplayError, StaleRevision, error_classes
from .keys import PrivateKey
from .protocol import NonceSource, Value, sign_request

_ERRORS = error_classes()


@dataclass(frozen=True)
class ServerEvent:
    kind: str
    data: dict[str, Any]
    id: int | None


def raise_for_error(status: int, body: Any) -> None:
    if status < 400:
        return
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        data = {k: v for k, v in body.items() if k not in ("error", "message")}
        cls = _ERRORS.get(body["error"], ApiError)
        if cls is ApiError:  # a code this client does not know: keep it for the caller
            data["error"] = body["error"]
        raise cls(str(body.get("message", "")), status=status, **data)
    raise ApiError(f"HTTP {status}: {str(body)[:200]}", status=status)


class ExchangeClient:
    def __init__(
        self,
        base_url: str,
        key: PrivateKey | None = None,
        *,
        session: aiohttp.ClientSession | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.key = key
        self._own_session = session is None
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout, connect=10)
        self._nonces = NonceSource()
        self._sign_lock = asyncio.Lock()
        self._exchange_id: str | None = None

    async def __aenter__(self) -> ExchangeClient:
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    @property
    def address(self) -> str:
        if self.key is None:
            raise BitwrkError("this client has no key")
        return self.key.address

    # -- transport --------------------------------------------------------------------------

    async def get(self, path: str, **params: Any) -> Any:
        query = {k: str(v) for k, v in params.items() if v is not None}
        async with self.session.get(self.base_url + path, params=query) as resp:
            body = await _body(resp)
            raise_for_error(resp.status, body)
            return body

    async def post_signed(self, path: str, fields: dict[str, Value]) -> Any:
        """Sign ``fields`` (adding exchange, address, nonce) and POST them."""
        if self.key is None:
            raise BitwrkError("signing needs a key")
        exchange = await self.exchange_id()
        async with self._sign_lock:
            for attempt in range(2):
                doc = {**fields, "exchange": exchange, "address": self.key.address,
                       "nonce": self._nonces()}
                try:
                    return await self._post(path, sign_request(self.key, doc))
                except ReplayError as exc:
                    # Another process with this key got ahead: move past its nonce once.
                    last = exc.data.get("last")
                    if attempt or not isinstance(last, int):
                        raise
                    self._nonces = NonceSource(start=max(last, self._nonces.last))
        raise AssertionError("unreachable")

    async def _post(self, path: str, body: dict[str, Value]) -> Any:
        async with self.session.post(self.base_url + path, json=body) as resp:
            data = await _body(resp)
            raise_for_error(resp.status, data)
            return data

    # -- exchange resources -------------------------------------------------------------------

    async def info(self) -> dict[str, Any]:
        info: dict[str, Any] = await self.get("/api/v1/info")
        self._exchange_id = info["exchange"]
        return info

    async def exchange_id(self) -> str:
        if self._exchange_id is None:
            await self.info()
        assert self._exchange_id is not None
        return self._exchange_id

    async def openapi(self) -> dict[str, Any]:
        result: dict[str, Any] = await self.get("/api/v1/openapi.json")
        return result

    async def place_bid(self, type: str, article: str, price: int) -> dict[str, Any]:
        fields: dict[str, Value] = {"action": "bid", "type": type, "article": article,
                                    "price": price}
        result: dict[str, Any] = await self.post_signed("/api/v1/bids", fields)
        return result

    async def bid(self, bid_id: int) -> dict[str, Any]:
        result: dict[str, Any] = await self.get(f"/api/v1/bids/{bid_id}")
        return result

    async def cancel_bid(self, bid_id: int) -> dict[str, Any]:
        fields: dict[str, Value] = {"action": "cancel_bid", "bid": bid_id}
        result: dict[str, Any] = await self.post_signed(f"/api/v1/bids/{bid_id}/cancel", fields)
        return result

    async def transaction(self, txid: int) -> dict[str, Any]:
        result: dict[str, Any] = await self.get(f"/api/v1/transactions/{txid}")
        return result

    async def messages(self, txid: int) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self.get(f"/api/v1/transactions/{txid}/messages")
        return result

    async def send_message(
        self, txid: int, action: str, revision: int | None = None, **fields: Value
    ) -> dict[str, Any]:
        """Send a transaction message. Without ``revision`` it is read from the exchange, and
        re-read if the other party's message got in first (buyer and seller both speak in
        ESTABLISHING); with an explicit ``revision`` a stale one is an error."""
        for attempt in range(4):
            current = revision
            if current is None:
                current = int((await self.transaction(txid))["revision"])
            body: dict[str, Value] = {"action": action, "txid": txid, "revision": current,
                                      **fields}
            try:
                result: dict[str, Any] = await self.post_signed(
                    f"/api/v1/transactions/{txid}/messages", body
                )
                return result
            except StaleRevision:
                if revision is not None or attempt == 3:
                    raise
        raise AssertionError("unreachable")

    async def account(self, address: str | None = None) -> dict[str, Any]:
        result: dict[str, Any] = await self.get(f"/api/v1/accounts/{address or self.address}")
        return result

    async def ledger(
        self, address: str | None = None, before: int | None = None, limit: int = 50
    ) -> dict[str, Any]:
        path = f"/api/v1/accounts/{address or self.address}/ledger"
        result: dict[str, Any] = await self.get(path, before=before, limit=limit)
        return result

    async def bids(
        self, address: str | None = None, state: str | None = None, limit: int = 50
    ) -> list[dict[str, Any]]:
        path = f"/api/v1/accounts/{address or self.address}/bids"
        result: list[dict[str, Any]] = await self.get(path, state=state, limit=limit)
        return result

    async def market(self, article: str, interval: int = 60) -> dict[str, Any]:
        path = "/api/v1/market/" + quote(article, safe="/~")
        result: dict[str, Any] = await self.get(path, interval=interval)
        return result

    async def set_relation(self, target: str, type: str = "trusts", enabled: bool = True
                           ) -> dict[str, Any]:
        fields: dict[str, Value] = {"action": "relation", "target": target, "type": type,
                                    "enabled": int(enabled)}
        result: dict[str, Any] = await self.post_signed("/api/v1/relations", fields)
        return result

    async def relations(self, address: str | None = None) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self.get(
            f"/api/v1/relations/{address or self.address}"
        )
        return result

    async def deposit(
        self, account: str, amount: int, *, kind: str, uid: str, ref: str = ""
    ) -> dict[str, Any]:
        """Operator only: credit ``amount`` satoshi to ``account`` (idempotent by ``uid``)."""
        fields: dict[str, Value] = {"action": "deposit", "account": account, "amount": amount,
                                    "kind": kind, "uid": uid, "ref": ref}
        result: dict[str, Any] = await self.post_signed("/api/v1/deposits", fields)
        return result

    async def events(self, address: str | None = None) -> AsyncIterator[ServerEvent]:
        """The server-sent event stream (the first event is ``hello``); ends when the server
        closes it. A private stream (``address``: this client's own) opens with a fresh
        token from a signed ``events_token`` request (service/streams.py)."""
        params = {}
        if address is not None:
            token = await self.post_signed("/api/v1/events/token", {"action": "events_token"})
            params = {"address": address, "token": str(token["token"])}
        timeout = aiohttp.ClientTimeout(total=None, sock_read=None, connect=10)
        async with self.session.get(
            self.base_url + "/api/v1/events", params=params, timeout=timeout
        ) as resp:
            if resp.status >= 400:
                raise_for_error(resp.status, await _body(resp))
            async for event in _parse_sse(resp.content):
                yield event

    # -- Bitcoin payments (DESIGN §8) -------------------------------------------------------

    async def request_deposit_address(self) -> dict[str, Any]:
        """This key's unused deposit address (a new one once the last has been paid):
        ``address``, ``index`` and a ``bitcoin:`` ``uri`` for a QR code."""
        fields: dict[str, Value] = {"action": "deposit_address"}
        result: dict[str, Any] = await self.post_signed("/api/v1/deposit-addresses", fields)
        return result

    async def balance(self, address: str | None = None) -> dict[str, Any]:
        """Available and blocked balance, deposit address, pending deposits (each with its
        confirmations and the number required) and the sum of pending withdrawals."""
        return await self.account(address)

    async def chain_deposits(self, address: str | None = None, limit: int = 50
                             ) -> list[dict[str, Any]]:
        path = f"/api/v1/accounts/{address or self.address}/deposits"
        result: list[dict[str, Any]] = await self.get(path, limit=limit)
        return result

    async def withdraw(self, to: str, amount: int) -> dict[str, Any]:
        """Ask for ``amount`` satoshi to be paid to bitcoin address ``to``."""
        fields: dict[str, Value] = {"action": "withdraw", "to": to, "amount": amount}
        result: dict[str, Any] = await self.post_signed("/api/v1/withdrawals", fields)
        return result

    async def cancel_withdrawal(self, withdrawal_id: int) -> dict[str, Any]:
        fields: dict[str, Value] = {"action": "cancel_withdrawal", "withdrawal": withdrawal_id}
        result: dict[str, Any] = await self.post_signed(
            f"/api/v1/withdrawals/{withdrawal_id}/cancel", fields)
        return result

    async def withdrawals(self, address: str | None = None, limit: int = 50
                          ) -> list[dict[str, Any]]:
        path = f"/api/v1/accounts/{address or self.address}/withdrawals"
        result: list[dict[str, Any]] = await self.get(path, limit=limit)
        return result


async def _body(resp: aiohttp.ClientResponse) -> Any:
    text = await resp.text()
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


async def _parse_sse(stream: aiohttp.StreamReader) -> AsyncIterator[ServerEvent]:
    kind: str = "message"
    event_id: int | None = None
    data: list[str] = []
    async for raw in stream:
        line = raw.decode().rstrip("\r\n")
        if not line:
            if data:
                yield ServerEvent(kind, json.loads("\n".join(data)), event_id)
            kind, event_id, data = "message", None, []
        elif line.startswith(":"):
            continue
        else:
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "event":
                kind = value
            elif name == "data":
                data.append(value)
            elif name == "id":
                event_id = int(value)
