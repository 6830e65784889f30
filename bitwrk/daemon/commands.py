"""What a caller's thread can ask the daemon to do: one frozen dataclass per command.

A command is plain data, built on the caller's thread (Blender's, or a script's) and handed
to :meth:`bitwrk.daemon.Daemon.submit`, which never blocks; the daemon acts on it inside its
loop and answers with events (:mod:`.events`). :data:`Command` is the union the daemon
dispatches on — a new command is a dataclass here, a member of the union and one ``case``
in ``Daemon._handle``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path

from .buyer import Mandate
from .seller import Executor, Offer


@dataclass(frozen=True)
class BuyJob:
    """Buy these units (canonical manifests) under one mandate; results land in ``out_dir``."""

    article: str
    mandate: Mandate
    units: tuple[tuple[str, bytes], ...]  # (unit id, canonical manifest)
    out_dir: Path  # results land here as <unit id>.<suffix>
    suffix: str = ".exr"
    concurrency: int = 4
    job_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])


@dataclass(frozen=True)
class CancelJob:
    """No new bids for this job; trades in flight finish or are refunded."""

    job_id: str


@dataclass(frozen=True)
class StartSelling:
    """Serve the seller's endpoint and place asks for ``offer``, rendered by ``executor``."""

    offer: Offer
    executor: Executor
    host: str = "127.0.0.1"
    port: int = 0
    public_url: str | None = None  # what buyers connect to; default http://host:port


@dataclass(frozen=True)
class StartLanHub:
    """Serve units to these trusted worker addresses (the buyer's side of LAN mode)."""

    trusted: tuple[str, ...]
    host: str = "127.0.0.1"
    port: int = 0


@dataclass(frozen=True)
class JoinLan:
    """Work for a buyer's LAN hub at ``url`` (the worker's side of LAN mode)."""

    url: str
    executor: Executor


@dataclass(frozen=True)
class PauseSelling:
    """Stop placing asks and cancel the open ones (``paused``), or sell again."""

    paused: bool


Command = BuyJob | CancelJob | StartSelling | StartLanHub | JoinLan | PauseSelling

__all__ = ["BuyJob", "CancelJob", "Command", "JoinLan", "PauseSelling", "StartLanHub",
           "StartSelling"]
