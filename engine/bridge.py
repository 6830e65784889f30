"""The one place Blender's side talks to the daemon (no bpy in here).

The daemon thread owns all networking and never touches bpy; Blender's thread hands it
plain data and drains its events with :meth:`Bridge.pump` — from a ``bpy.app.timers``
callback in the GUI, or from a blocking loop headless (timers never fire in module mode
or ``blender -b``). Events of a render job go to that job's queue; everything else
updates :class:`Status`, which panels draw.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from ..bitwrk.daemon import CancelJob, Daemon, DaemonConfig, StartLanHub
from ..bitwrk.daemon.events import Crashed, Event, JobDone, SellerUnit, UnitDone, UnitFailed
from ..bitwrk.errors import BitwrkError
from ..bitwrk.wire import Account, Ledger
from .addresses import lan_ip, reachable, shown_url
from .tasks import Outcome, Tasks

log = logging.getLogger("bitwrk.extension")
STOP_TIMEOUT = 15.0  # bounded join of the daemon's own stop
QUIT_WAIT = 1.5  # unregister / quit returns within 2 s; the daemon's stop goes on behind
NO_PAYMENTS = "this exchange takes no Bitcoin payments"
NOT_CONNECTED = "not connected to an exchange"
OPEN_WITHDRAWAL = ("pending", "exported")  # states of a withdrawal not yet paid out
PROBE_ID = 2**53 - 1  # a withdrawal id no exchange has: cancelling it only tells what's on


def payments_disabled(exc: BaseException) -> bool:
    """Is ``exc`` the exchange's ``payments_disabled`` answer? The client maps codes it does
    not know (this one lives in the service) to a plain 404 ``ApiError``; its message says."""
    if not isinstance(exc, BitwrkError):
        return False
    if exc.code == "payments_disabled" or exc.data.get("error") == "payments_disabled":
        return True
    return (exc.code == "api_error" and exc.data.get("status") == 404
            and "payments" in exc.message.lower())


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


class Bridge:
    def __init__(self) -> None:
        self.daemon: Daemon | None = None
        self.status = Status()
        self._jobs: dict[str, queue.SimpleQueue[Event]] = {}
        self._lock = threading.Lock()
        self.selling_pool: Any = None
        self._lan_hub_url = ""
        self.tasks = Tasks()

    # -- lifecycle ------------------------------------------------------------------------

    def connect(self, exchange_url: str, timeout: float = 30.0,
                allow_local_sellers: bool | None = None) -> Daemon:
        """The running daemon for ``exchange_url``; started (and connected) on first use.
        ``allow_local_sellers`` (None: as it was) applies to the purchases that follow."""
        if self.daemon is not None and self.status.exchange_url == exchange_url:
            if allow_local_sellers is not None and self.daemon.buyer is not None:
                self.daemon.buyer.allow_local_sellers = allow_local_sellers
            return self.daemon
        self.stop()
        daemon = Daemon(DaemonConfig(exchange_url,
                                     allow_local_sellers=bool(allow_local_sellers)))
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
        self._lan_hub_url = ""
        self.status.lan_url, self.status.lan_workers = "", ()
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
        """Drain daemon events within ``budget`` seconds; route and count them. Outcomes of
        background requests are applied here too (Blender's thread)."""
        self._drain_tasks()
        daemon = self.daemon
        if daemon is None:
            return 0
        with self._lock:
            events = daemon.pump(budget)
            for event in events:
                self._route(event)
        self.status.outage = (daemon.client.outage() if daemon.client is not None else None) or ""
        return len(events)

    def _drain_tasks(self) -> None:
        for outcome in self.tasks.drain():
            self.status.notice = outcome.message
            if not outcome.ok:
                self.status.error = outcome.message
            if outcome.then is not None:
                try:
                    outcome.then(outcome)
                except Exception as exc:
                    log.exception("after %s", outcome.name)
                    self.status.error = f"{outcome.name}: {exc}"
        self.status.busy = self.tasks.busy()

    def background(self, name: str, work: Any, then: Any = None) -> bool:
        """Run ``work`` off Blender's thread (see :mod:`.tasks`); False if still busy."""
        started = self.tasks.start(name, work, then)
        self.status.busy = self.tasks.busy()
        return started

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

    def cancel(self, job_id: str, wait: float = 0.0) -> None:
        """No new bids for ``job_id``. ``wait`` > 0 (quit): wait that long for the daemon
        to take it, so the journal says "cancelled" before the process ends (marking the
        job comes first; cancelling its bids on the exchange may still be under way)."""
        daemon = self.daemon
        if daemon is None:
            return
        if wait <= 0 or daemon.buyer is None:
            daemon.submit(CancelJob(job_id))
            return
        try:
            daemon.call(daemon.buyer.cancel_job(job_id), wait)
        except Exception as exc:  # the bids' cancel may outlast the wait: that is fine
            log.info("cancel %s at quit: %s", job_id, exc or type(exc).__name__)

    # -- wallet ---------------------------------------------------------------------------

    def refresh_wallet(self, timeout: float = 10.0) -> None:
        """Account, balances, ledger and deposit address (whatever the exchange offers)."""
        daemon = self.daemon
        if daemon is None or daemon.client is None:
            return
        client = daemon.client
        if client.outage():  # the daemon is retrying: don't block Blender behind it
            self.status.outage = client.outage() or ""
            return
        try:
            account: Account = daemon.call(client.account(), timeout)
            self.status.available = account.available
            self.status.blocked = account.blocked
            page: Ledger = daemon.call(client.ledger(limit=8), timeout)
            self.status.ledger = [{"kind": m.kind, "amount": m.delta_for(daemon.address)}
                                  for m in page.movements]
            self.status.pending_withdrawals = account.pending_withdrawals
            self.status.deposit_address = account.deposit_address or None
        except Exception as exc:
            self.status.error = f"wallet: {exc}"
        if self.status.payments is None:
            self._set_payments(self._payments_offered(daemon, timeout))
        if self.status.payments:
            try:
                found = daemon.call(client.withdrawals(limit=20), timeout)
                self.status.withdrawals = [w for w in found if w.get("state") in OPEN_WITHDRAWAL]
            except Exception as exc:
                self.status.error = f"withdrawals: {exc}"
        else:
            self.status.withdrawals = []

    def _set_payments(self, offered: bool | None) -> None:
        self.status.payments = offered
        self.status.payments_reason = "" if offered or offered is None else NO_PAYMENTS

    def _payments_offered(self, daemon: Daemon, timeout: float) -> bool | None:
        """Whether the exchange takes Bitcoin payments. ``/api/v1/info`` says so where it
        has a ``payments`` field; otherwise cancelling a withdrawal id no exchange has asks
        without changing anything: "not found" when payments are on, ``payments_disabled``
        when off (the exchange checks that first and rolls the request back). None: unknown."""
        client = daemon.client
        assert client is not None
        try:
            info = daemon.call(client.info(), timeout)
            if isinstance(info, dict) and isinstance(info.get("payments"), bool):
                return bool(info["payments"])
            if isinstance(info, dict) and isinstance(info.get("payments"), dict):
                return bool(info["payments"].get("enabled", True))
            daemon.call(client.cancel_withdrawal(PROBE_ID), timeout)
        except Exception as exc:
            if payments_disabled(exc):
                return False
            if isinstance(exc, BitwrkError) and exc.code == "not_found":
                return True
            log.warning("cannot tell whether the exchange takes payments: %s", exc)
            return None
        return True

    def request_deposit_address(self, timeout: float = 10.0) -> str | None:
        daemon = self.daemon
        if daemon is None or daemon.client is None:
            return None
        try:
            found = daemon.call(daemon.client.request_deposit_address(), timeout)
            if isinstance(found, dict) and found.get("address"):
                self.status.deposit_address = str(found["address"])
                self._set_payments(True)
        except Exception as exc:
            if payments_disabled(exc):
                self._set_payments(False)
            else:
                self.status.error = f"no deposit address: {exc}"
        return self.status.deposit_address

    def withdraw(self, to: str, amount: int, timeout: float = 10.0) -> dict[str, Any]:
        """Ask for ``amount`` satoshi to ``to``; the wallet is refreshed. Raises
        :class:`BitwrkError` with the exchange's reason (minimum, balance, address...)."""
        daemon = self.daemon
        if daemon is None or daemon.client is None:
            raise BitwrkError(NOT_CONNECTED)
        to = to.strip()
        if not to:
            raise BitwrkError("enter the bitcoin address to pay out to")
        if amount <= 0:
            raise BitwrkError("enter an amount above zero")
        try:
            found: dict[str, Any] = daemon.call(daemon.client.withdraw(to, amount), timeout)
        except Exception as exc:
            if payments_disabled(exc):
                self._set_payments(False)
            raise
        self._set_payments(True)
        self.refresh_wallet(timeout)
        return found

    def cancel_withdrawal(self, withdrawal_id: int, timeout: float = 10.0) -> dict[str, Any]:
        """Cancel a pending withdrawal (the amount returns to the available balance)."""
        daemon = self.daemon
        if daemon is None or daemon.client is None:
            raise BitwrkError(NOT_CONNECTED)
        found: dict[str, Any] = daemon.call(daemon.client.cancel_withdrawal(withdrawal_id),
                                            timeout)
        self.refresh_wallet(timeout)
        return found

    # -- LAN workers ----------------------------------------------------------------------

    def start_lan_hub(self, workers: tuple[str, ...], host: str = "127.0.0.1",
                      port: int = 0, timeout: float = 30.0) -> str:
        """Serve units to these trusted worker addresses first (the daemon's LAN hub); the
        URL workers join with. Started once per daemon; later calls replace the list."""
        daemon = self.daemon
        if daemon is None:
            raise BitwrkError(NOT_CONNECTED)
        workers = tuple(dict.fromkeys(workers))
        if self._lan_hub_url:
            hub = daemon.buyer.lan if daemon.buyer is not None else None
            if hub is not None:
                async def retrust() -> None:  # on the daemon's loop, which reads it
                    hub.trusted = set(workers)

                daemon.call(retrust(), timeout)
        else:
            url: str = daemon.call(daemon.start_lan_hub(StartLanHub(workers, host, port)),
                                   timeout)
            self._lan_hub_url = url
        self.status.lan_workers = workers
        self.status.lan_url = shown_url(self._lan_hub_url)
        return self.status.lan_url

    # -- selling --------------------------------------------------------------------------

    def start_selling(self, cores: int, min_price: int, classes: tuple[str, ...],
                      blender: str, python: str | None = None, host: str | None = None,
                      port: int = 0, public_url: str | None = None,
                      unsandboxed: bool = False) -> str:
        """Sell this computer's CPU cores; returns the worker endpoint URL buyers are told
        (``public_url``, else ``http://host:port``). ``host`` None: ``$BITWRK_SELL_HOST``
        (tests and the demo set 127.0.0.1), else this computer's LAN address.

        Workers run in the OS sandbox; where there is none this raises
        ``SandboxUnavailable`` unless the user opted out (``unsandboxed``)."""
        if host is None:
            host = reachable(os.environ.get("BITWRK_SELL_HOST", ""))
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
        pool = WorkerPool(cpus, 1, cost_class=largest, blender=blender_binary(),
                          unsandboxed=unsandboxed, **kwargs)
        self.selling_pool = pool
        articles = tuple(f"net.bitwrk/blender/{blender}/{c}" for c in classes)
        url: str = daemon.call(daemon.start_selling(
            StartSelling(Offer(articles, min_price, 1), RenderExecutor(pool), host, port,
                         public_url)), 60)
        self.status.selling = True
        return url


_BRIDGE: Bridge | None = None


def get() -> Bridge:
    """The extension's bridge (one per Blender session)."""
    global _BRIDGE
    if _BRIDGE is None:
        _BRIDGE = Bridge()
    return _BRIDGE


def shutdown(wait: float | None = None) -> bool:
    """Stop the daemon if one runs; the bridge is forgotten (register starts afresh).

    ``wait``: return after this many seconds even if the daemon still stops (unregister
    and quit must not freeze Blender); its stop goes on in a daemon thread — no new bids,
    trades in flight refunded or finished by the exchange's rules, the journal closed by
    the daemon's own shutdown. True when everything ended in time.
    """
    global _BRIDGE
    bridge, _BRIDGE = _BRIDGE, None
    if bridge is None:
        return True
    if wait is None:
        return bridge.stop()
    done: list[bool] = []
    stopper = threading.Thread(target=lambda: done.append(bridge.stop()),
                               name="bitwrk-stop", daemon=True)
    stopper.start()
    stopper.join(wait)
    return bool(done and done[0])


__all__ = ["Bridge", "Outcome", "Progress", "Status", "get", "lan_ip", "payments_disabled",
           "reachable", "shutdown"]
