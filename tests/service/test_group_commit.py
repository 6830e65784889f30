"""Group commit: concurrent requests share a COMMIT, yet each succeeds or fails alone."""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any

import pytest

from bitwrk.errors import InsufficientFunds
from service.appkeys import COMMITTER
from service.errors import Busy
from tests.conftest import ARTICLE, Party
from tests.service.conftest import Api


async def test_a_refused_request_in_a_group_leaves_the_others_intact(
    api: Api, buyer: Party, seller: Party
) -> None:
    broke = Party()
    bodies = [api.signed(seller, action="bid", type="sell", article=ARTICLE, price=500),
              api.signed(broke, action="bid", type="buy", article=ARTICLE, price=900),
              api.signed(buyer, action="bid", type="buy", article=ARTICLE, price=900)]
    committer = api.client.server.app[COMMITTER]
    commits: list[str] = []
    api.ex.db.set_trace_callback(lambda sql: commits.append(sql) if sql == "COMMIT" else None)
    futures = [committer.submit(lambda b=b: api.ex.place_bid((b, "", ""))) for b in bodies]
    results = await asyncio.gather(*futures, return_exceptions=True)
    api.ex.db.set_trace_callback(None)
    assert commits == ["COMMIT"]  # one transaction for the group
    sold, refused, bought = results
    assert isinstance(refused, InsufficientFunds)
    assert bought[0]["state"] == "matched" and bought[0]["txid"]  # type: ignore[index]
    assert (await api.get(f"/api/v1/bids/{sold[0]['id']}"))["state"] == "matched"  # type: ignore[index]
    assert (await api.get(f"/api/v1/accounts/{broke.address}"))["last_nonce"] == 0
    await api.check_invariant()


async def test_a_failed_commit_refuses_the_whole_group_and_restores_memory(
    api: Api, buyer: Party, seller: Party, monkeypatch: pytest.MonkeyPatch
) -> None:
    await api.bid(seller, "sell", 500)
    committer = api.client.server.app[COMMITTER]
    real = api.ex.db

    class FailingCommit:
        """The store refuses to commit (disk full, say)."""

        def __getattr__(self, name: str) -> Any:
            return getattr(real, name)

        def execute(self, sql: str, *args: Any) -> Any:
            if sql == "COMMIT":
                raise sqlite3.OperationalError("database or disk is full")
            return real.execute(sql, *args)

    monkeypatch.setattr(api.ex, "db", FailingCommit())
    body = api.signed(buyer, action="bid", type="buy", article=ARTICLE, price=900)
    with pytest.raises(Busy):
        await committer.submit(lambda: api.ex.place_bid((body, "", "")))
    monkeypatch.setattr(api.ex, "db", real)
    # nothing of the refused group is stored, and the book still has the resting sell
    assert (await api.balances(buyer)) == (1_000_000, 0)
    assert (await api.bid(buyer, "buy", 900))["state"] == "matched"
    await api.check_invariant()
