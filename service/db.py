"""SQLite store: connection settings and versioned schema migrations.

WAL with ``synchronous=NORMAL``: a commit is in the WAL file before ``COMMIT`` returns, so
killing the process (SIGKILL) loses no committed request; only an OS crash could lose the
last commits (https://www.sqlite.org/wal.html#durability).
"""

from __future__ import annotations

import logging
import secrets
import sqlite3
from pathlib import Path

from .store import Conn

MIGRATIONS: tuple[str, ...] = (
    # 1: the exchange core
    """
    CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE accounts(
        address TEXT PRIMARY KEY,
        available INTEGER NOT NULL DEFAULT 0 CHECK (available >= 0),
        blocked INTEGER NOT NULL DEFAULT 0 CHECK (blocked >= 0),
        last_nonce INTEGER NOT NULL DEFAULT 0,
        created REAL NOT NULL
    );
    CREATE TABLE bids(
        id INTEGER PRIMARY KEY,
        address TEXT NOT NULL,
        type TEXT NOT NULL CHECK (type IN ('buy', 'sell')),
        article TEXT NOT NULL,
        price INTEGER NOT NULL CHECK (price >= 0),
        fee INTEGER NOT NULL CHECK (fee >= 0),
        state TEXT NOT NULL,
        created REAL NOT NULL,
        expires REAL NOT NULL,
        closed REAL,
        txid INTEGER,
        document TEXT NOT NULL,
        signature TEXT NOT NULL
    );
    CREATE INDEX bids_open ON bids(expires) WHERE state = 'placed';
    CREATE INDEX bids_by_address ON bids(address, id);
    CREATE TABLE transactions(
        id INTEGER PRIMARY KEY,
        article TEXT NOT NULL,
        buyer TEXT NOT NULL,
        seller TEXT NOT NULL,
        buy_bid INTEGER NOT NULL,
        sell_bid INTEGER NOT NULL,
        price INTEGER NOT NULL,
        fee INTEGER NOT NULL,
        matched REAL NOT NULL,
        phase TEXT NOT NULL,
        revision INTEGER NOT NULL DEFAULT 0,
        timeout REAL,
        retired REAL,
        workhash TEXT, worksecrethash TEXT, workerurl TEXT, buyersecret TEXT,
        encresulthash TEXT, receipt TEXT, resultkey TEXT, reason TEXT
    );
    CREATE INDEX tx_timeout ON transactions(timeout) WHERE timeout IS NOT NULL;
    CREATE INDEX tx_article ON transactions(article, id);
    CREATE INDEX tx_buyer ON transactions(buyer, id);
    CREATE INDEX tx_seller ON transactions(seller, id);
    CREATE TABLE messages(
        id INTEGER PRIMARY KEY,
        txid INTEGER NOT NULL,
        time REAL NOT NULL,
        sender TEXT NOT NULL,
        role TEXT NOT NULL,
        action TEXT NOT NULL,
        pre_phase TEXT NOT NULL,
        post_phase TEXT NOT NULL,
        revision INTEGER NOT NULL,
        document TEXT,
        signature TEXT
    );
    CREATE INDEX messages_tx ON messages(txid, id);
    CREATE TABLE movements(
        id INTEGER PRIMARY KEY,
        time REAL NOT NULL,
        kind TEXT NOT NULL,
        available_account TEXT,
        available_delta INTEGER NOT NULL,
        blocked_account TEXT,
        blocked_delta INTEGER NOT NULL,
        fee_delta INTEGER NOT NULL,
        world_delta INTEGER NOT NULL,
        bid_id INTEGER,
        txid INTEGER,
        deposit_uid TEXT,
        CHECK (available_delta + blocked_delta + fee_delta + world_delta = 0)
    );
    CREATE INDEX movements_available ON movements(available_account, id);
    CREATE INDEX movements_blocked ON movements(blocked_account, id);
    CREATE INDEX movements_tx ON movements(txid);
    CREATE TABLE deposits(
        uid TEXT PRIMARY KEY,
        account TEXT NOT NULL,
        amount INTEGER NOT NULL CHECK (amount > 0),
        kind TEXT NOT NULL,
        ref TEXT NOT NULL,
        time REAL NOT NULL,
        document TEXT NOT NULL,
        signature TEXT NOT NULL
    );
    CREATE TABLE relations(
        source TEXT NOT NULL,
        type TEXT NOT NULL,
        target TEXT NOT NULL,
        enabled INTEGER NOT NULL,
        modified REAL NOT NULL,
        document TEXT NOT NULL,
        signature TEXT NOT NULL,
        PRIMARY KEY (source, type, target)
    );
    """,
    # 2: Bitcoin payments (service/payments): deposit addresses, chain outputs, withdrawals
    """
    CREATE TABLE deposit_addresses(
        idx INTEGER PRIMARY KEY CHECK (idx >= 0),
        address TEXT NOT NULL UNIQUE,
        account TEXT NOT NULL,
        created REAL NOT NULL
    );
    CREATE INDEX deposit_addresses_account ON deposit_addresses(account, created);
    CREATE INDEX deposit_addresses_created ON deposit_addresses(created);
    CREATE TABLE chain_outputs(
        txid TEXT NOT NULL,
        vout INTEGER NOT NULL CHECK (vout >= 0),
        address TEXT NOT NULL,
        account TEXT,
        chain INTEGER NOT NULL CHECK (chain IN (0, 1)),
        idx INTEGER NOT NULL,
        amount INTEGER NOT NULL CHECK (amount > 0),
        confirmations INTEGER NOT NULL DEFAULT 0,
        block_hash TEXT,
        state TEXT NOT NULL CHECK (state IN
            ('pending', 'credited', 'below_minimum', 'dropped', 'change_pending', 'change')),
        credited INTEGER NOT NULL DEFAULT 0 CHECK (credited IN (0, 1)),
        deposit_uid TEXT UNIQUE,
        spent_batch INTEGER,
        first_seen REAL NOT NULL,
        updated REAL NOT NULL,
        PRIMARY KEY (txid, vout)
    );
    CREATE INDEX chain_outputs_account ON chain_outputs(account, first_seen);
    CREATE INDEX chain_outputs_state ON chain_outputs(state);
    CREATE TABLE payout_batches(
        id INTEGER PRIMARY KEY,
        txid TEXT NOT NULL UNIQUE,
        psbt TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('exported', 'paid')),
        total INTEGER NOT NULL,
        network_fee INTEGER NOT NULL,
        change_index INTEGER,
        created REAL NOT NULL,
        paid REAL
    );
    CREATE TABLE withdrawals(
        id INTEGER PRIMARY KEY,
        account TEXT NOT NULL,
        destination TEXT NOT NULL,
        amount INTEGER NOT NULL CHECK (amount > 0),
        state TEXT NOT NULL CHECK (state IN ('pending', 'exported', 'paid', 'cancelled')),
        batch INTEGER REFERENCES payout_batches(id),
        created REAL NOT NULL,
        closed REAL,
        document TEXT NOT NULL,
        signature TEXT NOT NULL
    );
    CREATE INDEX withdrawals_account ON withdrawals(account, created);
    CREATE INDEX withdrawals_state ON withdrawals(state);
    ALTER TABLE movements ADD COLUMN withdrawal_id INTEGER
    """,
    # 3 (issue 10): the seller proves receipt with SHA256(buyer secret), never the secret;
    # a sealed result's hash is looked up to refuse its reuse in another trade
    """
    ALTER TABLE transactions ADD COLUMN secretproof TEXT;
    CREATE INDEX tx_encresulthash ON transactions(encresulthash)
        WHERE encresulthash IS NOT NULL
    """,
    # 4: abuse limits (issue 11): running ledger totals per movement kind (so /info never
    # scans the movements), public seller reputation, open bids per address
    """
    CREATE TABLE ledger_totals(
        kind TEXT PRIMARY KEY,
        available INTEGER NOT NULL,
        blocked INTEGER NOT NULL,
        fee INTEGER NOT NULL,
        world INTEGER NOT NULL
    );
    INSERT INTO ledger_totals(kind, available, blocked, fee, world)
        SELECT kind, SUM(available_delta), SUM(blocked_delta), SUM(fee_delta), SUM(world_delta)
        FROM movements GROUP BY kind;
    CREATE TABLE reputation(
        address TEXT PRIMARY KEY,
        finished INTEGER NOT NULL DEFAULT 0,
        disputed INTEGER NOT NULL DEFAULT 0,
        disputes_lost INTEGER NOT NULL DEFAULT 0,
        establish_timeouts INTEGER NOT NULL DEFAULT 0,
        recent_misses INTEGER NOT NULL DEFAULT 0,
        barred_until REAL NOT NULL DEFAULT 0
    );
    INSERT INTO reputation(address, finished, disputed, disputes_lost, establish_timeouts)
        SELECT seller, SUM(phase = 'FINISHED'),
            SUM(EXISTS(SELECT 1 FROM messages m WHERE m.txid = t.id AND m.action = 'dispute')),
            SUM(EXISTS(SELECT 1 FROM messages m WHERE m.txid = t.id AND m.action = 'resolve'
                       AND m.post_phase = 'CANCELLED')),
            SUM(phase = 'EXPIRED' AND workerurl IS NULL)
        FROM transactions t GROUP BY seller;
    CREATE INDEX bids_open_by_address ON bids(address) WHERE state = 'placed'
    """,
    # 5 (issue 15): ledger totals in shards, so several exchange processes never wait on
    # one row (each writes its own shard; SQLite's one process uses shard 0); an index for
    # reading one article's resting bids from the store
    """
    CREATE TABLE ledger_totals_sharded(
        kind TEXT NOT NULL,
        shard INTEGER NOT NULL DEFAULT 0,
        available INTEGER NOT NULL,
        blocked INTEGER NOT NULL,
        fee INTEGER NOT NULL,
        world INTEGER NOT NULL,
        PRIMARY KEY (kind, shard)
    );
    INSERT INTO ledger_totals_sharded(kind, shard, available, blocked, fee, world)
        SELECT kind, 0, available, blocked, fee, world FROM ledger_totals;
    DROP TABLE ledger_totals;
    ALTER TABLE ledger_totals_sharded RENAME TO ledger_totals;
    CREATE INDEX bids_placed_article ON bids(article, id) WHERE state = 'placed'
    """,
)


def connect(path: Path | str, busy_ms: int = 5000) -> sqlite3.Connection:
    """Open (creating if needed) and migrate the store; autocommit, explicit transactions.
    ``busy_ms`` bounds how long a statement waits for another connection's write lock."""
    if str(path) != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(f"PRAGMA busy_timeout={busy_ms}")
    # 64 MiB of page cache (the default is 2 MiB): with 10^6 movements the indexes a bid
    # inserts into no longer fit the default, and every miss is a read syscall (issue 11).
    conn.execute("PRAGMA cache_size=-65536")
    migrate(conn)
    return conn


def schema_version(conn: sqlite3.Connection) -> int:
    row = conn.execute("PRAGMA user_version").fetchone()
    return int(row[0])


def migrate(conn: sqlite3.Connection) -> None:
    """Apply every migration newer than the file's ``user_version``, each atomically."""
    for version, script in enumerate(MIGRATIONS, start=1):
        if schema_version(conn) >= version:
            continue
        statements = [s for s in script.split(";") if s.strip()]
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in statements:
                conn.execute(statement)
            if version == 1:
                conn.execute(
                    "INSERT INTO meta(key, value) VALUES ('exchange_id', ?)",
                    ("bitwrk-" + secrets.token_hex(8),),
                )
            conn.execute(f"PRAGMA user_version = {version}")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")


def meta(conn: Conn, key: str) -> str | None:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row[0])


class Checkpointer:
    """Copies the WAL back into the database from a thread of its own.

    SQLite's automatic checkpoint runs inside whichever COMMIT crosses the threshold — on
    the event loop, with an fsync — stalling every request behind it. The serving
    connection turns it off and this thread checkpoints (PASSIVE: never blocks a writer)
    every ``interval`` seconds instead. Durability is unchanged: a commit is in the WAL
    before it returns either way.
    """

    def __init__(self, path: Path | str, interval: float = 0.5) -> None:
        import threading

        self._path = str(path)
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wal-checkpoint", daemon=True)

    def start(self, serving: sqlite3.Connection) -> None:
        if self._path == ":memory:":
            return
        serving.execute("PRAGMA wal_autocheckpoint=0")
        self._thread.start()

    def stop(self) -> None:
        if self._thread.is_alive():
            self._stop.set()
            self._thread.join(10)

    def _run(self) -> None:
        log = logging.getLogger("bitwrk.exchange")
        conn = sqlite3.connect(self._path, isolation_level=None)
        conn.execute("PRAGMA busy_timeout=5000")
        try:
            while True:
                stopping = self._stop.wait(self._interval)
                mode = "TRUNCATE" if stopping else "PASSIVE"
                try:
                    conn.execute(f"PRAGMA wal_checkpoint({mode})")
                except sqlite3.Error as exc:  # try again next time; the WAL keeps everything
                    log.warning("WAL checkpoint (%s) failed: %s", mode, exc)
                if stopping:
                    return
        finally:
            conn.close()
