"""The one place Blender's side talks to the daemon (no bpy in here).

The daemon thread owns all networking and never touches bpy; Blender's thread hands it
plain data and drains its events with :meth:`Bridge.pump` — from a ``bpy.app.timers``
callback in the GUI, or from a blocking loop headless (timers never fire in module mode
or ``blender -b``). Events of a render job go to that job's queue; everything else
updates :class:`Status`, which panels draw.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from ..bitwrk.daemon import CancelJob, Daemon, DaemonConfig
from ..bitwrk.daemon.events import Crashed, Event, JobDone, SellerUnit, UnitDone, UnitFailed
from .wallet import own_delta

log = logging.getLogger("bitwrk.extension")
STOP_TIMEOUT = 15.0  # bounded join on unregister / quit


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
    withdrawals: bool = False  # the exchange offers withdrawals
    progress: Progress = field(default_factory=Progress)
    selling: bool = False
    earned: int = 0
    estimate: tuple[int, int] | None = None  # (units, most satoshi)


class Bridge:
    def __init__(self) -> None:
        self.daemon: Daemon | None = None
        self.status = Status()
        self._jobs: dict[str, queue.SimpleQueue[Event]] = {}
        self._lock = threading.Lock()
        self.selling_pool: Any = None

    # -- lifecycle ------------------------------------------------------------------------

    def connect(self, exchange_url: str, timeout: float = 30.0) -> Daemon:
        """The running daemon for ``exchange_url``; started (and connected) on first use."""
        if self.daemon is not None and self.status.exchange_url == exchange_url:
            return self.daemon
        self.stop()
        daemon = Daemon(DaemonConfig(exchange_url))
        try:
            daemon.start(timeout)
        except Exception as exc:
            daemon.stop(STOP_TIMEOUT)
            self.status.connected, self.status.error = False, f"cannot connect: {exc}"
            raise
        self.daemon = daemon
        self.status = Status(exchange_url=exchange_url, connected=True,
                             address=daemon.address)
        return daemon

    def stop(self) -> bool:
        """Stop the daemon (bounded join); True when its thread ended in time."""
        daemon, self.daemon = self.daemon, None
        self.status.connected = False
        if daemon is None:
            return True
        if self.selling_pool is not None:
            try:
                if daemon.seller is not None:
                    daemon.call(daemon.seller.stop(grace=5.0), STOP_TIMEOUT)
                daemon.call(self.selling_pool.close(), STOP_TIMEOUT)
            except Exception:
                log.exception("stopping the seller")
            self.selling_pool = None
        return daemon.stop(STOP_TIMEOUT)

    # -- events ---------------------------------------------------------------------------

    def listen(self, job_id: str, total: int) -> queue.SimpleQueue[Event]:
        q: queue.SimpleQueue[Event] = queue.SimpleQueue()
        self._jobs[job_id] = q
        self.status.progress = Progress(job_id=job_id, total=total)
        return q

    def forget(self, job_id: str) -> None:
        self._jobs.pop(job_id, None)

    def pump(self, budget: float = 0.005) -> int:
        """Drain daemon events within ``budget`` seconds; route and count them."""
        daemon = self.daemon
        if daemon is None:
            return 0
        with self._lock:
            events = daemon.pump(budget)
            for event in events:
                self._route(event)
        return len(events)

    def _route(self, event: Event) -> None:
        job_id = getattr(event, "job_id", None)
        if job_id is not None and job_id in self._jobs:
            self._jobs[job_id].put(event)
        p = self.status.progress
        if job_id is not None and job_id == p.job_id:
            if isinstance(event, UnitDone):
                p.done += 1
                p.spent += event.price + event.fee
            elif isinstance(event, UnitFailed) and event.final:
                p.failed += 1
            elif isinstance(event, JobDone):
                p.finished, p.spent = True, event.spent
            p.in_flight = max(0, p.total - p.done - p.failed) if not p.finished else 0
        if isinstance(event, SellerUnit) and event.stage == "paid":
            self.status.earned += event.price
        if isinstance(event, Crashed):
            self.status.error = f"{event.where}: {event.error}"

    def wait(self, q: queue.SimpleQueue[Event], timeout: float) -> Event | None:
        """Next event of one job, pumping meanwhile (for a blocking render loop)."""
        deadline = time.monotonic() + timeout
        while True:
            self.pump(0.01)
            try:
                return q.get(timeout=0.02)
            except queue.Empty:
                if time.monotonic() >= deadline:
                    return None

    def cancel(self, job_id: str) -> None:
        if self.daemon is not None:
            self.daemon.submit(CancelJob(job_id))

    # -- wallet ---------------------------------------------------------------------------

    def refresh_wallet(self, timeout: float = 10.0) -> None:
        """Account, balances, ledger and deposit address (whatever the exchange offers)."""
        daemon = self.daemon
        if daemon is None or daemon.client is None:
            return
        client = daemon.client
        try:
            account = daemon.call(client.account(), timeout)
            self.status.available = int(account.get("available", 0))
            self.status.blocked = int(account.get("blocked", 0))
            page = daemon.call(client.ledger(limit=8), timeout)
            self.status.ledger = [{"kind": m["kind"], "amount": own_delta(m, daemon.address)}
                                  for m in page["movements"]]
        except Exception as exc:
            self.status.error = f"wallet: {exc}"
        self.status.deposit_address = self._deposit_address(daemon, timeout)

    def _deposit_address(self, daemon: Daemon, timeout: float) -> str | None:
        """The account's deposit address, or None where the exchange has none for it (an
        exchange without payments, or none requested yet)."""
        client = daemon.client
        assert client is not None
        try:
            found = daemon.call(client.account(), timeout)
        except Exception:
            return None
        value = found.get("deposit_address") if isinstance(found, dict) else None
        return str(value) if value else None

    def request_deposit_address(self, timeout: float = 10.0) -> str | None:
        daemon = self.daemon
        if daemon is None or daemon.client is None:
            return None
        try:
            found = daemon.call(daemon.client.request_deposit_address(), timeout)
            if isinstance(found, dict) and found.get("address"):
                self.status.deposit_address = str(found["address"])
        except Exception as exc:
            self.status.error = f"no deposit address: {exc}"
        return self.status.deposit_address

    # -- selling --------------------------------------------------------------------------

    def start_selling(self, cores: int, min_price: int, classes: tuple[str, ...],
                      blender: str, python: str | None = None) -> str:
        """Sell this computer's CPU cores; returns the worker endpoint URL."""
        from ..bitwrk.daemon import Offer, StartSelling
        from ..bitwrk.seller.executor import RenderExecutor
        from ..bitwrk.seller.pool import WorkerPool, allowed_cpus, blender_binary

        daemon = self.daemon
        if daemon is None:
            raise RuntimeError("connect to an exchange first")
        cpus = set(sorted(allowed_cpus())[:max(1, cores)])
        largest = classes[-1]
        kwargs = {"python": python} if python else {}
        # Inside a Blender binary sys.executable is Blender's bundled Python, which has no
        # bpy: workers then run as `blender -b` (bpy module mode: sys.executable as before).
        pool = WorkerPool(cpus, 1, cost_class=largest, blender=blender_binary(), **kwargs)
        self.selling_pool = pool
        articles = tuple(f"net.bitwrk/blender/{blender}/{c}" for c in classes)
        url: str = daemon.call(daemon.start_selling(
            StartSelling(Offer(articles, min_price, 1), RenderExecutor(pool))), 60)
        self.status.selling = True
        return url


_BRIDGE: Bridge | None = None


def get() -> Bridge:
    """The extension's bridge (one per Blender session)."""
    global _BRIDGE
    if _BRIDGE is None:
        _BRIDGE = Bridge()
    return _BRIDGE


def shutdown() -> bool:
    """Stop the daemon if one runs; the bridge is forgotten (register starts afresh)."""
    global _BRIDGE
    bridge, _BRIDGE = _BRIDGE, None
    return bridge.stop() if bridge is not None else True


__all__ = ["Bridge", "Progress", "Status", "get", "shutdown"]
