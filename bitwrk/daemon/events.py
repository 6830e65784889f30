"""Typed events the daemon posts to the caller's thread (frozen dataclasses)."""

from __future__ import annotations

from dataclasses import dataclass

from .runtime import Crashed, Event, Started, Stopped

__all__ = ["Crashed", "Event", "JobDone", "SellerUnit", "Started", "Stopped", "UnitDone",
           "UnitFailed", "UnitProgress"]


@dataclass(frozen=True)
class UnitProgress(Event):
    job_id: str
    unit_id: str
    stage: str  # bidding | matched | transmitting | working | verifying
    txid: int | None = None
    seller: str | None = None


@dataclass(frozen=True)
class UnitDone(Event):
    job_id: str
    unit_id: str
    result: str  # path of the decrypted result
    price: int
    fee: int
    seller: str  # address, or "lan:<address>"
    txid: int | None
    bytes_sent: int


@dataclass(frozen=True)
class UnitFailed(Event):
    """One attempt failed; ``final`` when the unit gives up (attempts or budget used up)."""

    job_id: str
    unit_id: str
    reason: str
    final: bool


@dataclass(frozen=True)
class JobDone(Event):
    job_id: str
    done: int
    failed: int
    spent: int  # price + fee paid, satoshi


@dataclass(frozen=True)
class SellerUnit(Event):
    """The seller's side of one trade: started, done (earned) or failed."""

    txid: int
    buyer: str
    stage: str  # started | rendered | paid | failed
    price: int
    detail: str = ""
    seconds: float = 0.0
