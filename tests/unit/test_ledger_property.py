"""Property: random deposits, bids, matches, messages and timeouts never create or destroy
money, and never let a balance go negative (the real Exchange on an in-memory SQLite)."""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from bitwrk.errors import BitwrkError
from bitwrk.keys import PrivateKey
from bitwrk.protocol import receipt_document, work_secret_hash
from service import db, pgstore
from service.config import Config, Timeouts
from service.exchange import Exchange
from service.store import Conn
from service.trades import retire_due, send_message
from service.views import audit_totals, totals
from tests.conftest import Clock
from tools.pgserver import PgServer

KEYS = [PrivateKey.from_wif(PrivateKey.generate().to_wif()) for _ in range(4)]
OPERATOR = PrivateKey.generate()
ARTICLES = ["net.bitwrk/blender/5.0/512M", "net.bitwrk/blender/5.0/2G"]
ACTIONS = ["work", "endpoint", "received", "received_bad", "result", "accept", "dispute",
           "reject", "cancel", "resolve_seller", "resolve_buyer"]


class ExchangeMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = Clock()
        config = Config(db_path=Path(":memory:"), operator=OPERATOR.address,
                        timeouts=Timeouts(bid_lifetime=120))
        self.ex = Exchange(self.open_store(), config, self.clock)
        self.nonce = itertools.count(1)
        self.secrets: dict[int, str] = {}
        self.uids = itertools.count()

    def open_store(self) -> Conn:
        return db.connect(":memory:")

    def signed(self, key: PrivateKey, **fields: Any) -> tuple[dict[str, Any], str, str]:
        body = {"exchange": self.ex.exchange_id, "address": key.address,
                "nonce": next(self.nonce), **fields}
        return body, "", ""

    def snapshot(self) -> list[list[Any]]:
        tables = ("accounts", "bids", "transactions", "messages", "movements", "deposits")
        return [self.ex.db.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall() for t in tables]

    def attempt(self, fn: Any, *args: Any) -> None:
        """Run a request; a refused one must leave the store exactly as it was."""
        before = self.snapshot()
        try:
            fn(*args)
        except BitwrkError:
            assert self.snapshot() == before

    @rule(who=st.integers(0, 3), amount=st.integers(1, 50_000))
    def deposit(self, who: int, amount: int) -> None:
        uid = f"prop-{next(self.uids):06d}"
        self.attempt(self.ex.deposit, self.signed(
            OPERATOR, action="deposit", uid=uid, account=KEYS[who].address, amount=amount,
            kind="play", ref=""))

    @rule(who=st.integers(0, 3), side=st.sampled_from(["buy", "sell"]),
          price=st.integers(0, 3_000), article=st.sampled_from(ARTICLES))
    def bid(self, who: int, side: str, price: int, article: str) -> None:
        self.attempt(self.ex.place_bid, self.signed(
            KEYS[who], action="bid", type=side, article=article, price=price))

    @rule(buyer=st.integers(0, 3), seller=st.integers(0, 3), price=st.integers(0, 3_000),
          surplus=st.integers(0, 500), buy_first=st.booleans())
    def crossing_pair(self, buyer: int, seller: int, price: int, surplus: int,
                      buy_first: bool) -> None:
        """A sell and a buy that cross (either may rest first): most of these trade."""
        sides = [("sell", seller, price), ("buy", buyer, price + surplus)]
        for side, who, p in reversed(sides) if buy_first else sides:
            self.bid(who=who, side=side, price=p, article=ARTICLES[0])

    @rule(who=st.integers(0, 3), pick=st.integers(0, 50))
    def cancel_bid(self, who: int, pick: int) -> None:
        count = self.ex.db.execute("SELECT COUNT(*) FROM bids").fetchone()[0]
        bid = pick % count + 1 if count else 1
        self.attempt(self.ex.cancel_bid, self.signed(KEYS[who], action="cancel_bid", bid=bid))

    @rule(pick=st.integers(0, 50), steps=st.integers(1, 6), honest=st.booleans())
    def progress(self, pick: int, steps: int, honest: bool) -> None:
        """Send what well-behaved parties send next, ``steps`` times; the last message is
        the unhappy alternative unless ``honest``."""
        rows = self.ex.db.execute("SELECT id FROM transactions WHERE retired IS NULL"
                                  " ORDER BY id").fetchall()
        if not rows:
            return
        txid = rows[pick % len(rows)][0]
        for n in range(steps):
            tx = self.ex.db.execute("SELECT * FROM transactions WHERE id = ?", (txid,)).fetchone()
            if tx["retired"] is not None:
                return
            nxt = {"ESTABLISHING": ("work" if tx["workhash"] is None else "endpoint", "cancel"),
                   "TRANSMITTING": ("received", "reject"), "WORKING": ("result", "reject"),
                   "UNVERIFIED": ("accept", "dispute"),
                   "RESULT_DISPUTED": ("resolve_seller", "resolve_buyer")}[tx["phase"]]
            action = nxt[1] if n == steps - 1 and not honest else nxt[0]
            self.message(pick=self.index_of(txid), action=action, as_other=False)

    def index_of(self, txid: int) -> int:
        ids = [r[0] for r in self.ex.db.execute("SELECT id FROM transactions ORDER BY id")]
        return ids.index(txid)

    @rule(pick=st.integers(0, 50), action=st.sampled_from(ACTIONS), as_other=st.booleans())
    def message(self, pick: int, action: str, as_other: bool) -> None:
        row = self.ex.db.execute("SELECT * FROM transactions ORDER BY id").fetchall()
        if not row:
            return
        tx = row[pick % len(row)]
        fields = self.fields_for(tx, action)
        as_seller = (fields.pop("_role") == "seller") != as_other
        address = tx["seller"] if as_seller else tx["buyer"]
        sender = next(k for k in KEYS if k.address == address)
        if action.startswith("resolve"):
            sender = OPERATOR
        self.attempt(send_message, self.ex, self.signed(
            sender, txid=tx["id"], revision=tx["revision"], **fields))

    def fields_for(self, tx: Any, action: str) -> dict[str, Any]:
        if action == "work":
            workhash = hashlib.sha256(str(tx["id"]).encode()).hexdigest()
            proof = hashlib.sha256(workhash.encode()).hexdigest()  # SHA256(the secret)
            self.secrets[tx["id"]] = proof
            digest = work_secret_hash(workhash, proof)
            return {"_role": "buyer", "action": "work", "workhash": workhash,
                    "worksecrethash": digest}
        if action == "endpoint":
            return {"_role": "seller", "action": "endpoint", "workerurl": "http://127.0.0.1:1/w"}
        if action in ("received", "received_bad"):
            secret = self.secrets.get(tx["id"], "00" * 32) if action == "received" else "11" * 32
            return {"_role": "seller", "action": "received", "secretproof": secret}
        if action == "result":
            enc = hashlib.sha256(str(tx["id"]).encode()).hexdigest()  # one per trade
            buyer = next(k for k in KEYS if k.address == tx["buyer"])
            document = receipt_document(exchange=self.ex.exchange_id, txid=tx["id"],
                                        seller=tx["seller"], encresulthash=enc)
            return {"_role": "seller", "action": "result", "encresulthash": enc,
                    "receipt": buyer.sign_message(document), "resultkey": "cd" * 64}
        if action.startswith("resolve"):
            return {"_role": "buyer", "action": "resolve", "outcome": action.split("_")[1]}
        role = "seller" if action == "reject" else "buyer"
        extra = {"reason": "r"} if action in ("reject", "dispute") else {}
        return {"_role": role, "action": action, **extra}

    @rule(seconds=st.sampled_from([1, 30, 61, 121, 901, 3000]))
    def time_passes(self, seconds: int) -> None:
        self.clock.advance(seconds)
        retire_due(self.ex, self.clock())

    @rule(fee_bps=st.sampled_from([0, 100, 300, 1000, 5000]))
    def operator_changes_fee_and_restarts(self, fee_bps: int) -> None:
        """Issue 11: older resting bids keep the fee fixed at their entry and still match."""
        self.ex = Exchange(self.ex.db, replace(self.ex.cfg, fee_bps=fee_bps), self.clock)

    @invariant()
    def running_totals_equal_a_recount(self) -> None:
        assert totals(self.ex) == audit_totals(self.ex)

    @invariant()
    def money_is_conserved(self) -> None:
        q = self.ex.db.execute
        available, blocked = q("SELECT COALESCE(SUM(available),0), COALESCE(SUM(blocked),0)"
                               " FROM accounts").fetchone()
        fees = q("SELECT COALESCE(SUM(fee_delta),0) FROM movements").fetchone()[0]
        deposits = q("SELECT COALESCE(SUM(amount),0) FROM deposits").fetchone()[0]
        assert available + blocked + fees == deposits
        assert q("SELECT COUNT(*) FROM accounts WHERE available < 0 OR blocked < 0"
                 ).fetchone()[0] == 0

    @invariant()
    def blocked_matches_open_obligations(self) -> None:
        q = self.ex.db.execute
        for key in KEYS:
            bids = q("SELECT COALESCE(SUM(price + fee), 0) FROM bids WHERE address = ?"
                     " AND type = 'buy' AND state = 'placed'", (key.address,)).fetchone()[0]
            txs = q("SELECT COALESCE(SUM(price + fee), 0) FROM transactions WHERE buyer = ?"
                    " AND retired IS NULL", (key.address,)).fetchone()[0]
            assert self.ex.balances(key.address)[1] == bids + txs


ExchangeMachine.TestCase.settings = settings(max_examples=80, stateful_step_count=50,
                                             deadline=None)
TestExchangeProperties = ExchangeMachine.TestCase


class PgExchangeMachine(ExchangeMachine):
    """The same machine on PostgreSQL (issue 15): one database, emptied per example."""

    url = ""  # a fresh database of the session's server, set by ``pg_database``

    def open_store(self) -> Conn:
        conn = pgstore.connect(self.url)
        tables = [r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            " AND tablename NOT IN ('meta', 'schema_version')")]
        conn.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY")
        return conn

    def teardown(self) -> None:
        self.ex.db.close()


@pytest.fixture
def pg_database(pg_server: PgServer) -> None:
    PgExchangeMachine.url = pg_server.new_database()


PgExchangeMachine.TestCase.settings = settings(max_examples=25, stateful_step_count=40,
                                               deadline=None)
TestExchangePropertiesPostgres = pytest.mark.usefixtures("pg_database")(
    PgExchangeMachine.TestCase)
