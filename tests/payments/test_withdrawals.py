"""Withdrawals: signed requests with limits, cancellation, export as one unsigned PSBT that
the operator's offline key signs, and payment seen by `payouts confirm` or the watcher."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from embit.finalizer import finalize_psbt
from embit.psbt import PSBT

from service.__main__ import main as service_main
from service.payments.chain import ChainBackend, SeenOutput
from service.payments.deposits import apply_scan
from tests.conftest import Clock, Party
from tests.payments.conftest import REGTEST_ELSEWHERE, ROOT, check_money, make_api, watcher_for
from tests.payments.fakechain import FakeChain
from tests.service.conftest import Api

DEST = REGTEST_ELSEWHERE


async def chain_fund(api: Api, party: Party, amount: int, tag: str) -> None:
    """A confirmed on-chain deposit to ``party`` (so the exchange has outputs to spend)."""
    body = api.signed(party, action="deposit_address")
    address = (await api.post("/api/v1/deposit-addresses", body))["address"]
    apply_scan(api.ex, [SeenOutput(tag * 32, 0, address, amount, 6)])


async def withdraw(api: Api, party: Party, amount: int, to: Any = DEST,
                   status: int = 200) -> Any:
    body = api.signed(party, action="withdraw", to=to, amount=amount)
    return await api.post("/api/v1/withdrawals", body, status)


async def test_withdraw_and_cancel(api: Api) -> None:
    alice = Party()
    await api.fund(alice, 300_000)
    w = await withdraw(api, alice, 100_000)
    assert w["state"] == "pending" and w["amount"] == 100_000
    acct = await api.get(f"/api/v1/accounts/{alice.address}")
    assert acct["available"] == 200_000 and acct["pending_withdrawals"] == 100_000
    assert (await check_money(api))["pending_withdrawals"] == 100_000
    body = api.signed(alice, action="cancel_withdrawal", withdrawal=w["id"])
    cancelled = await api.post(f"/api/v1/withdrawals/{w['id']}/cancel", body)
    assert cancelled["state"] == "cancelled"
    assert (await api.balances(alice))[0] == 300_000
    again = await api.post(f"/api/v1/withdrawals/{w['id']}/cancel",
                           api.signed(alice, action="cancel_withdrawal", withdrawal=w["id"]),
                           409)
    assert again["error"] == "wrong_phase"
    kinds = [m["kind"] for m in (await api.get(f"/api/v1/accounts/{alice.address}/ledger")
                                 )["movements"]]
    assert kinds == ["withdrawal_cancel", "withdrawal", "deposit"]
    await check_money(api)


async def test_bad_withdrawals_change_nothing(api: Api) -> None:
    alice, mallory = Party(), Party()
    await api.fund(alice, 2_000_000)
    ok = await withdraw(api, alice, 600_000)
    before = await api.totals()
    cases: list[tuple[Any, int, int, str]] = [
        ("tb1qw508d6qejxtdg4y5r3zarvary0c5xw7kxpjzsx", 60_000, 400, "bad_address"),
        ("bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu", 60_000, 400, "bad_address"),
        ("bcrt1qnotanaddress", 60_000, 400, "bad_address"),
        (12345, 60_000, 400, "bad_address"),
        (DEST, 49_999, 400, "invalid_request"),
        (DEST, 1_500_000, 402, "insufficient_funds"),
        (DEST, 400_001, 403, "limit_exceeded"),
        (DEST, -5, 400, "invalid_request"),
        (DEST, "60000", 400, "invalid_request"),
    ]
    for to, amount, status, code in cases:
        assert (await withdraw(api, alice, amount, to, status))["error"] == code, (to, amount)
    replay = api.signed(alice, action="withdraw", to=DEST, amount=60_000)
    await api.post("/api/v1/withdrawals", replay)
    assert (await api.post("/api/v1/withdrawals", replay, 409))["error"] == "replayed"
    steal = api.signed(mallory, action="cancel_withdrawal", withdrawal=ok["id"])
    assert (await api.post(f"/api/v1/withdrawals/{ok['id']}/cancel", steal, 403)
            )["error"] == "forbidden"
    after = await api.totals()
    assert after["pending_withdrawals"] == before["pending_withdrawals"] + 60_000
    assert after["deposits"] == before["deposits"]
    await check_money(api)


async def test_payments_disabled(aiohttp_client: Any, tmp_path: Path, operator: Party,
                                 clock: Clock) -> None:
    api = await make_api(aiohttp_client, tmp_path, operator, clock, xpub=None)
    alice = Party()
    body = api.signed(alice, action="deposit_address")
    assert (await api.post("/api/v1/deposit-addresses", body, 404)
            )["error"] == "payments_disabled"
    assert (await api.get(f"/api/v1/accounts/{alice.address}"))["deposit_address"] is None


async def test_export_sign_offline_and_confirm(api: Api, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    alice, bob = Party(), Party()
    await chain_fund(api, alice, 500_000, "a1")
    await chain_fund(api, bob, 300_000, "b2")
    first = await withdraw(api, alice, 200_000)
    second = await withdraw(api, bob, 100_000, "2N8hwP1WmJrFF5QWABn38y63uYLhnJYJYTF")
    db = str(tmp_path / "exchange.sqlite3")
    assert service_main(["payouts", "--db", db, "export", "--fee-rate", "3"]) == 0
    encoded = capsys.readouterr().out.strip()
    psbt = PSBT.from_string(encoded)
    assert [o.value for o in psbt.tx.vout[:2]] == [200_000, 100_000]
    assert psbt.fee() == sum(i.witness_utxo.value for i in psbt.inputs) - sum(
        o.value for o in psbt.tx.vout)
    cancel = api.signed(alice, action="cancel_withdrawal", withdrawal=first["id"])
    assert (await api.post(f"/api/v1/withdrawals/{first['id']}/cancel", cancel, 409)
            )["error"] == "wrong_phase"
    # the operator's offline wallet signs; the txid does not change (segwit inputs)
    assert psbt.sign_with(ROOT) == len(psbt.inputs)
    signed = finalize_psbt(psbt)
    batch_txid = (await api.get(f"/api/v1/withdrawals/{first['id']}"))["txid"]
    assert signed.txid().hex() == batch_txid
    assert service_main(["payouts", "--db", db, "confirm", batch_txid]) == 0
    capsys.readouterr()
    for w in (first, second):
        assert (await api.get(f"/api/v1/withdrawals/{w['id']}"))["state"] == "paid"
    t = await check_money(api)
    assert t["paid_withdrawals"] == 300_000 and t["pending_withdrawals"] == 0
    assert service_main(["payouts", "--db", db, "confirm", batch_txid]) == 0  # idempotent
    assert service_main(["payouts", "--db", db, "confirm", "00" * 32]) == 1
    assert service_main(["payouts", "--db", db, "list"]) == 0
    assert batch_txid in capsys.readouterr().out


async def test_export_refuses_without_enough_outputs(api: Api) -> None:
    alice = Party()
    await api.fund(alice, 900_000)  # play money: nothing on chain to spend
    await withdraw(api, alice, 100_000)
    from bitwrk.errors import InsufficientFunds
    from service.payments.payouts import export_batch

    with pytest.raises(InsufficientFunds):
        export_batch(api.ex)
    assert (await api.totals())["pending_withdrawals"] == 100_000


async def test_watcher_sees_the_payout(api: Api, chain: FakeChain,
                                       backend: ChainBackend) -> None:
    from service.payments.payouts import export_batch

    alice = Party()
    body = api.signed(alice, action="deposit_address")
    address = (await api.post("/api/v1/deposit-addresses", body))["address"]
    chain.pay(address, 400_000)
    chain.mine(6)
    watcher = watcher_for(api, backend)
    await watcher.poll_once()
    w = await withdraw(api, alice, 150_000)
    batch = export_batch(api.ex)
    assert batch is not None
    await watcher.poll_once()
    assert (await api.get(f"/api/v1/withdrawals/{w['id']}"))["state"] == "exported"
    chain.broadcast(batch["txid"], [(DEST, 150_000)])
    chain.mine(1)
    await watcher.poll_once()
    assert (await api.get(f"/api/v1/withdrawals/{w['id']}"))["state"] == "paid"
    assert (await check_money(api))["paid_withdrawals"] == 150_000
