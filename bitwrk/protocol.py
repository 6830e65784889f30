"""Canonical signed documents: how a request's fields become the text that is signed.

docs/protocol.md: every state-changing request is a flat mapping of fields. The signed
document is all fields but ``signature``, sorted by key, joined as ``key=value`` with
``&``, each value percent-encoded with ``urllib.parse.quote(str(v), safe="")`` (RFC 3986
§2.3 unreserved characters stay, UTF-8 bytes of everything else become %XX). Every
document names ``action``, ``exchange`` (against replay on another exchange), ``address``
(the signer) and ``nonce`` (strictly increasing per address).
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote

from .errors import InvalidRequest, SignatureError
from .keys import PrivateKey, address_network, verify_message
from .money import check_price

__all__ = [
    "BID_ACTION",
    "BID_FIELDS",
    "BID_TERMS",
    "BID_TYPES",
    "MAX_NONCE",
    "RECEIPT_ACTION",
    "REQUIRED_FIELDS",
    "SIGNATURE",
    "NonceSource",
    "SellerTerms",
    "Value",
    "bid_fields",
    "canonical_document",
    "receipt_document",
    "secret_proof",
    "sign_request",
    "verify_request",
    "work_secret_hash",
]

Value = str | int

SIGNATURE = "signature"
REQUIRED_FIELDS = frozenset({"action", "exchange", "address", "nonce"})
MAX_NONCE = 2**63 - 1  # fits SQLite's signed 64-bit INTEGER
_FIELD_NAME = re.compile(r"[a-z_]{1,32}")

BID_ACTION = "bid"
BID_TYPES = frozenset({"buy", "sell"})
BID_FIELDS = frozenset({"action", "exchange", "address", "nonce", "type", "article", "price"})
# Optional fields of a buy bid: what it asks of its seller (SellerTerms); absent = nothing.
BID_TERMS = frozenset({"min_finished", "max_lost_pct", "exclude"})
MAX_MIN_FINISHED = 1_000_000  # more finished trades than a seller will have: a typo, refused
MAX_EXCLUDED = 32  # addresses one bid may exclude (a lasting block is an ``avoids`` relation)


def canonical_document(fields: Mapping[str, Value]) -> str:
    """``k1=v1&k2=v2...`` over every field but ``signature``, keys sorted."""
    return "&".join(
        f"{key}={quote(str(fields[key]), safe='')}" for key in sorted(fields) if key != SIGNATURE
    )


def _check_field(key: object, value: object) -> None:
    if not isinstance(key, str) or not _FIELD_NAME.fullmatch(key):
        raise InvalidRequest("field names are 1-32 characters of a-z and _", field=str(key)[:40])
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InvalidRequest(
            f"field {key!r} must be a string or an integer, not {type(value).__name__}",
            field=key,
        )


def _check_flat(body: object) -> dict[str, Value]:
    """A copy of ``body`` once it is known to map field names to str/int values."""
    if not isinstance(body, Mapping):
        raise InvalidRequest("a request is a JSON object of fields")
    for key, value in body.items():
        _check_field(key, value)
    return dict(body)


def _require(fields: Mapping[str, Value], names: frozenset[str]) -> None:
    missing = sorted(names - fields.keys())
    if missing:
        raise InvalidRequest(f"missing field(s): {', '.join(missing)}", missing=missing)


def _check_nonce(nonce: Value) -> None:
    if not isinstance(nonce, int) or not 0 < nonce <= MAX_NONCE:
        raise InvalidRequest(f"nonce must be a positive integer up to {MAX_NONCE}", field="nonce")


def _check_strings(fields: Mapping[str, Value], names: tuple[str, ...]) -> None:
    for name in names:
        if not isinstance(fields[name], str) or not fields[name]:
            raise InvalidRequest(f"field {name!r} must be a non-empty string", field=name)


def sign_request(key: PrivateKey, fields: Mapping[str, Value]) -> dict[str, Value]:
    """A copy of ``fields`` with ``address`` (the key's) and its ``signature`` added."""
    body = _check_flat(fields)
    if SIGNATURE in body:
        raise InvalidRequest("fields are already signed", field=SIGNATURE)
    if body.setdefault("address", key.address) != key.address:
        raise InvalidRequest("address field is not the signing key's address", field="address")
    _require(body, REQUIRED_FIELDS)
    _check_nonce(body["nonce"])
    _check_strings(body, ("action", "exchange"))
    body[SIGNATURE] = key.sign_message(canonical_document(body))
    return body


def verify_request(body: Mapping[str, object]) -> str:
    """The signer's address if ``body`` is a well-formed, correctly signed request.

    InvalidRequest (or its AddressError) for a malformed body, SignatureError when the
    signature does not verify for ``address``. Replay and exchange checks are the caller's.
    """
    fields = _check_flat(body)
    _require(fields, REQUIRED_FIELDS | {SIGNATURE})
    _check_nonce(fields["nonce"])
    _check_strings(fields, ("action", "exchange", "address", SIGNATURE))
    address = str(fields["address"])
    address_network(address)  # AddressError unless a P2PKH address
    if not verify_message(address, str(fields[SIGNATURE]), canonical_document(fields)):
        raise SignatureError("signature does not verify for address", address=address)
    return address


class NonceSource:
    """Strictly increasing nonces: microseconds since the epoch, or last + 1 if the clock
    has not moved on (or went back). Thread-safe; ``start`` resumes after a known nonce."""

    def __init__(self, start: int = 0, clock: Callable[[], int] = time.time_ns) -> None:
        self._last = start
        self._clock = clock  # nanoseconds, like time.time_ns
        self._lock = threading.Lock()

    def __call__(self) -> int:
        now_us = self._clock() // 1000
        with self._lock:
            self._last = max(now_us, self._last + 1)
            return self._last

    @property
    def last(self) -> int:
        return self._last


def bid_fields(
    *, exchange: str, address: str, nonce: int, type: str, article: str, price: int,
    terms: SellerTerms | None = None,
) -> dict[str, Value]:
    """The unsigned fields of a bid (docs/protocol.md: type buy|sell, article, price in sat,
    and for a buy the optional ``terms`` it asks of its seller)."""
    if type not in BID_TYPES:
        raise InvalidRequest(f"bid type must be 'buy' or 'sell', not {type!r}", field="type")
    if not isinstance(article, str) or not article:
        raise InvalidRequest("article must be a non-empty string", field="article")
    fields: dict[str, Value] = {
        "action": BID_ACTION,
        "exchange": exchange,
        "address": address,
        "nonce": nonce,
        "type": type,
        "article": article,
        "price": check_price(price),
    }
    if terms is not None and terms.to_fields():
        if type != "buy":
            raise InvalidRequest("only a buy bid asks for a seller record", field="type")
        fields.update(terms.to_fields())
    return fields


@dataclass(frozen=True)
class SellerTerms:
    """What a buy bid asks of the seller it may trade with, checked by the exchange's
    matcher against the seller's public record (docs/protocol.md): at least
    ``min_finished`` trades finished, at most ``max_lost_pct`` percent of its decided
    trades (finished + disputes lost) lost in dispute, and not one of ``exclude``. The
    defaults ask nothing, so a bid without these fields trades as before."""

    min_finished: int = 0
    max_lost_pct: int = 100
    exclude: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        _check_bound("min_finished", self.min_finished, MAX_MIN_FINISHED)
        _check_bound("max_lost_pct", self.max_lost_pct, 100)
        if len(self.exclude) > MAX_EXCLUDED:
            raise InvalidRequest(f"a bid excludes at most {MAX_EXCLUDED} sellers",
                                 field="exclude")
        for seller in self.exclude:
            address_network(seller)  # AddressError unless a P2PKH address

    @property
    def asks_record(self) -> bool:
        return self.min_finished > 0 or self.max_lost_pct < 100

    def admits(self, seller: str, record: Callable[[], Mapping[str, int]]) -> bool:
        """Whether ``seller`` may fill the bid; ``record()`` (its public counts, as in
        ``service.reputation``) is only asked for when a record is required."""
        if seller in self.exclude:
            return False
        if not self.asks_record:
            return True
        counts = record()
        finished, lost = counts["finished"], counts["disputes_lost"]
        return (finished >= self.min_finished
                and lost * 100 <= self.max_lost_pct * (finished + lost))

    def to_fields(self) -> dict[str, Value]:
        """The bid fields for these terms: only those that ask something."""
        fields: dict[str, Value] = {}
        if self.min_finished:
            fields["min_finished"] = self.min_finished
        if self.max_lost_pct != 100:
            fields["max_lost_pct"] = self.max_lost_pct
        if self.exclude:
            fields["exclude"] = ",".join(sorted(self.exclude))
        return fields

    @classmethod
    def from_fields(cls, fields: Mapping[str, object]) -> SellerTerms:
        """The terms of a bid's fields (InvalidRequest for a bad value); none: no terms."""
        exclude = fields.get("exclude", "")
        if not isinstance(exclude, str) or ("exclude" in fields and not exclude):
            raise InvalidRequest("exclude is a non-empty, comma-separated list of addresses",
                                 field="exclude")
        return cls(_int_value(fields, "min_finished", 0), _int_value(fields, "max_lost_pct", 100),
                   frozenset(exclude.split(",")) if exclude else frozenset())

    @classmethod
    def from_document(cls, document: str) -> SellerTerms:
        """The terms a stored, signed bid document names (the books are rebuilt from it)."""
        fields: dict[str, object] = {k: v for k, v in parse_qsl(document) if k in BID_TERMS}
        for name in ("min_finished", "max_lost_pct"):
            if name in fields:
                fields[name] = int(str(fields[name]))
        return cls.from_fields(fields)


def _int_value(fields: Mapping[str, object], name: str, default: int) -> int:
    value = fields.get(name, default)
    if type(value) is not int:
        raise InvalidRequest(f"{name} must be an integer", field=name)
    return value


def _check_bound(name: str, value: int, maximum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= maximum:
        raise InvalidRequest(f"{name} must be an integer from 0 to {maximum}", field=name)


RECEIPT_ACTION = "receipt"


def receipt_document(*, exchange: str, txid: int, seller: str, encresulthash: str) -> str:
    """What the buyer signs on receiving a sealed result: the canonical document binding the
    ciphertext's hash to one trade (exchange, transaction, seller), so a receipt copied
    from another trade (the hash and signature are public once published) never verifies."""
    return canonical_document({"action": RECEIPT_ACTION, "exchange": exchange, "txid": txid,
                               "seller": seller, "encresulthash": encresulthash})


def work_secret_hash(workhash: str, secretproof: str) -> str:
    """The buyer's commitment ``worksecrethash = SHA256(workhash ‖ secretproof)`` (hex).

    ``secretproof`` is SHA256(buyer secret): the seller shows it to prove it received the
    secret without revealing the secret itself (docs/protocol.md).
    """
    return hashlib.sha256(bytes.fromhex(workhash) + bytes.fromhex(secretproof)).hexdigest()


def secret_proof(secret: bytes) -> str:
    """SHA256(buyer secret) (hex): what the seller shows the exchange in ``received``."""
    return hashlib.sha256(secret).hexdigest()
