"""The daemon's journal: jobs, units and trades in SQLite, so a restart resumes or cleanly
unwinds what was in flight (no unit lost, none paid twice).

Secrets the buyer needs later (the buyer secret, the result ciphertext's path) are written
here before they are used, so a crash between "sent" and "saved" cannot happen.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..wire import JobState, TradeState, UnitState

SCHEMA = (
    """
    CREATE TABLE jobs(
        id TEXT PRIMARY KEY, created REAL NOT NULL, state TEXT NOT NULL,
        article TEXT NOT NULL, max_price INTEGER NOT NULL, budget INTEGER NOT NULL,
        valid_until REAL NOT NULL, committed INTEGER NOT NULL DEFAULT 0, spec TEXT NOT NULL
    );
    CREATE TABLE units(
        job_id TEXT NOT NULL, unit_id TEXT NOT NULL, state TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0, bid_id INTEGER, txid INTEGER, seller TEXT,
        price INTEGER, result TEXT, error TEXT, payload TEXT NOT NULL,
        PRIMARY KEY (job_id, unit_id)
    );
    CREATE TABLE trades(
        txid INTEGER PRIMARY KEY, role TEXT NOT NULL, job_id TEXT, unit_id TEXT,
        state TEXT NOT NULL, buyersecret TEXT, workhash TEXT, ciphertext TEXT,
        updated REAL NOT NULL
    );
    CREATE TABLE settings(key TEXT PRIMARY KEY, value TEXT NOT NULL);
    """,
)


@dataclass(frozen=True)
class UnitRow:
    job_id: str
    unit_id: str
    state: str  # a UnitState value
    attempts: int
    bid_id: int | None
    txid: int | None
    seller: str | None
    price: int | None
    result: str | None
    error: str | None
    payload: dict[str, Any]


class Journal:
    """Thread-safe (one lock); used from the daemon loop, read from the caller's thread."""

    def __init__(self, path: Path | str) -> None:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._lock = threading.RLock()
        self._migrate()

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        for number, script in enumerate(SCHEMA, start=1):
            if version < number:
                with self.tx() as db:
                    for statement in (s for s in script.split(";") if s.strip()):
                        db.execute(statement)
                    db.execute(f"PRAGMA user_version = {number}")

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- jobs and units ---------------------------------------------------------------------

    def add_job(self, job_id: str, article: str, max_price: int, budget: int,
                valid_until: float, spec: dict[str, Any],
                units: list[tuple[str, dict[str, Any]]]) -> None:
        with self.tx() as db:
            db.execute(
                "INSERT INTO jobs(id, created, state, article, max_price, budget, valid_until,"
                " spec) VALUES (?,?,?,?,?,?,?,?)",
                (job_id, time.time(), JobState.ACTIVE, article, max_price, budget, valid_until,
                 json.dumps(spec)),
            )
            db.executemany(
                "INSERT INTO units(job_id, unit_id, state, payload) VALUES (?,?,?,?)",
                [(job_id, unit_id, UnitState.PENDING, json.dumps(payload))
                 for unit_id, payload in units],
            )

    def job(self, job_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else {**dict(row), "spec": json.loads(row["spec"])}

    def jobs(self, state: str = JobState.ACTIVE) -> list[str]:
        with self._lock:
            rows = self._db.execute("SELECT id FROM jobs WHERE state = ? ORDER BY created",
                                    (state,))
            return [r[0] for r in rows]

    def set_job_state(self, job_id: str, state: str) -> None:
        with self.tx() as db:
            db.execute("UPDATE jobs SET state = ? WHERE id = ?", (state, job_id))

    def commit_budget(self, job_id: str, amount: int) -> bool:
        """Reserve ``amount`` of the job's budget; False if it would exceed it."""
        with self.tx() as db:
            cur = db.execute(
                "UPDATE jobs SET committed = committed + ? WHERE id = ?"
                " AND committed + ? <= budget",
                (amount, job_id, amount),
            )
            return cur.rowcount == 1

    def units(self, job_id: str, state: str | None = None) -> list[UnitRow]:
        sql, args = "SELECT * FROM units WHERE job_id = ?", [job_id]
        if state is not None:
            sql += " AND state = ?"
            args.append(state)
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY rowid", args).fetchall()
        return [_unit(r) for r in rows]

    def update_unit(self, job_id: str, unit_id: str, **values: Any) -> None:
        assignments = ", ".join(f"{k} = ?" for k in values)
        with self.tx() as db:
            db.execute(f"UPDATE units SET {assignments} WHERE job_id = ? AND unit_id = ?",
                       (*values.values(), job_id, unit_id))

    def claim_unit(self, job_id: str, unit_id: str, from_state: str, to_state: str,
                   **values: Any) -> bool:
        """Move a unit between states atomically; False if someone else moved it first."""
        sets = ", ".join(["state = ?", *(f"{k} = ?" for k in values)])
        with self.tx() as db:
            cur = db.execute(
                f"UPDATE units SET {sets} WHERE job_id = ? AND unit_id = ? AND state = ?",
                (to_state, *values.values(), job_id, unit_id, from_state),
            )
            return cur.rowcount == 1

    def known_ids(self) -> tuple[set[int], set[int]]:
        """Every bid id and transaction id this journal has recorded."""
        with self._lock:
            bids = {r[0] for r in self._db.execute(
                "SELECT bid_id FROM units WHERE bid_id IS NOT NULL")}
            txs = {r[0] for r in self._db.execute(
                "SELECT txid FROM units WHERE txid IS NOT NULL UNION SELECT txid FROM trades")}
        return bids, txs

    # -- trades -----------------------------------------------------------------------------

    def save_trade(self, txid: int, role: str, state: str, **values: Any) -> None:
        columns = ["txid", "role", "state", "updated", *values]
        marks = ",".join("?" * len(columns))
        updates = ", ".join(f"{c} = excluded.{c}" for c in columns[2:])
        with self.tx() as db:
            db.execute(
                f"INSERT INTO trades({', '.join(columns)}) VALUES ({marks})"
                f" ON CONFLICT(txid) DO UPDATE SET {updates}",
                (txid, role, state, time.time(), *values.values()),
            )

    def trade(self, txid: int) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM trades WHERE txid = ?", (txid,)).fetchone()
        return None if row is None else dict(row)

    def open_trades(self, role: str) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM trades WHERE role = ? AND state != ? ORDER BY txid",
                (role, TradeState.CLOSED),
            ).fetchall()
        return [dict(r) for r in rows]

    # -- settings ---------------------------------------------------------------------------

    def setting(self, key: str, default: Any = None) -> Any:
        with self._lock:
            row = self._db.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return default if row is None else json.loads(row[0])

    def set_setting(self, key: str, value: Any) -> None:
        with self.tx() as db:
            db.execute("INSERT OR REPLACE INTO settings(key, value) VALUES (?, ?)",
                       (key, json.dumps(value)))


def _unit(row: sqlite3.Row) -> UnitRow:
    return UnitRow(row["job_id"], row["unit_id"], row["state"], row["attempts"], row["bid_id"],
                   row["txid"], row["seller"], row["price"], row["result"], row["error"],
                   json.loads(row["payload"]))
