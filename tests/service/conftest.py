"""Fixtures for service tests: the real app factory, a fake clock, funded parties."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from service import Config, create_app
from service.appkeys import BUS, EXCHANGE
from service.config import Timeouts
from service.exchange import Exchange
from service.trades import retire_due
from service.views import audit_totals
from tests.conftest import ARTICLE, Clock, Party, receipt, sealed_key, work_secret
from tools.pgserver import PgServer


class Api:
    """The test client plus the exchange's id and a few shortcuts."""

    def __init__(self, client: TestClient, operator: Party, clock: Clock) -> None:
        self.client = client
        self.operator = operator
        self.clock = clock
        self.exchange_id = self.ex.exchange_id

    @property
    def ex(self) -> Exchange:
        return self.client.server.app[EXCHANGE]

    async def post(self, path: str, body: Any, status: int = 200) -> Any:
        resp = await self.client.post(path, json=body)
        data = await resp.json()
        assert resp.status == status, data
        return data

    async def get(self, path: str, status: int = 200, **params: Any) -> Any:
        resp = await self.client.get(path, params=params)
        data = await resp.json()
        assert resp.status == status, data
        return data

    def signed(self, party: Party, **fields: Any) -> dict[str, Any]:
        return party.sign(self.exchange_id, **fields)

    async def fund(self, party: Party, amount: int) -> None:
        import secrets

        body = self.signed(self.operator, action="deposit", uid="t-" + secrets.token_hex(8),
                           account=party.address, amount=amount, kind="play", ref="test")
        await self.post("/api/v1/deposits", body)

    async def bid(self, party: Party, side: str, price: int, article: str = ARTICLE,
                  status: int = 200) -> Any:
        body = self.signed(party, action="bid", type=side, article=article, price=price)
        return await self.post("/api/v1/bids", body, status)

    async def msg(self, party: Party, txid: int, action: str, status: int = 200,
                  revision: int | None = None, **fields: Any) -> Any:
        if revision is None:
            revision = (await self.get(f"/api/v1/transactions/{txid}"))["revision"]
        body = self.signed(party, action=action, txid=txid, revision=revision, **fields)
        return await self.post(f"/api/v1/transactions/{txid}/messages", body, status)

    async def balances(self, party: Party) -> tuple[int, int]:
        acct = await self.get(f"/api/v1/accounts/{party.address}")
        return acct["available"], acct["blocked"]

    async def totals(self) -> dict[str, int]:
        totals: dict[str, int] = (await self.get("/api/v1/info"))["totals"]
        return totals

    def retire(self) -> None:
        self.client.server.app[BUS].publish(retire_due(self.ex, self.clock()))

    async def trade(self, buyer: Party, seller: Party, price: int = 1000) -> int:
        """Match a sell and a buy at ``price``; the transaction id."""
        await self.bid(seller, "sell", price)
        txid: int = (await self.bid(buyer, "buy", price))["txid"]
        return txid

    async def to_working(self, buyer: Party, seller: Party, txid: int) -> None:
        workhash, secret, digest = work_secret()
        await self.msg(buyer, txid, "work", workhash=workhash, worksecrethash=digest)
        await self.msg(seller, txid, "endpoint", workerurl="http://127.0.0.1:9/w/x")
        await self.msg(seller, txid, "received", secretproof=secret)

    async def to_unverified(self, buyer: Party, seller: Party, txid: int) -> None:
        import hashlib
        import secrets

        await self.to_working(buyer, seller, txid)
        enc = hashlib.sha256(secrets.token_bytes(8)).hexdigest()
        await self.msg(seller, txid, "result", encresulthash=enc,
                       receipt=self.receipt(buyer, seller, txid, enc), resultkey=sealed_key())

    def receipt(self, buyer: Party, seller: Party, txid: int, enc: str) -> str:
        return receipt(buyer.key, self.ex.exchange_id, txid, seller.address, enc)

    async def check_invariant(self) -> None:
        t = await self.totals()
        assert t["available"] + t["blocked"] + t["fees"] == t["deposits"] == -t["world"]
        assert t == audit_totals(self.ex)  # the running totals equal a full recount

    async def stream(self, party: Party | None = None) -> Any:
        """An open event stream: the public one, or ``party``'s private one (with a token)."""
        if party is None:
            return await self.client.get("/api/v1/events")
        token = await self.post("/api/v1/events/token",
                                self.signed(party, action="events_token"))
        params = {"address": party.address, "token": token["token"]}
        return await self.client.get("/api/v1/events", params=params)


def make_config(tmp_path: Path, operator: Party, **overrides: Any) -> Config:
    args: dict[str, Any] = {"db_path": tmp_path / "exchange.sqlite3",
                            "operator": operator.address, "network": "regtest",
                            "timeouts": Timeouts()}
    args.update(overrides)
    return Config(**args)


@pytest.fixture
def operator() -> Party:
    return Party()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest) -> str | None:
    """Every service test runs on both stores: None is the SQLite file in tmp_path, else a
    fresh database on the session's PostgreSQL (tests/conftest.py)."""
    if request.param == "sqlite":
        return None
    if request.node.get_closest_marker("sqlite_only") is not None:
        pytest.skip("reads the SQLite file itself")
    server: PgServer = request.getfixturevalue("pg_server")
    return server.new_database()


@pytest.fixture
async def api(aiohttp_client: Any, tmp_path: Path, operator: Party, clock: Clock,
              store_url: str | None) -> AsyncIterator[Api]:
    config = make_config(tmp_path, operator, store_url=store_url)
    client = await aiohttp_client(create_app(config, clock))
    yield Api(client, operator, clock)


@pytest.fixture
async def buyer(api: Api) -> Party:
    party = Party()
    await api.fund(party, 1_000_000)
    return party


@pytest.fixture
def seller() -> Party:
    return Party()
