"""What the panels draw: the bridge's :class:`Status` and one job's :class:`Progress`.

Both are written on Blender's thread only (the event pump and operators' ``execute()``);
panels read them and never do I/O. No bpy in here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

NO_PAYMENTS = "this exchange takes no Bitcoin payments"
NOT_CONNECTED = "not connected to an exchange"


@dataclass
class Progress:
    """One job's live counts, for the render panel."""

    job_id: str = ""
    total: int = 0
    done: int = 0
    in_flight: int = 0
    failed: int = 0
    spent: int = 0
    finished: bool = False
    stage: str = ""  # what the job does now, in words (animation: packing/buying/writing)
    frames: int = 0  # animation: frames in the range
    frames_written: int = 0  # animation: frames written to the output path


@dataclass
class Status:
    """What the panels draw; written on Blender's thread only."""

    exchange_url: str = ""
    connected: bool = False
    error: str = ""
    address: str = ""
    available: int | None = None
    blocked: int | None = None
    deposit_address: str | None = None
    ledger: list[dict[str, Any]] = field(default_factory=list)
    payments: bool | None = None  # the exchange takes Bitcoin payments (None: not known yet)
    payments_reason: str = ""  # why the withdrawal form is off, in words
    withdrawals: list[dict[str, Any]] = field(default_factory=list)  # open ones, newest first
    pending_withdrawals: int = 0  # satoshi on their way out
    lan_url: str = ""  # the LAN hub's URL for workers (JoinLan); "" when none runs
    lan_workers: tuple[str, ...] = ()  # addresses the hub serves
    progress: Progress = field(default_factory=Progress)
    selling: bool = False
    earned: int = 0
    estimate: tuple[int, int] | None = None  # (units, most satoshi)
    outage: str = ""  # "exchange unreachable since …, retrying (…)" while the daemon retries
    busy: tuple[str, ...] = ()  # background requests still running ("connect", ...)
    notice: str = ""  # the last background request's outcome, in words
