"""Shared test helpers: keys, a controllable clock, signed request bodies."""

from __future__ import annotations

import hashlib
import itertools
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from bitwrk.cas.sealing import WRAPPED_KEY_SIZE
from bitwrk.keys import PrivateKey
from bitwrk.protocol import receipt_document, sign_request, work_secret_hash
from tools.pgserver import PgServer

ARTICLE = "net.bitwrk/blender/5.0/2G"
_nonces = itertools.count(1)


class Clock:
    """A settable clock for the exchange (seconds since the epoch)."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Party:
    key: PrivateKey = field(default_factory=PrivateKey.generate)

    @property
    def address(self) -> str:
        return self.key.address

    def sign(self, exchange: str, **fields: Any) -> dict[str, Any]:
        doc = {"exchange": exchange, "address": self.address, "nonce": next(_nonces), **fields}
        return sign_request(self.key, doc)


def work_secret() -> tuple[str, str, str]:
    """(workhash, secretproof, worksecrethash) as the buyer's daemon makes them: the seller
    publishes secretproof = SHA256(secret), never the secret."""
    workhash = hashlib.sha256(secrets.token_bytes(16)).hexdigest()
    proof = hashlib.sha256(secrets.token_bytes(32)).hexdigest()
    digest = work_secret_hash(workhash, proof)
    return workhash, proof, digest


def receipt(buyer: PrivateKey, exchange: str, txid: int, seller: str, enc: str) -> str:
    """The buyer's receipt for ``enc`` in one trade."""
    return buyer.sign_message(receipt_document(exchange=exchange, txid=txid, seller=seller,
                                               encresulthash=enc))


def sealed_key() -> str:
    """Stands in for a result key sealed to the buyer (the exchange checks only its form)."""
    return secrets.token_hex(WRAPPED_KEY_SIZE)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """A real PostgreSQL for the whole session (tools/pgserver.py), its template migrated;
    ``pg_server.new_database()`` gives each test a fresh database."""
    try:
        server = PgServer()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    try:
        server.template()
        yield server
    finally:
        server.stop()
