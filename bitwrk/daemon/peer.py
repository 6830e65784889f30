"""Signed, encrypted requests between a buyer's daemon and a seller's endpoint.

The buyer signs every request to the seller's worker endpoint (docs/architecture.md) with the same
canonical documents as the exchange, carried in one header so bodies can be raw bytes.
The seller accepts only the transaction's buyer, for that transaction and exchange, with
nonces that increase per buyer.

Bodies are encrypted end to end (:class:`Channel`, docs/protocol-security.md): both sides
compute the ECDH secret of their two identity keys — the buyer recovers the seller's public
key from its signed ``endpoint`` message on the exchange, the seller the buyer's from the
signed request header — and derive one key per message with HKDF (random salt, info naming
the purpose, exchange and transaction). A relay or eavesdropper sees only ciphertext.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from ..cas.sealing import (
    SALT_SIZE,
    Unsealer,
    derive_key,
    seal,
    seal_stream,
    unseal,
    unwrap_key,
    wrap_key,
)
from ..errors import Forbidden, InvalidRequest, ReplayError, SealError, WrongExchange
from ..keys import PrivateKey, recover_signer_key
from ..protocol import NonceSource, Value, canonical_document, sign_request, verify_request
from ..wire import Message

_INFO = b"bitwrk/peer/v1"

HEADER = "X-BitWrk-Auth"


def sign_peer(key: PrivateKey, nonces: NonceSource, exchange: str, action: str, txid: int,
              **fields: Value) -> dict[str, str]:
    """The header that authenticates one request to a seller endpoint."""
    doc: dict[str, Value] = {"action": action, "exchange": exchange, "address": key.address,
                             "nonce": nonces(), "txid": txid, **fields}
    return {HEADER: json.dumps(sign_request(key, doc), separators=(",", ":"))}


class PeerGate:
    """The seller endpoint's check of incoming buyer requests."""

    def __init__(self, exchange: str) -> None:
        self.exchange = exchange
        self._last_nonce: dict[tuple[str, int], int] = {}

    def check(self, header: str | None, action: str, txid: int, buyer: str) -> dict[str, Any]:
        if not header:
            raise InvalidRequest(f"missing {HEADER} header")
        try:
            body = json.loads(header)
        except json.JSONDecodeError as exc:
            raise InvalidRequest(f"{HEADER} is not JSON") from exc
        if not isinstance(body, dict):
            raise InvalidRequest(f"{HEADER} must be a JSON object")
        address = verify_request(body)
        if body.get("exchange") != self.exchange:
            raise WrongExchange("signed for another exchange")
        if body.get("action") != action or body.get("txid") != txid:
            raise InvalidRequest(f"expected action {action!r} for transaction {txid}")
        if address != buyer:
            raise Forbidden("only the transaction's buyer may use this endpoint")
        # Replays are refused per transaction: one trade's requests come one after the
        # other, but a buyer runs several trades with this seller at once, whose requests
        # may overtake each other.
        nonce = int(body["nonce"])
        key = (address, txid)
        if nonce <= self._last_nonce.get(key, 0):
            raise ReplayError("nonce must increase")
        self._last_nonce[key] = nonce
        return body


def header_signer_key(body: Mapping[str, Any]) -> bytes:
    """The public key behind a checked auth header (for the seller's side of ECDH)."""
    public = recover_signer_key(str(body["address"]), str(body["signature"]),
                                canonical_document(body))
    if public is None:
        raise InvalidRequest("cannot recover the signer's key from the auth header")
    return public


def endpoint_signer_key(messages: Iterable[Message], seller: str) -> bytes:
    """The seller's public key, recovered from its signed ``endpoint`` message as the
    exchange recorded it (document and signature), so the buyer trusts no one's word."""
    for msg in messages:
        if msg.action == "endpoint" and msg.sender == seller:
            public = recover_signer_key(seller, str(msg.signature), str(msg.document))
            if public is not None:
                return public
    raise InvalidRequest("the exchange has no signed endpoint message from the seller")


@dataclass(frozen=True)
class Channel:
    """The end-to-end keys of one trade between a buyer and a seller."""

    shared: bytes  # ECDH of the two identity keys
    exchange: str
    txid: int

    @classmethod
    def between(cls, key: PrivateKey, peer_public: bytes, exchange: str, txid: int) -> Channel:
        return cls(key.shared_secret(peer_public), exchange, txid)

    def _info(self, label: str) -> bytes:
        return b"\0".join((_INFO, label.encode(), self.exchange.encode(), str(self.txid).encode()))

    def _key(self, label: str, salt: bytes) -> bytes:
        return derive_key(self.shared, salt, self._info(label))

    def seal(self, label: str, plaintext: bytes) -> bytes:
        salt = secrets.token_bytes(SALT_SIZE)
        return salt + seal(plaintext, key=self._key(label, salt))[1]

    def open(self, label: str, data: bytes) -> bytes:
        if len(data) < SALT_SIZE:
            raise SealError("encrypted peer message is shorter than its salt")
        return unseal(self._key(label, data[:SALT_SIZE]), data[SALT_SIZE:])

    def seal_stream(self, label: str, pieces: Iterable[bytes]) -> Iterator[bytes]:
        salt = secrets.token_bytes(SALT_SIZE)
        yield salt
        yield from seal_stream(self._key(label, salt), pieces)

    def opener(self, label: str) -> StreamOpener:
        return StreamOpener(self, label)

    def wrap_result_key(self, key: bytes) -> str:
        return wrap_key(self.shared, self._info("resultkey"), key).hex()

    def unwrap_result_key(self, wrapped: str) -> bytes:
        try:
            raw = bytes.fromhex(wrapped)
        except ValueError:
            raise SealError("the sealed result key is not hex") from None
        return unwrap_key(self.shared, self._info("resultkey"), raw)


class StreamOpener:
    """The receiving end of :meth:`Channel.seal_stream`: salt first, then sealed records."""

    def __init__(self, channel: Channel, label: str) -> None:
        self._channel = channel
        self._label = label
        self._salt = bytearray()
        self._unsealer: Unsealer | None = None

    def feed(self, piece: bytes | bytearray | memoryview) -> bytes:
        if self._unsealer is None:
            need = SALT_SIZE - len(self._salt)
            self._salt += piece[:need]
            piece = piece[need:]
            if len(self._salt) < SALT_SIZE:
                return b""
            self._unsealer = Unsealer(self._channel._key(self._label, bytes(self._salt)))
        return self._unsealer.feed(piece)

    def finish(self) -> bytes:
        if self._unsealer is None:
            raise SealError("encrypted peer stream is shorter than its salt")
        return self._unsealer.finish()
