"""The wire vocabulary and the wire records.

Every state name that crosses the exchange's API or the daemon's journal is a StrEnum whose
values are the strings on the wire (so JSON, SQLite rows and old journals read back
unchanged: ``Phase.WORKING == "WORKING"``).

The objects the exchange answers with (bids, transactions and their messages, accounts,
ledger movements) are frozen dataclasses, defined once for both sides: the client parses an
answer with ``from_json`` (unknown fields are ignored, so an exchange may add some; a
missing or mistyped one is a :class:`WireError` naming it), and the service builds the same
JSON with ``wire_view``, which emits exactly the fields declared here.

docs/protocol.md describes what each phase means and which message moves a transaction
between them; the state machine itself is ``service/phases.py``.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Self

from .errors import WireError

__all__ = [
    "RETIRED_PHASES",
    "UNIT_SETTLED",
    "Account",
    "Bid",
    "BidState",
    "BidType",
    "JobState",
    "Ledger",
    "Message",
    "Movement",
    "PendingDeposit",
    "Phase",
    "Reputation",
    "TradeState",
    "Transaction",
    "UnitState",
    "WireRecord",
    "wire_view",
]


class Phase(StrEnum):
    """A transaction's phase on the exchange (the ``phase`` field of a transaction)."""

    ESTABLISHING = "ESTABLISHING"
    TRANSMITTING = "TRANSMITTING"
    WORKING = "WORKING"
    UNVERIFIED = "UNVERIFIED"
    FINISHED = "FINISHED"
    RESULT_DISPUTED = "RESULT_DISPUTED"
    WORK_DISPUTED = "WORK_DISPUTED"
    CANCELLED = "CANCELLED"
    EXPIRED = "EXPIRED"


# Phases no party message leaves (RESULT_DISPUTED waits for the operator, not a party).
RETIRED_PHASES = frozenset({Phase.FINISHED, Phase.CANCELLED, Phase.EXPIRED,
                            Phase.WORK_DISPUTED, Phase.RESULT_DISPUTED})


class BidType(StrEnum):
    """Which side of the order book a bid is on."""

    BUY = "buy"
    SELL = "sell"


class BidState(StrEnum):
    """A bid's life: resting in the book, then matched into a trade or closed unmatched."""

    PLACED = "placed"
    MATCHED = "matched"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


class JobState(StrEnum):
    """A buyer job in the daemon's journal."""

    ACTIVE = "active"
    FINISHED = "finished"
    CANCELLED = "cancelled"


class UnitState(StrEnum):
    """One unit (frame or tile) of a buyer job in the daemon's journal."""

    PENDING = "pending"  # waiting for a bid
    BIDDING = "bidding"  # a buy bid rests on the exchange
    TRADING = "trading"  # matched: a transaction is under way
    DONE = "done"  # the verified result is stored
    FAILED = "failed"  # given up on (cancelled job, too many attempts)


UNIT_SETTLED = frozenset({UnitState.DONE, UnitState.FAILED})  # nothing more to buy


class TradeState(StrEnum):
    """A trade in the daemon's journal: still to be followed after a restart, or closed."""

    OPEN = "open"
    CLOSED = "closed"



# --- records: the exchange's answers, parsed once by the client --------------------------


class WireRecord:
    """Base of the frozen records below: parsing from and dumping to their JSON."""

    @classmethod
    def from_json(cls, data: object, where: str = "") -> Self:
        """The record in ``data`` (a decoded JSON object). Keys not declared are ignored;
        a declared field without a default must be there, with a value of its type."""
        where = where or cls.__name__
        if not isinstance(data, dict):
            raise WireError(f"{where}: expected an object, got {_json_kind(data)}",
                            field=where)
        hints = _hints(cls)
        values: dict[str, Any] = {}
        for f in _fields(cls):
            path = f"{where}.{f.name}"
            if f.name in data:
                values[f.name] = _parse(data[f.name], hints[f.name], path)
            elif f.default is dataclasses.MISSING:
                raise WireError(f"{path} is missing", field=path)
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        """The JSON object the exchange sends for this record (``from_json``'s inverse);
        a field left at its default was not sent and is left out again."""
        out: dict[str, Any] = {}
        for f in _fields(type(self)):
            value = getattr(self, f.name)
            if f.default is dataclasses.MISSING or value != f.default:
                out[f.name] = _dump(value)
        return out

    @classmethod
    def sent_fields(cls) -> tuple[str, ...]:
        """The fields every answer carries (those without a default), in order."""
        return tuple(f.name for f in _fields(cls) if f.default is dataclasses.MISSING)


def wire_view(cls: type[WireRecord], source: Mapping[str, Any]) -> dict[str, Any]:
    """The service's JSON for a ``cls`` record: exactly its ``sent_fields``, taken from
    ``source`` (a row or a dict). What ``source`` has beyond them is never sent, so a new
    column stays private until it is declared here."""
    return {name: source[name] for name in cls.sent_fields()}


@dataclass(frozen=True)
class Bid(WireRecord):
    id: int
    address: str
    type: BidType
    article: str
    price: int  # satoshi
    fee: int  # satoshi
    state: BidState
    created: float  # epoch seconds, like every time here
    expires: float
    closed: float | None
    txid: int | None  # the trade it matched into


@dataclass(frozen=True)
class Message(WireRecord):
    """One message of a transaction as the exchange recorded it (the signed document and
    its signature; none for the exchange's own timeouts)."""

    id: int
    txid: int
    time: float
    sender: str
    role: str
    action: str
    pre_phase: Phase
    post_phase: Phase
    revision: int
    document: str | None
    signature: str | None


@dataclass(frozen=True)
class Transaction(WireRecord):
    """A trade between a buy and a sell bid; the fields after ``retired`` are set by the
    parties' messages as it moves through its phases (docs/protocol.md)."""

    id: int
    article: str
    buyer: str
    seller: str
    buy_bid: int
    sell_bid: int
    price: int  # satoshi the seller earns
    fee: int  # satoshi the exchange keeps
    matched: float
    phase: Phase
    revision: int
    timeout: float | None  # the current phase's deadline
    retired: float | None
    workhash: str | None
    worksecrethash: str | None
    workerurl: str | None
    encresulthash: str | None
    receipt: str | None
    resultkey: str | None
    reason: str | None
    secretproof: str | None
    # Only ``GET /transactions/{id}`` sends the messages; replies to messages and the event
    # stream send the transaction alone.
    messages: tuple[Message, ...] | None = None


@dataclass(frozen=True)
class Reputation(WireRecord):
    """A seller's public record (service/reputation.py)."""

    finished: int
    disputed: int
    disputes_lost: int
    establish_timeouts: int


@dataclass(frozen=True)
class PendingDeposit(WireRecord):
    """A Bitcoin output paid to the account's deposit address, not yet credited."""

    txid: str
    vout: int
    amount: int  # satoshi
    confirmations: int
    required: int  # confirmations before it is credited


@dataclass(frozen=True)
class Account(WireRecord):
    address: str
    available: int  # satoshi
    blocked: int  # satoshi held for open buy bids and trades
    last_nonce: int
    deposit_address: str | None
    pending_deposits: tuple[PendingDeposit, ...]
    pending_withdrawals: int  # satoshi
    reputation: Reputation
    barred_until: float | None


@dataclass(frozen=True)
class Movement(WireRecord):
    """One ledger entry: its four deltas sum to zero (service/ledger.py)."""

    id: int
    time: float
    kind: str
    available_account: str | None
    available_delta: int
    blocked_account: str | None
    blocked_delta: int
    fee_delta: int
    world_delta: int
    bid_id: int | None
    txid: int | None
    deposit_uid: str | None
    withdrawal_id: int | None

    def delta_for(self, address: str) -> int:
        """What this movement did to ``address``'s total (available + blocked) balance."""
        delta = self.available_delta if self.available_account == address else 0
        return delta + (self.blocked_delta if self.blocked_account == address else 0)


@dataclass(frozen=True)
class Ledger(WireRecord):
    """A page of an account's movements, newest first; ``next_before`` asks for the next."""

    address: str
    movements: tuple[Movement, ...]
    next_before: int | None


# --- parsing by the declared types ---------------------------------------------------------


def _fields(cls: type[WireRecord]) -> tuple[dataclasses.Field[Any], ...]:
    return dataclasses.fields(typing.cast(Any, cls))


_HINTS: dict[type, dict[str, Any]] = {}  # resolved annotations, by record class


def _hints(cls: type[WireRecord]) -> dict[str, Any]:
    hints = _HINTS.get(cls)
    if hints is None:
        hints = _HINTS[cls] = typing.get_type_hints(cls)
    return hints


def _parse(value: object, hint: Any, path: str) -> Any:
    """``value`` checked against the type ``hint`` (and made into it: enums, records)."""
    origin = typing.get_origin(hint)
    if origin is types.UnionType or origin is typing.Union:
        if value is None and type(None) in typing.get_args(hint):
            return None
        (inner,) = (a for a in typing.get_args(hint) if a is not type(None))
        return _parse(value, inner, path)
    if origin is tuple:
        if not isinstance(value, list):
            raise _mistyped(path, "a list", value)
        item = typing.get_args(hint)[0]
        return tuple(_parse(v, item, f"{path}[{i}]") for i, v in enumerate(value))
    if issubclass(hint, WireRecord):
        return hint.from_json(value, path)
    if issubclass(hint, StrEnum):
        if isinstance(value, str) and value in hint._value2member_map_:
            return hint(value)
        raise _mistyped(path, f"one of {[str(m) for m in hint]}", value)
    return _scalar(value, hint, path)


def _scalar(value: object, hint: type, path: str) -> Any:
    # bool is an int in Python, never on this wire; an int is a fine float (JSON has one
    # number type)
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if hint in (str, bool) and isinstance(value, hint):
        return value
    raise _mistyped(path, f"{'a number' if hint is float else hint.__name__}", value)


def _mistyped(path: str, expected: str, value: object) -> WireError:
    return WireError(f"{path}: expected {expected}, got {_json_kind(value)}", field=path)


def _json_kind(value: object) -> str:
    if value is None:
        return "null"
    text = repr(value)
    return f"{type(value).__name__} {text[:40]}"


def _dump(value: object) -> Any:
    if isinstance(value, WireRecord):
        return value.to_json()
    if isinstance(value, tuple):
        return [_dump(v) for v in value]
    if isinstance(value, StrEnum):
        return str(value)
    return value
