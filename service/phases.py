"""The transaction state machine of docs/protocol.md (pure: no I/O).

``step()`` checks one signed message against the transaction and returns what changes;
``on_timeout()`` says how a transaction ends when its deadline passes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from bitwrk.cas.sealing import WRAPPED_KEY_SIZE
from bitwrk.endpoints import check_endpoint_url
from bitwrk.errors import Forbidden, InvalidRequest, WrongPhase
from bitwrk.keys import verify_message
from bitwrk.protocol import receipt_document, work_secret_hash
from bitwrk.wire import Phase

from .config import Timeouts

OPEN_PHASES = frozenset({Phase.ESTABLISHING, Phase.TRANSMITTING, Phase.WORKING, Phase.UNVERIFIED})


class Settlement(StrEnum):
    PAY_SELLER = "settle"
    REFUND_BUYER = "refund"


_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_WRAPPED_KEY = re.compile(f"^[0-9a-f]{{{2 * WRAPPED_KEY_SIZE}}}$")
MAX_REASON = 500
MAX_EVIDENCE = 12_000  # a buyer's spot-check evidence (bitwrk.render.verify); kept in the trail


@dataclass(frozen=True)
class TxView:
    """What the state machine needs to know about a transaction."""

    buyer: str
    seller: str
    article_class: str
    phase: Phase
    workhash: str | None
    worksecrethash: str | None
    workerurl: str | None
    txid: int = 0
    exchange: str = ""  # this exchange's id: what receipts are bound to


@dataclass(frozen=True)
class Step:
    phase: Phase
    updates: dict[str, str]  # columns to store
    timeout: float | None  # new deadline; None = no deadline (terminal or awaiting operator)
    settlement: Settlement | None
    keep_deadline: bool = False  # half of ESTABLISHING done: the establish deadline stands


# action -> (role, required fields, phases it is accepted in)
MESSAGES: dict[str, tuple[str, tuple[str, ...], frozenset[Phase]]] = {
    "work": ("buyer", ("workhash", "worksecrethash"), frozenset({Phase.ESTABLISHING})),
    "endpoint": ("seller", ("workerurl",), frozenset({Phase.ESTABLISHING})),
    "received": ("seller", ("secretproof",), frozenset({Phase.TRANSMITTING})),
    "result": (
        "seller",
        ("encresulthash", "receipt", "resultkey"),
        frozenset({Phase.WORKING}),
    ),
    "accept": ("buyer", (), frozenset({Phase.UNVERIFIED})),
    "dispute": ("buyer", ("reason",), frozenset({Phase.UNVERIFIED})),
    "reject": ("seller", ("reason",), frozenset({Phase.TRANSMITTING, Phase.WORKING})),
    "cancel": ("buyer", (), frozenset({Phase.ESTABLISHING, Phase.TRANSMITTING})),
    "resolve": ("operator", ("outcome",), frozenset({Phase.RESULT_DISPUTED})),
}
ENVELOPE = frozenset({"action", "exchange", "address", "nonce", "txid", "revision", "signature"})
# Fields an action may carry besides its required ones (checked by its handler).
OPTIONAL: dict[str, frozenset[str]] = {"dispute": frozenset({"evidence"})}


def required_fields(action: str) -> tuple[str, ...]:
    if action not in MESSAGES:
        raise InvalidRequest(f"unknown transaction message {action!r}", known=sorted(MESSAGES))
    return MESSAGES[action][1]


def _hex64(fields: dict[str, Any], name: str) -> str:
    value = fields[name]
    if not isinstance(value, str) or not _HEX64.fullmatch(value):
        raise InvalidRequest(f"{name} must be 64 lowercase hex digits", field=name)
    return value


def _text(fields: dict[str, Any], name: str, limit: int) -> str:
    value = fields[name]
    if not isinstance(value, str) or len(value) > limit:
        raise InvalidRequest(f"{name} must be a string of at most {limit} characters")
    return value


def step(
    tx: TxView, role: str, action: str, fields: dict[str, Any], now: float, t: Timeouts
) -> Step:
    """Validate ``action`` by ``role`` against ``tx``; return the resulting change."""
    want_role, names, phases = MESSAGES[action]
    extra = set(fields) - set(names) - OPTIONAL.get(action, frozenset()) - ENVELOPE
    if extra:
        raise InvalidRequest(f"unexpected fields for {action}: {sorted(extra)}")
    missing = [n for n in names if n not in fields]
    if missing:
        raise InvalidRequest(f"{action} needs fields {missing}", missing=missing)
    if role != want_role:
        raise Forbidden(f"{action} must be sent by the {want_role}, not the {role}")
    if tx.phase not in phases:
        raise WrongPhase(
            f"{action} is not accepted in phase {tx.phase}", phase=str(tx.phase), action=action
        )
    handler = _HANDLERS[action]
    return handler(tx, fields, now, t)


def _work(tx: TxView, f: dict[str, Any], now: float, t: Timeouts) -> Step:
    if tx.workhash is not None:
        raise WrongPhase("the buyer already sent work")
    updates = {"workhash": _hex64(f, "workhash"), "worksecrethash": _hex64(f, "worksecrethash")}
    return _establishing(tx.workerurl is not None, updates, now, t)


def _endpoint(tx: TxView, f: dict[str, Any], now: float, t: Timeouts) -> Step:
    if tx.workerurl is not None:
        raise WrongPhase("the seller already sent its endpoint")
    url = _text(f, "workerurl", 256)
    try:
        check_endpoint_url(url)
    except InvalidRequest as exc:
        raise InvalidRequest(f"workerurl: {exc.message}", field="workerurl") from None
    return _establishing(tx.workhash is not None, {"workerurl": url}, now, t)


def _establishing(other_done: bool, updates: dict[str, str], now: float, t: Timeouts) -> Step:
    if other_done:
        return Step(Phase.TRANSMITTING, updates, now + t.transmit, None)
    return Step(Phase.ESTABLISHING, updates, None, None, keep_deadline=True)


def _received(tx: TxView, f: dict[str, Any], now: float, t: Timeouts) -> Step:
    # The seller proves it got the buyer's secret by showing SHA256(secret), never the
    # secret itself: worksecrethash = SHA256(workhash ‖ SHA256(secret)).
    proof = _hex64(f, "secretproof")
    assert tx.workhash is not None and tx.worksecrethash is not None
    if work_secret_hash(tx.workhash, proof) != tx.worksecrethash:
        raise InvalidRequest("SHA256(workhash ‖ secretproof) does not match worksecrethash")
    working = t.working.get(tx.article_class, max(t.working.values()))
    return Step(Phase.WORKING, {"secretproof": proof}, now + working, None)


def _result(tx: TxView, f: dict[str, Any], now: float, t: Timeouts) -> Step:
    enc = _hex64(f, "encresulthash")
    receipt = _text(f, "receipt", 100)
    document = receipt_document(exchange=tx.exchange, txid=tx.txid, seller=tx.seller,
                                encresulthash=enc)
    if not verify_message(tx.buyer, receipt, document):
        raise InvalidRequest("receipt is not the buyer's signature over this trade's receipt"
                             " document (exchange, txid, seller, encresulthash)",
                             field="receipt")
    key = f["resultkey"]
    if not isinstance(key, str) or not _WRAPPED_KEY.match(key):
        raise InvalidRequest(f"resultkey must be the result key sealed to the buyer "
                             f"({2 * WRAPPED_KEY_SIZE} lowercase hex digits)", field="resultkey")
    updates = {"encresulthash": enc, "receipt": receipt, "resultkey": key}
    return Step(Phase.UNVERIFIED, updates, now + t.review, None)


def _accept(tx: TxView, f: dict[str, Any], now: float, t: Timeouts) -> Step:
    return Step(Phase.FINISHED, {}, None, Settlement.PAY_SELLER)


def _dispute(tx: TxView, f: dict[str, Any], now: float, t: Timeouts) -> Step:
    # Funds stay blocked until the operator resolves it: no deadline. The evidence lives
    # in the signed message trail, where the operator reads it.
    if "evidence" in f:
        _text(f, "evidence", MAX_EVIDENCE)
    return Step(Phase.RESULT_DISPUTED, {"reason": _text(f, "reason", MAX_REASON)}, None, None)


def _reject(tx: TxView, f: dict[str, Any], now: float, t: Timeouts) -> Step:
    reason = _text(f, "reason", MAX_REASON)
    return Step(Phase.WORK_DISPUTED, {"reason": reason}, None, Settlement.REFUND_BUYER)


def _cancel(tx: TxView, f: dict[str, Any], now: float, t: Timeouts) -> Step:
    return Step(Phase.CANCELLED, {}, None, Settlement.REFUND_BUYER)


def _resolve(tx: TxView, f: dict[str, Any], now: float, t: Timeouts) -> Step:
    outcome = f["outcome"]
    if outcome == "seller":
        return Step(Phase.FINISHED, {}, None, Settlement.PAY_SELLER)
    if outcome == "buyer":
        return Step(Phase.CANCELLED, {}, None, Settlement.REFUND_BUYER)
    raise InvalidRequest("outcome must be 'seller' or 'buyer'", field="outcome")


_HANDLERS = {
    "work": _work,
    "endpoint": _endpoint,
    "received": _received,
    "result": _result,
    "accept": _accept,
    "dispute": _dispute,
    "reject": _reject,
    "cancel": _cancel,
    "resolve": _resolve,
}


def on_timeout(phase: Phase) -> tuple[Phase, Settlement]:
    """UNVERIFIED past review time pays the seller; any earlier open phase expires (refund)."""
    if phase == Phase.UNVERIFIED:
        return Phase.FINISHED, Settlement.PAY_SELLER
    return Phase.EXPIRED, Settlement.REFUND_BUYER
