"""Shared test helpers: keys, a controllable clock, signed request bodies."""

from __future__ import annotations

import hashlib
import itertools
import secrets
from dataclasses import dataclass, field
from typing import Any

from bitwrk.keys import PrivateKey
from bitwrk.protocol import sign_request

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
    """(workhash, buyersecret, worksecrethash) as the buyer's daemon makes them."""
    workhash = hashlib.sha256(secrets.token_bytes(16)).hexdigest()
    secret = secrets.token_hex(32)
    digest = hashlib.sha256(bytes.fromhex(workhash) + bytes.fromhex(secret)).hexdigest()
    return workhash, secret, digest
