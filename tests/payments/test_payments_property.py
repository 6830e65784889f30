"""Property: random play deposits, chain credits, withdrawals, cancellations, exports and
confirmations keep Σ balances + fees + pending withdrawals = Σ deposits − Σ paid, keep every
balance non-negative, and leave the store untouched when refused."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from bitwrk.errors import BitwrkError
from bitwrk.keys import PrivateKey
from service import db
from service.config import Config
from service.exchange import Exchange
from service.payments import deposits, payouts, withdrawals
from service.payments.chain import SeenOutput
from tests.conftest import Clock
from tests.payments.conftest import REGTEST_ELSEWHERE, payment_config

KEYS = [PrivateKey.generate() for _ in range(3)]
OPERATOR = PrivateKey.generate()
TABLES = ("accounts", "movements", "deposits", "withdrawals", "chain_outputs",
          "payout_batches", "deposit_addresses")


class PaymentMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = Clock()
        config = Config(db_path=Path(":memory:"), operator=OPERATOR.address,
                        payments=payment_config(min_withdrawal=1_000, daily_limit=200_000,
                                                address_rate=1000))
        self.ex = Exchange(db.connect(":memory:"), config, self.clock)
        self.nonce = itertools.count(1)
        self.txids = itertools.count(1)

    def signed(self, key: PrivateKey, **fields: Any) -> tuple[dict[str, Any], str, str]:
        return {"exchange": self.ex.exchange_id, "address": key.address,
                "nonce": next(self.nonce), **fields}, "", ""

    def attempt(self, fn: Any, *args: Any) -> Any:
        before = [self.ex.db.execute(f"SELECT * FROM {t}").fetchall() for t in TABLES]
        try:
            return fn(*args)
        except BitwrkError:
            assert [self.ex.db.execute(f"SELECT * FROM {t}").fetchall() for t in TABLES
                    ] == before
            return None

    @rule(who=st.integers(0, 2), amount=st.integers(1, 80_000))
    def play_deposit(self, who: int, amount: int) -> None:
        self.attempt(self.ex.deposit, self.signed(
            OPERATOR, action="deposit", uid=f"p-{next(self.txids):08d}",
            account=KEYS[who].address, amount=amount, kind="play", ref=""))

    @rule(who=st.integers(0, 2), amount=st.integers(1, 200_000), confs=st.integers(-1, 8),
          repeat=st.booleans())
    def chain_deposit(self, who: int, amount: int, confs: int, repeat: bool) -> None:
        view = self.attempt(deposits.issue_address, self.ex,
                            self.signed(KEYS[who], action="deposit_address"))
        if view is None:
            return
        txid = f"{next(self.txids):064x}"
        out = SeenOutput(txid, 0, view[0]["address"], amount, confs)
        deposits.apply_scan(self.ex, [out, out] if repeat else [out])
        if confs < 6:
            deposits.apply_scan(self.ex, [SeenOutput(txid, 0, out.address, amount, 6)])

    @rule(who=st.integers(0, 2), amount=st.integers(0, 120_000))
    def withdraw(self, who: int, amount: int) -> None:
        self.attempt(withdrawals.withdraw, self.ex, self.signed(
            KEYS[who], action="withdraw", to=REGTEST_ELSEWHERE, amount=amount))

    @rule(who=st.integers(0, 2), pick=st.integers(1, 30))
    def cancel(self, who: int, pick: int) -> None:
        self.attempt(withdrawals.cancel, self.ex, self.signed(
            KEYS[who], action="cancel_withdrawal", withdrawal=pick))

    @rule(rate=st.integers(1, 20))
    def export(self, rate: int) -> None:
        self.attempt(payouts.export_batch, self.ex, rate)

    @rule(pick=st.integers(0, 10))
    def confirm(self, pick: int) -> None:
        txids = payouts.exported(self.ex)
        if txids:
            self.attempt(payouts.confirm, self.ex, txids[pick % len(txids)])

    @rule()
    def day_passes(self) -> None:
        self.clock.advance(86_401)

    @invariant()
    def money_is_conserved(self) -> None:
        q = self.ex.db.execute
        available, blocked = q("SELECT COALESCE(SUM(available),0), COALESCE(SUM(blocked),0)"
                               " FROM accounts").fetchone()
        fees, world = q("SELECT COALESCE(SUM(fee_delta),0), COALESCE(SUM(world_delta),0)"
                        " FROM movements").fetchone()
        deposited = q("SELECT COALESCE(SUM(amount),0) FROM deposits").fetchone()[0]
        pending = q("SELECT COALESCE(SUM(amount),0) FROM withdrawals"
                    " WHERE state IN ('pending', 'exported')").fetchone()[0]
        paid = q("SELECT COALESCE(SUM(amount),0) FROM withdrawals WHERE state = 'paid'"
                 ).fetchone()[0]
        assert available + blocked + fees + pending == deposited - paid
        assert world == -deposited + pending + paid
        assert q("SELECT COUNT(*) FROM accounts WHERE available < 0").fetchone()[0] == 0
        credited = q("SELECT COUNT(*), COUNT(DISTINCT deposit_uid) FROM chain_outputs"
                     " WHERE credited = 1").fetchone()
        assert credited[0] == credited[1] == q(
            "SELECT COUNT(*) FROM deposits WHERE kind = 'bitcoin'").fetchone()[0]

    @invariant()
    def batches_are_funded(self) -> None:
        for row in self.ex.db.execute("SELECT id, total, network_fee FROM payout_batches"):
            spent = self.ex.db.execute("SELECT COALESCE(SUM(amount),0) FROM chain_outputs"
                                       " WHERE spent_batch = ?", (row[0],)).fetchone()[0]
            change = self.ex.db.execute(
                "SELECT COALESCE(SUM(amount),0) FROM chain_outputs WHERE txid ="
                " (SELECT txid FROM payout_batches WHERE id = ?)", (row[0],)).fetchone()[0]
            assert spent == row[1] + row[2] + change


PaymentMachine.TestCase.settings = settings(max_examples=40, stateful_step_count=30,
                                            deadline=None)
TestPaymentProperties = PaymentMachine.TestCase
