"""The exchange's domain: accounts, nonces, bids, matching, deposits and relations.

Synchronous and free of awaits: every public method runs one SQLite transaction (all or
nothing) and returns the events to publish after the commit. Transaction messages and
retirement live in :mod:`service.trades`.
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from bitwrk.articles import parse_article
from bitwrk.errors import (
    Conflict,
    Forbidden,
    InsufficientFunds,
    InvalidRequest,
    NotFound,
    ReplayError,
    WrongPhase,
)
from bitwrk.keys import check_address, is_test_network
from bitwrk.money import MAX_SATOSHI, check_price, fee_for
from bitwrk.protocol import BID_TERMS, SellerTerms
from bitwrk.wire import Bid, BidState, BidType, Phase, Transaction, wire_view

from . import admission, db, ledger, reputation
from .config import Config
from .errors import SelfTrade
from .events import Event
from .matching import NO_TERMS, BookEntry, Books, bid_terms, seller_admitted, trade_terms

DEPOSIT_UID = re.compile(r"^[A-Za-z0-9-]{8,64}$")
_REF = re.compile(r"^[A-Za-z0-9._:-]{0,64}$")
Signed = tuple[dict[str, Any], str, str]  # (fields, canonical document, signature)

BID_COLUMNS = ", ".join(Bid.sent_fields())  # what the API shows of a bid

def int_field(fields: dict[str, Any], name: str, minimum: int = 0) -> int:
    value = fields.get(name)
    if type(value) is not int or value < minimum or value >= 2**63:
        raise InvalidRequest(f"{name} must be an integer ≥ {minimum}", field=name)
    return value


def str_field(fields: dict[str, Any], name: str, choices: tuple[str, ...]) -> str:
    value = fields.get(name)
    if value not in choices:
        raise InvalidRequest(f"{name} must be one of {[str(c) for c in choices]}", field=name)
    return str(value)


def exact_fields(fields: dict[str, Any], allowed: frozenset[str],
                 optional: frozenset[str] = frozenset()) -> None:
    extra = set(fields) - allowed - optional - {"signature"}
    missing = allowed - set(fields)
    if extra or missing:
        raise InvalidRequest(
            "wrong set of fields", unexpected=sorted(extra), missing=sorted(missing)
        )


BID_FIELDS = frozenset({"action", "exchange", "address", "nonce", "type", "article", "price"})
CANCEL_FIELDS = frozenset({"action", "exchange", "address", "nonce", "bid"})
DEPOSIT_FIELDS = frozenset(
    {"action", "exchange", "address", "nonce", "uid", "account", "amount", "kind", "ref"}
)
RELATION_FIELDS = frozenset(
    {"action", "exchange", "address", "nonce", "target", "type", "enabled"}
)


class Exchange:
    """The exchange's domain state over one SQLite connection: owns the order books, the
    nonces, the ledger movements and the bids' and transactions' rows.

    Every state-changing method runs inside ``write()`` (one savepoint of the group
    commit) and returns its view plus the events to publish after COMMIT; nothing here
    does I/O besides SQLite. The HTTP layer is ``service.api``, the trade state machine
    ``service.phases``/``service.trades``.
    """

    def __init__(
        self, conn: sqlite3.Connection, config: Config, clock: Callable[[], float] = time.time
    ) -> None:
        self.db = conn
        self.cfg = config
        self.clock = clock
        self.exchange_id = db.meta(conn, "exchange_id") or ""
        self.books = Books()
        # Articles ever traded, for /info without a scan of the transactions.
        self.traded: set[str] = {
            r[0] for r in conn.execute("SELECT DISTINCT article FROM transactions")
        }
        # views.market's cache: (article, interval, limit) -> (book version, time, view).
        self.market_cache: dict[tuple[str, int, int], tuple[int, float, dict[str, Any]]] = {}
        # Called with each new deadline so the retirement task can wake early.
        self.on_deadline: Callable[[float], None] = lambda deadline: None
        # (source, target) of enabled "avoids" relations: these two never trade together.
        self.avoids: set[tuple[str, str]] = set()
        self._load_books()

    # -- plumbing -------------------------------------------------------------------------

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One atomic unit of change; any exception undoes all of it. Inside a group commit
        (see :mod:`service.committer`) it is a savepoint of the group's transaction."""
        if self.db.in_transaction:
            self.db.execute("SAVEPOINT request")
            try:
                yield self.db
            except BaseException:
                self.db.execute("ROLLBACK TO request")
                self.db.execute("RELEASE request")
                raise
            self.db.execute("RELEASE request")
            return
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def reload_books(self) -> None:
        """Rebuild the order books from the store (after a failed group commit)."""
        self.books = Books()
        self.market_cache.clear()  # the new books' versions start again
        self._load_books()

    def _load_books(self) -> None:
        rows = self.db.execute(
            "SELECT article, id, address, type, price, fee, expires, document FROM bids"
            " WHERE state = 'placed' ORDER BY id"
        )
        for article, bid_id, address, side, price, fee, expires, document in rows:
            # a buy bid's seller terms are read back from the document it signed
            terms = SellerTerms.from_document(document) if side == BidType.BUY else NO_TERMS
            self.books.get(article).add(
                BookEntry(bid_id, address, side, price, fee, expires, terms))
        self.avoids = {(s, t) for s, t in self.db.execute(
            "SELECT source, target FROM relations WHERE type = 'avoids' AND enabled = 1")}

    def avoided(self, a: str, b: str) -> bool:
        """Whether either party signed that it avoids the other (a buyer that caught a
        seller cheating, say): then their bids pass each other by."""
        return (a, b) in self.avoids or (b, a) in self.avoids

    def _use_nonce(self, address: str, nonce: int) -> None:
        cur = self.db.execute(
            "INSERT INTO accounts(address, created, last_nonce) VALUES (?, ?, ?)"
            " ON CONFLICT(address) DO UPDATE SET last_nonce = excluded.last_nonce"
            " WHERE accounts.last_nonce < excluded.last_nonce",
            (address, self.clock(), nonce),
        )
        if cur.rowcount != 1:
            last = self.db.execute(
                "SELECT last_nonce FROM accounts WHERE address = ?", (address,)
            ).fetchone()[0]
            raise ReplayError("nonce must be greater than the last accepted one", last=last)

    def balances(self, address: str) -> tuple[int, int]:
        row = self.db.execute(
            "SELECT available, blocked FROM accounts WHERE address = ?", (address,)
        ).fetchone()
        return (0, 0) if row is None else (int(row[0]), int(row[1]))

    def move(self, m: ledger.Movement, now: float, **refs: Any) -> None:
        """Apply a movement to the balances and record it (inside ``write()``)."""
        for account, column, delta in (
            (m.available_account, "available", m.available_delta),
            (m.blocked_account, "blocked", m.blocked_delta),
        ):
            if delta:
                self.db.execute(
                    "INSERT OR IGNORE INTO accounts(address, created) VALUES (?, ?)",
                    (account, now),
                )
                self.db.execute(
                    f"UPDATE accounts SET {column} = {column} + ? WHERE address = ?",
                    (delta, account),
                )
        self.db.execute(  # running totals: /info reads these, never the whole table
            "INSERT INTO ledger_totals(kind, available, blocked, fee, world) VALUES (?,?,?,?,?)"
            " ON CONFLICT(kind) DO UPDATE SET available = available + excluded.available,"
            " blocked = blocked + excluded.blocked, fee = fee + excluded.fee,"
            " world = world + excluded.world",
            (str(m.kind), m.available_delta, m.blocked_delta, m.fee_delta, m.world_delta),
        )
        self.db.execute(
            "INSERT INTO movements(time, kind, available_account, available_delta,"
            " blocked_account, blocked_delta, fee_delta, world_delta, bid_id, txid,"
            " deposit_uid) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (
                now, str(m.kind), m.available_account, m.available_delta, m.blocked_account,
                m.blocked_delta, m.fee_delta, m.world_delta, refs.get("bid_id"),
                refs.get("txid"), refs.get("deposit_uid"),
            ),
        )

    def _account_event(self, address: str) -> Event:
        available, blocked = self.balances(address)
        data = {"address": address, "available": available, "blocked": blocked}
        return Event("account", data, to=(address,))

    # -- bids -----------------------------------------------------------------------------

    def place_bid(self, signed: Signed) -> tuple[dict[str, Any], list[Event]]:
        fields, document, signature = signed
        exact_fields(fields, BID_FIELDS, optional=BID_TERMS)
        address = fields["address"]
        side = BidType(str_field(fields, "type", tuple(BidType)))
        terms = bid_terms(fields, side, self.cfg.network)
        article = parse_article(fields["article"])
        price = check_price(fields["price"], maximum=self.cfg.max_price)
        fee = fee_for(price, self.cfg.fee_bps)
        now = self.clock()
        expires = now + self.cfg.timeouts.bid_lifetime
        book = self.books.get(article.id)
        with self.write():
            self._use_nonce(address, fields["nonce"])
            admission.check_bid(self, address, side, article.trusted, now)
            if side == BidType.BUY:
                available = self.balances(address)[0]
                if available < price + fee:
                    raise InsufficientFunds(
                        "available balance does not cover price + fee",
                        needed=price + fee, available=available,
                    )
            bid_id = self.db.execute(
                "INSERT INTO bids(address, type, article, price, fee, state, created, expires,"
                " document, signature) VALUES (?,?,?,?,?,'placed',?,?,?,?)",
                (address, side, article.id, price, fee, now, expires, document, signature),
            ).lastrowid
            assert bid_id is not None
            if side == BidType.BUY:
                self.move(ledger.block_for_bid(address, price + fee), now, bid_id=bid_id)
            entry = BookEntry(bid_id, address, side, price, fee, expires, terms)
            resting, events = self._match(article.id, entry, now)
        if resting is None:
            book.add(entry)
            self.on_deadline(expires)
            if side == BidType.BUY:
                events.append(self._account_event(address))
        else:
            book.remove(resting.bid_id)
        events.append(Event("book", {"article": article.id}, public=True))
        bid = self.bid(bid_id)
        events.insert(0, Event("bid", bid, to=(address,)))
        return bid, events

    def _match(
        self, article: str, entry: BookEntry, now: float
    ) -> tuple[BookEntry | None, list[Event]]:
        book = self.books.get(article)
        def allowed(resting: BookEntry) -> bool:
            return self._may_trade(entry, resting, now)

        while (resting := book.counterpart(entry, now, allowed)) is not None:
            claimed = self.db.execute(
                "UPDATE bids SET state = 'matched', closed = ? WHERE id = ? AND state = 'placed'",
                (now, resting.bid_id),
            ).rowcount
            if claimed and resting.address == entry.address:
                # Refused, not skipped: a wash trade would print on the public tape.
                raise SelfTrade("this bid would trade with your own resting bid",
                                resting=resting.bid_id)
            if claimed:
                return resting, self._trade(article, entry, resting, now)
            book.remove(resting.bid_id)  # memory was behind the store; never trade it
        return None, []

    def _may_trade(self, entry: BookEntry, resting: BookEntry, now: float) -> bool:
        """Neither party avoids the other, the seller is not barred (its resting ask may be
        older than the bar), and the buy bid's seller terms admit the seller's record."""
        if self.avoided(entry.address, resting.address):
            return False
        if entry.type == BidType.BUY and reputation.barred_until(self.db, resting.address, now):
            return False
        return seller_admitted(entry, resting, lambda seller: reputation.of(self.db, seller))

    def _trade(
        self, article: str, entry: BookEntry, resting: BookEntry, now: float
    ) -> list[Event]:
        buy, sell = (entry, resting) if entry.type == BidType.BUY else (resting, entry)
        price, fee = trade_terms(buy, sell)
        timeout = now + self.cfg.timeouts.establish
        txid = self.db.execute(
            "INSERT INTO transactions(article, buyer, seller, buy_bid, sell_bid, price, fee,"
            " matched, phase, timeout) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (article, buy.address, sell.address, buy.bid_id, sell.bid_id, price, fee, now,
             str(Phase.ESTABLISHING), timeout),
        ).lastrowid
        self.db.execute(
            "UPDATE bids SET state = 'matched', closed = ?, txid = ? WHERE id IN (?, ?)",
            (now, txid, buy.bid_id, sell.bid_id),
        )
        surplus = buy.price + buy.fee - (price + fee)
        if surplus:
            self.move(ledger.release_surplus(buy.address, surplus), now, txid=txid)
        self.on_deadline(timeout)
        self.traded.add(article)
        parties = (buy.address, sell.address)
        trade = {"article": article, "txid": txid, "price": price, "time": now}
        return [
            Event("bid", self.bid(resting.bid_id), to=(resting.address,)),
            Event("transaction", wire_view(Transaction, self.transaction(txid or 0)),
                  to=parties),
            Event("trade", trade, public=True),
            self._account_event(buy.address),
        ]

    def cancel_bid(self, signed: Signed) -> tuple[dict[str, Any], list[Event]]:
        fields = signed[0]
        exact_fields(fields, CANCEL_FIELDS)
        address, bid_id = fields["address"], int_field(fields, "bid", 1)
        now = self.clock()
        with self.write():
            self._use_nonce(address, fields["nonce"])
            row = self.db.execute("SELECT * FROM bids WHERE id = ?", (bid_id,)).fetchone()
            if row is None:
                raise NotFound(f"no bid {bid_id}")
            if row["address"] != address:
                raise Forbidden("only the bidder can cancel a bid")
            if row["state"] != BidState.PLACED:
                raise WrongPhase(f"bid is {row['state']}, not placed", state=row["state"])
            if row["expires"] <= now:  # past its lifetime; retirement is about to close it
                raise WrongPhase("bid has expired", state=BidState.EXPIRED)
            self.close_bid(row, BidState.CANCELLED, now)
        self.books.get(row["article"]).remove(bid_id)
        bid = self.bid(bid_id)
        events = [Event("bid", bid, to=(address,)), self._account_event(address)]
        return bid, [*events, Event("book", {"article": row["article"]}, public=True)]

    def close_bid(self, row: sqlite3.Row, state: BidState, now: float) -> None:
        self.db.execute(
            "UPDATE bids SET state = ?, closed = ? WHERE id = ?", (state, now, row["id"])
        )
        if row["type"] == BidType.BUY:
            amount = row["price"] + row["fee"]
            self.move(ledger.release_bid(row["address"], amount), now, bid_id=row["id"])

    def expire_bids(self, now: float, limit: int) -> list[Event]:
        """Close placed bids past their lifetime (inside ``write()``)."""
        rows = self.db.execute(
            "SELECT * FROM bids WHERE state = 'placed' AND expires <= ? ORDER BY expires LIMIT ?",
            (now, limit),
        ).fetchall()
        events: list[Event] = []
        for row in rows:
            self.close_bid(row, BidState.EXPIRED, now)
            self.books.get(row["article"]).remove(row["id"])
            events.append(Event("bid", self.bid(row["id"]), to=(row["address"],)))
            events.append(self._account_event(row["address"]))
        return events

    # -- deposits and relations ------------------------------------------------------------

    def deposit(self, signed: Signed) -> tuple[dict[str, Any], list[Event]]:
        fields, document, signature = signed
        exact_fields(fields, DEPOSIT_FIELDS)
        if fields["address"] != self.cfg.operator:
            raise Forbidden("deposits must be signed by the exchange operator")
        uid, account = fields["uid"], fields["account"]
        if not isinstance(uid, str) or not DEPOSIT_UID.fullmatch(uid):
            raise InvalidRequest("uid must be 8-64 characters of [A-Za-z0-9-]", field="uid")
        check_address(account, self.cfg.network)
        amount = check_price(fields["amount"], maximum=MAX_SATOSHI)
        if amount == 0:
            raise InvalidRequest("a deposit must be positive", field="amount")
        kind = str_field(fields, "kind", ("play", "bitcoin"))
        if kind == "play" and not is_test_network(self.cfg.network):
            raise Forbidden("play money exists only on test networks")
        ref = fields["ref"]
        if not isinstance(ref, str) or not _REF.fullmatch(ref):
            raise InvalidRequest("ref must be at most 64 characters of [A-Za-z0-9._:-]")
        existing = self.deposit_view(uid)
        if existing is not None:
            same = (existing["account"], existing["amount"], existing["kind"]) == (
                account, amount, kind
            )
            if not same:
                raise Conflict(f"deposit {uid} exists with other data", uid=uid)
            return {**existing, "duplicate": True}, []
        now = self.clock()
        with self.write():
            self._use_nonce(fields["address"], fields["nonce"])
            self.db.execute(
                "INSERT INTO deposits(uid, account, amount, kind, ref, time, document, signature)"
                " VALUES (?,?,?,?,?,?,?,?)",
                (uid, account, amount, kind, ref, now, document, signature),
            )
            self.move(ledger.deposit(account, amount), now, deposit_uid=uid)
        view = self.deposit_view(uid)
        assert view is not None
        return view, [self._account_event(account)]

    def deposit_view(self, uid: str) -> dict[str, Any] | None:
        row = self.db.execute(
            "SELECT uid, account, amount, kind, ref, time FROM deposits WHERE uid = ?", (uid,)
        ).fetchone()
        return None if row is None else dict(row)

    def relation(self, signed: Signed) -> tuple[dict[str, Any], list[Event]]:
        fields, document, signature = signed
        exact_fields(fields, RELATION_FIELDS)
        source, target = fields["address"], fields["target"]
        check_address(target, self.cfg.network)
        if source == target:
            raise InvalidRequest("a participant cannot relate to itself")
        kind = str_field(fields, "type", ("trusts", "worksfor", "avoids"))
        enabled = fields["enabled"]
        if enabled not in (0, 1) or isinstance(enabled, bool):
            raise InvalidRequest("enabled must be 0 or 1", field="enabled")
        now = self.clock()
        with self.write():
            self._use_nonce(source, fields["nonce"])
            self.db.execute(
                "INSERT OR REPLACE INTO relations(source, type, target, enabled, modified,"
                " document, signature) VALUES (?,?,?,?,?,?,?)",
                (source, kind, target, enabled, now, document, signature),
            )
            events = admission.on_relation(self, source, kind, target, bool(enabled), now)
        if kind == "avoids":  # after the write: a refused request changes nothing
            (self.avoids.add if enabled else self.avoids.discard)((source, target))
        view = {"source": source, "type": kind, "target": target, "enabled": bool(enabled),
                "modified": now}
        return view, events

    def trusts(self, source: str, target: str) -> bool:
        row = self.db.execute(
            "SELECT enabled FROM relations WHERE source = ? AND type = 'trusts' AND target = ?",
            (source, target),
        ).fetchone()
        return bool(row and row[0])

    # -- views ----------------------------------------------------------------------------

    def bid(self, bid_id: int) -> dict[str, Any]:
        """The bid as the API shows it (``bitwrk.wire.Bid``: not its signed document)."""
        row = self.db.execute(f"SELECT {BID_COLUMNS} FROM bids WHERE id = ?",
                              (bid_id,)).fetchone()
        if row is None:
            raise NotFound(f"no bid {bid_id}")
        return wire_view(Bid, row)

    def transaction(self, txid: int) -> dict[str, Any]:
        """The whole row (private columns too): ``views`` shapes what the API shows."""
        row = self.db.execute("SELECT * FROM transactions WHERE id = ?", (txid,)).fetchone()
        if row is None:
            raise NotFound(f"no transaction {txid}")
        return dict(row)
