"""Deposits end to end against the fake Core and Esplora servers: confirmations, restarts,
reorgs, minimums, backend failures and outputs seen twice."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from service.payments.chain import ChainBackend, SeenOutput
from service.payments.deposits import apply_scan
from tests.conftest import Clock, Party
from tests.payments.conftest import check_money, make_api, watcher_for
from tests.payments.fakechain import FakeChain
from tests.service.conftest import Api


async def new_address(api: Api, party: Party, status: int = 200) -> Any:
    body = api.signed(party, action="deposit_address")
    return await api.post("/api/v1/deposit-addresses", body, status)


async def test_deposit_confirms_and_is_credited_once(api: Api, chain: FakeChain,
                                                     backend: ChainBackend) -> None:
    alice = Party()
    got = await new_address(api, alice)
    assert got["uri"] == "bitcoin:" + got["address"] and got["index"] == 0
    assert (await new_address(api, alice))["address"] == got["address"]  # unused: same one
    watcher = watcher_for(api, backend)
    txid = chain.pay(got["address"], 120_000)
    await watcher.poll_once()
    acct = await api.get(f"/api/v1/accounts/{alice.address}")
    assert acct["deposit_address"] == got["address"] and acct["available"] == 0
    assert acct["pending_deposits"] == [
        {"txid": txid, "vout": 1, "amount": 120_000, "confirmations": 0, "required": 6}]
    chain.mine(5)
    await watcher.poll_once()
    acct = await api.get(f"/api/v1/accounts/{alice.address}")
    assert acct["pending_deposits"][0]["confirmations"] == 5 and acct["available"] == 0
    chain.mine(1)
    for _ in range(3):
        await watcher.poll_once()
    acct = await api.get(f"/api/v1/accounts/{alice.address}")
    assert acct["available"] == 120_000 and acct["pending_deposits"] == []
    deposit = await api.get(f"/api/v1/deposits/btc:{txid}:1")
    assert deposit["kind"] == "bitcoin" and deposit["amount"] == 120_000
    listed = await api.get(f"/api/v1/accounts/{alice.address}/deposits")
    assert [(d["state"], d["credited"]) for d in listed] == [("credited", True)]
    assert (await check_money(api))["deposits"] == 120_000
    # paid once: the next request gets a fresh address
    assert (await new_address(api, alice))["index"] == 1


async def test_restart_does_not_credit_again(aiohttp_client: Any, tmp_path: Path,
                                             operator: Party, clock: Clock, chain: FakeChain,
                                             backend: ChainBackend) -> None:
    api = await make_api(aiohttp_client, tmp_path, operator, clock)
    alice = Party()
    address = (await new_address(api, alice))["address"]
    chain.pay(address, 50_000)
    chain.mine(6)
    await watcher_for(api, backend).poll_once()
    await api.client.close()
    again = await make_api(aiohttp_client, tmp_path, operator, clock)
    chain.mine(3)
    await watcher_for(again, backend).poll_once()
    assert (await again.balances(alice))[0] == 50_000
    ledger = await again.get(f"/api/v1/accounts/{alice.address}/ledger")
    assert [m["kind"] for m in ledger["movements"]] == ["deposit"]
    await check_money(again)


async def test_reorg_drops_an_unconfirmed_payment(api: Api, chain: FakeChain,
                                                  backend: ChainBackend) -> None:
    alice, bob = Party(), Party()
    a = (await new_address(api, alice))["address"]
    b = (await new_address(api, bob))["address"]
    double_spent, survivor = chain.pay(a, 70_000), chain.pay(b, 80_000)
    chain.mine(3)
    watcher = watcher_for(api, backend)
    await watcher.poll_once()
    chain.reorg(3, drop={double_spent})
    await watcher.poll_once()
    states = {d["txid"]: d for d in await api.get(f"/api/v1/accounts/{alice.address}/deposits")}
    assert states[double_spent]["state"] == "dropped"
    bob_view = await api.get(f"/api/v1/accounts/{bob.address}")
    assert bob_view["pending_deposits"][0]["confirmations"] == 0  # back in the mempool
    chain.mine(6)
    await watcher.poll_once()
    assert await api.balances(alice) == (0, 0)
    assert (await api.balances(bob))[0] == 80_000
    listed = await api.get(f"/api/v1/accounts/{bob.address}/deposits")
    assert [(d["txid"], d["state"]) for d in listed] == [(survivor, "credited")]
    await check_money(api)


async def test_below_minimum_is_recorded_not_credited(api: Api, chain: FakeChain,
                                                      backend: ChainBackend) -> None:
    alice = Party()
    chain.pay((await new_address(api, alice))["address"], 9_999)
    chain.mine(6)
    await watcher_for(api, backend).poll_once()
    listed = await api.get(f"/api/v1/accounts/{alice.address}/deposits")
    assert [(d["state"], d["credited"], d["amount"]) for d in listed] == [
        ("below_minimum", False, 9_999)]
    assert await api.balances(alice) == (0, 0)
    assert (await check_money(api))["deposits"] == 0


@pytest.mark.parametrize("failure", ["timeout", "garbage", "503"])
async def test_backend_failure_credits_nothing_and_retries(
    api: Api, chain: FakeChain, backend: ChainBackend, failure: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    alice = Party()
    chain.pay((await new_address(api, alice))["address"], 60_000)
    chain.mine(6)
    watcher = watcher_for(api, backend)
    chain.failures = [failure] * 4
    with caplog.at_level(logging.WARNING, "bitwrk.payments"):
        await watcher.step()
        if chain.failures:
            await watcher.step()
    assert watcher.failures >= 1 and watcher.next_delay() > watcher.cfg.poll_seconds
    assert "nothing credited" in caplog.text
    assert await api.balances(alice) == (0, 0)
    chain.failures = []
    await watcher.step()
    assert watcher.failures == 0 and (await api.balances(alice))[0] == 60_000


async def test_an_output_seen_twice_is_credited_once(api: Api) -> None:
    alice = Party()
    address = (await new_address(api, alice))["address"]
    out = SeenOutput("ab" * 32, 0, address, 30_000, 7, "cd" * 32)
    stranger = SeenOutput("ef" * 32, 0, "bcrt1qnotours", 10**8, 9)
    apply_scan(api.ex, [out, out, stranger])
    apply_scan(api.ex, [out])
    forged = SeenOutput(out.txid, 0, address, 31_000, 8)  # same outpoint, other amount
    apply_scan(api.ex, [forged])
    assert (await api.balances(alice))[0] == 30_000
    assert (await check_money(api))["deposits"] == 30_000


async def test_addresses_are_rate_limited_and_never_shared(api: Api, chain: FakeChain) -> None:
    alice, bob = Party(), Party()
    seen = set()
    for _ in range(3):
        got = await new_address(api, alice)
        seen.add(got["address"])
        chain.pay(got["address"], 20_000)
        apply_scan(api.ex, [SeenOutput(t.txid, 1, t.outputs[1][0], 20_000, 0)
                            for t in chain.txs.values()])
    refused = await new_address(api, alice, status=429)
    assert refused["error"] == "rate_limited" and refused["retry_after"] > 0
    other = await new_address(api, bob)
    assert other["address"] not in seen and other["index"] == 3
    api.clock.advance(3601)
    assert (await new_address(api, alice))["index"] == 4


async def test_app_runs_the_watcher_when_configured(aiohttp_client: Any, tmp_path: Path,
                                                    operator: Party, clock: Clock,
                                                    chain: FakeChain) -> None:
    import asyncio

    from aiohttp.test_utils import TestServer

    from tests.payments.fakechain import esplora_app

    server = TestServer(esplora_app(chain))
    await server.start_server()
    try:
        api = await make_api(aiohttp_client, tmp_path, operator, clock, backend="esplora",
                             backend_url=str(server.make_url("")), poll_seconds=0.02)
        alice = Party()
        chain.pay((await new_address(api, alice))["address"], 77_000)
        chain.mine(6)
        for _ in range(200):
            if (await api.balances(alice))[0]:
                break
            await asyncio.sleep(0.02)
        assert (await api.balances(alice))[0] == 77_000
        await api.client.close()
    finally:
        await server.close()
