"""Async client of the exchange API (aiohttp), for the daemon, the CLI and the tests.

Signed requests from one client are sent one at a time (an asyncio lock around sign and
send), so nonces reach the exchange in increasing order even when callers run concurrently.

Outages: with ``retry_for`` > 0 a call that fails in transit (connection refused or lost,
502-504, a timeout) is repeated with capped, jittered exponential backoff for up to that
many seconds, then :class:`ExchangeUnreachable` says since when. A signed request is resent
as the same signed document: if the first copy did land, the exchange refuses the copy as
a replay and the caller reads the result back instead of acting twice.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp

from .errors import (
    ApiError,
    BitwrkError,
    ExchangeUnreachable,
    ReplayError,
    StaleRevision,
    WireError,
    error_classes,
)
from .keys import PrivateKey
from .protocol import NonceSource, SellerTerms, Value, sign_request
from .retry import backoff, describe, is_transient
from .wire import Account, Bid, Ledger, Message, Transaction, WireRecord

log = logging.getLogger("bitwrk.client")
_ERRORS = error_classes()
T = TypeVar("T")
R = TypeVar("R", bound=WireRecord)
__all__ = ["ExchangeClient", "Landed", "ServerEvent", "backoff", "describe", "is_transient",
           "raise_for_error"]
class Landed(ReplayError):
    """A resent signed request was refused as a replay: its first copy reached the exchange
    (the answer was lost in transit). Read the result back instead of sending it again."""

    code = "landed"


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
    """One participant's HTTP client for an exchange: owns the session, the signing key
    and its nonces.

    Reads (``info``, ``bid``, ``transaction``, ``account``...) are plain GETs; every
    state-changing call signs its canonical document (``post_signed``). With ``retry_for``
    set it rides out an exchange outage, resending a signed request as is and reading back
    one that had landed (``Landed``). An error response is raised as the class of its code
    (``bitwrk.errors``), so callers catch ``PaymentsDisabled`` or ``WrongPhase``, not text.
    """

    def __init__(
        self,
        base_url: str,
        key: PrivateKey | None = None,
        *,
        session: aiohttp.ClientSession | None = None,
        timeout: float = 30.0,
        retry_for: float = 0.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.key = key
        self._own_session = session is None
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout, connect=10)
        self._nonces = NonceSource()
        self._sign_lock = asyncio.Lock()
        self._exchange_id: str | None = None
        self.retry_for = retry_for  # seconds a failed call is retried; 0: errors pass through
        self.unreachable_since: float | None = None  # epoch time of the first failure
        self.last_failure = ""

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

    async def retrying(self, call: Callable[[], Awaitable[T]]) -> T:
        """``call()``, repeated after failures in transit for up to ``retry_for`` seconds."""
        started = time.monotonic()
        attempt = 0
        while True:
            try:
                result = await call()
            except Exception as exc:
                if not is_transient(exc):
                    self._reachable()  # it answered, even if with a refusal
                    raise
                self._unreachable(exc)
                waited = time.monotonic() - started
                if waited >= self.retry_for:
                    if self.retry_for <= 0:
                        raise
                    raise ExchangeUnreachable(
                        f"exchange {self.base_url} unreachable for {waited:.0f} s"
                        f" ({describe(exc)})", since=self.unreachable_since) from exc
                await asyncio.sleep(min(backoff(attempt), self.retry_for - waited + 0.05))
                attempt += 1
                continue
            self._reachable()
            return result

    def outage(self) -> str | None:
        """"exchange unreachable since …, retrying (why)" while it is; None otherwise."""
        if self.unreachable_since is None:
            return None
        since = time.strftime("%H:%M:%S", time.localtime(self.unreachable_since))
        return f"exchange unreachable since {since}, retrying ({self.last_failure})"

    def _unreachable(self, exc: BaseException) -> None:
        self.last_failure = describe(exc)
        if self.unreachable_since is None:
            self.unreachable_since = time.time()
            if self.retry_for > 0:
                log.warning("exchange %s unreachable (%s); retrying", self.base_url,
                            self.last_failure)

    def _reachable(self) -> None:
        if self.unreachable_since is not None:
            if self.retry_for > 0:
                log.warning("exchange %s reachable again after %.1f s", self.base_url,
                            time.time() - self.unreachable_since)
            self.unreachable_since = None

    async def get(self, path: str, **params: Any) -> Any:
        query = {k: str(v) for k, v in params.items() if v is not None}

        async def once() -> Any:
            async with self.session.get(self.base_url + path, params=query) as resp:
                body = await _body(resp)
                raise_for_error(resp.status, body)
                return body

        return await self.retrying(once)

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
                    return await self._post_resending(path, sign_request(self.key, doc))
                except Landed:
                    raise
                except ReplayError as exc:
                    # Another process with this key got ahead: move past its nonce once.
                    last = exc.data.get("last")
                    if attempt or not isinstance(last, int):
                        raise
                    self._nonces = NonceSource(start=max(last, self._nonces.last))
        raise AssertionError("unreachable")

    async def _post_resending(self, path: str, body: dict[str, Value]) -> Any:
        """POST one signed document, resending that same document after failures in
        transit; a replay refusal of a resent copy means the first one landed."""
        sent = [0]

        async def once() -> Any:
            sent[0] += 1
            try:
                return await self._post(path, body)
            except ReplayError as exc:
                last, nonce = exc.data.get("last"), body["nonce"]
                if sent[0] > 1 and isinstance(last, int) and isinstance(nonce, int) \
                        and last >= nonce:
                    raise Landed(f"{path}: an earlier copy of this request was applied",
                                 nonce=body["nonce"]) from exc
                raise

        return await self.retrying(once)

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

    async def place_bid(self, type: str, article: str, price: int,
                        terms: SellerTerms | None = None) -> Bid:
        """Place a bid; a buy bid's ``terms`` (signed with it) say which sellers may fill it."""
        fields: dict[str, Value] = {"action": "bid", "type": type, "article": article,
                                    "price": price, **(terms.to_fields() if terms else {})}
        sent = time.time()
        try:
            return Bid.from_json(await self.post_signed("/api/v1/bids", fields))
        except Landed:
            return await self._landed_bid(type, article, price, sent)

    async def _landed_bid(self, type: str, article: str, price: int, sent: float) -> Bid:
        """The bid whose acknowledgement was lost: this client's newest with these terms
        (signed requests of one client go one at a time, so none came after it)."""
        for bid in await self.bids(limit=20):
            if ((bid.type, bid.article, bid.price) == (type, article, price)
                    and bid.created >= sent - 60):
                return bid
        raise BitwrkError("a bid was acknowledged as placed but cannot be found")

    async def bid(self, bid_id: int) -> Bid:
        return Bid.from_json(await self.get(f"/api/v1/bids/{bid_id}"))

    async def cancel_bid(self, bid_id: int) -> Bid:
        fields: dict[str, Value] = {"action": "cancel_bid", "bid": bid_id}
        try:
            return Bid.from_json(await self.post_signed(f"/api/v1/bids/{bid_id}/cancel",
                                                        fields))
        except Landed:
            return await self.bid(bid_id)

    async def transaction(self, txid: int) -> Transaction:
        """The transaction with its messages."""
        return Transaction.from_json(await self.get(f"/api/v1/transactions/{txid}"))

    async def messages(self, txid: int) -> list[Message]:
        found = await self.get(f"/api/v1/transactions/{txid}/messages")
        return _records(Message, found, f"messages of transaction {txid}")

    async def send_message(
        self, txid: int, action: str, revision: int | None = None, **fields: Value
    ) -> Transaction:
        """Send a transaction message; the answer is the transaction after it (without its
        messages). Without ``revision`` it is read from the exchange, and re-read if the
        other party's message got in first (buyer and seller both speak in ESTABLISHING);
        with an explicit ``revision`` a stale one is an error."""
        for attempt in range(4):
            current = revision
            if current is None:
                current = (await self.transaction(txid)).revision
            body: dict[str, Value] = {"action": action, "txid": txid, "revision": current,
                                      **fields}
            try:
                return Transaction.from_json(await self.post_signed(
                    f"/api/v1/transactions/{txid}/messages", body))
            except Landed:
                return await self.transaction(txid)
            except StaleRevision:
                if revision is not None or attempt == 3:
                    raise
        raise AssertionError("unreachable")

    async def account(self, address: str | None = None) -> Account:
        """Available and blocked balance, deposit address, pending deposits (each with its
        confirmations and the number required), pending withdrawals and reputation."""
        return Account.from_json(await self.get(f"/api/v1/accounts/{address or self.address}"))

    async def ledger(
        self, address: str | None = None, before: int | None = None, limit: int = 50
    ) -> Ledger:
        path = f"/api/v1/accounts/{address or self.address}/ledger"
        return Ledger.from_json(await self.get(path, before=before, limit=limit))

    async def bids(
        self, address: str | None = None, state: str | None = None, limit: int = 50
    ) -> list[Bid]:
        """The account's bids, newest first."""
        path = f"/api/v1/accounts/{address or self.address}/bids"
        return _records(Bid, await self.get(path, state=state, limit=limit), "bids")

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
        """The server-sent event stream (the first event is ``hello``, carrying the
        exchange's ``epoch``: a new one after every exchange start); ends when the server
        closes it. Events sent while a client was away are not replayed: after every
        (re)connect the client re-reads what it waits for (see ``daemon/watch.py``). A
        private stream (``address``: this client's own) opens with a fresh token from a
        signed ``events_token`` request (service/streams.py)."""
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

    # -- Bitcoin payments (docs/operator.md) -------------------------------------------------------

    async def request_deposit_address(self) -> dict[str, Any]:
        """This key's unused deposit address (a new one once the last has been paid):
        ``address``, ``index`` and a ``bitcoin:`` ``uri`` for a QR code."""
        fields: dict[str, Value] = {"action": "deposit_address"}
        result: dict[str, Any] = await self.post_signed("/api/v1/deposit-addresses", fields)
        return result

    async def balance(self, address: str | None = None) -> Account:
        """The account (its balances, deposit address, pending deposits and withdrawals)."""
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


def _records(cls: type[R], found: object, what: str) -> list[R]:
    if not isinstance(found, list):
        raise WireError(f"{what}: expected a list, got {type(found).__name__}", field=what)
    return [cls.from_json(item, f"{cls.__name__}[{i}]") for i, item in enumerate(found)]


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
