"""Signed requests between a buyer's daemon and a seller's endpoint.

The buyer signs every request to the seller's worker endpoint (DESIGN §6) with the same
canonical documents as the exchange, carried in one header so bodies can be raw bytes.
The seller accepts only the transaction's buyer, for that transaction and exchange, with
nonces that increase per buyer.
"""

from __future__ import annotations

import json
from typing import Any

from ..errors import Forbidden, InvalidRequest, ReplayError, WrongExchange
from ..keys import PrivateKey
from ..protocol import NonceSource, Value, sign_request, verify_request

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
