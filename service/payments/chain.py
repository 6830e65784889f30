"""What the watcher needs from a chain backend, independent of which one."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Protocol

from .errors import BackendProtocolError

SATOSHI_PER_BTC = 100_000_000


@dataclass(frozen=True)
class SeenOutput:
    """One output paying a watched address, as a backend reports it. ``confirmations`` is
    0 in the mempool and negative for a transaction that conflicts with the best chain."""

    txid: str
    vout: int
    address: str
    amount: int
    confirmations: int
    block_hash: str | None = None


@dataclass(frozen=True)
class WatchSet:
    addresses: tuple[str, ...]
    max_index: int  # highest issued receive index, -1 when none
    since: float | None  # creation time of the oldest address (rescan start)


class ChainBackend(Protocol):
    name: str

    async def scan(self, watch: WatchSet) -> list[SeenOutput]:
        """Every output paying a watched address (mempool included); complete or raising."""

    async def confirmations(self, txid: str) -> int | None:
        """Confirmations of a transaction, or None while the backend has not seen it."""

    async def close(self) -> None: ...


def btc_to_sat(value: object, backend: str) -> int:
    """Exact satoshi from a JSON BTC amount (parsed as Decimal, never float)."""
    try:
        sat = Decimal(str(value)) * SATOSHI_PER_BTC
    except (InvalidOperation, ValueError) as exc:
        raise BackendProtocolError(f"{backend}: amount {value!r} is no number",
                                   backend=backend) from exc
    if isinstance(value, bool) or sat != sat.to_integral_value():
        raise BackendProtocolError(f"{backend}: amount {value!r} is not whole satoshi",
                                   backend=backend)
    return int(sat)


def txid_of(value: object, backend: str) -> str:
    if not isinstance(value, str) or len(value) != 64 or value.strip("0123456789abcdef"):
        raise BackendProtocolError(f"{backend}: {str(value)[:80]!r} is no txid", backend=backend)
    return value
