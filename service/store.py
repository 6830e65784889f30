"""The store interface: SQLite (the default, one process) or PostgreSQL (several processes).

Both are reached through the same few calls of a sqlite3-style connection (``execute``
with ``?`` parameters returning a cursor with ``fetchone``/``fetchall``/``rowcount``/
``lastrowid``, ``executemany``, ``in_transaction``, ``close``), so the domain has one code
path. ``service.db`` is SQLite's half, ``service.pgstore`` PostgreSQL's (psycopg 3,
imported only when a ``postgresql://`` URL is used). What several processes need beyond
that — advisory locks, row locks, events between processes — is asked of the connection's
``shared`` flag (see service.exchange and docs/postgresql.md).
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

Row = Any  # sqlite3.Row or pgstore.Row: both index by position and by column name


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...
    @property
    def lastrowid(self) -> int | None: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def __iter__(self) -> Iterator[Any]: ...


class Conn(Protocol):
    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Cursor: ...
    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> Any: ...
    @property
    def in_transaction(self) -> bool: ...
    def close(self) -> None: ...


def _failures() -> tuple[type[Exception], ...]:
    try:
        import psycopg
    except ImportError:  # only SQLite then
        return (sqlite3.OperationalError,)
    return (sqlite3.OperationalError, psycopg.OperationalError, psycopg.InternalError)


def _errors() -> tuple[type[Exception], ...]:
    try:
        import psycopg
    except ImportError:
        return (sqlite3.Error,)
    return (sqlite3.Error, psycopg.Error)


# The store itself failed (a lock not granted in time, a dead connection, a failed
# transaction): the whole group commit fails and is answered busy.
FAILURES = _failures()
ERRORS = _errors()  # anything the store raises


def is_url(target: str | Path) -> bool:
    return str(target).startswith(("postgresql://", "postgres://"))


def shared(conn: Conn) -> bool:
    """Whether other exchange processes may write the same store at once."""
    return bool(getattr(conn, "shared", False))


def connect(target: str | Path) -> Conn:
    """Open and migrate the store: a PostgreSQL URL or an SQLite file path."""
    if is_url(target):
        from . import pgstore

        return pgstore.connect(str(target))
    from . import db

    return db.connect(target)


def lock_key(name: str) -> int:
    """A stable signed 64-bit advisory-lock key for ``name`` (an article, say)."""
    digest = hashlib.sha256(b"bitwrk:" + name.encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


# Several exchange processes write one at a time: each group commit (and each retirement
# sweep) takes this advisory lock first, so writers never wait on each other in a cycle.
WRITER_LOCK = lock_key("writer")


def begin(conn: Conn, wait: bool = True) -> bool:
    """Start a top-level write transaction; on a shared store once it holds WRITER_LOCK
    (bounded by the connection's lock timeout: then nothing is left open). With ``wait``
    false, False when another process holds the lock (and nothing is left open)."""
    if not shared(conn):
        conn.execute("BEGIN IMMEDIATE")
        return True
    conn.execute("BEGIN")
    try:
        if wait:
            conn.execute("SELECT pg_advisory_xact_lock(?)", (WRITER_LOCK,))
            return True
        got = conn.execute("SELECT pg_try_advisory_xact_lock(?)", (WRITER_LOCK,)).fetchone()
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    if not got[0]:
        conn.execute("ROLLBACK")
        return False
    return True


def meta(conn: Conn, key: str) -> str | None:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row[0])
