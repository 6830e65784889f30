"""The one place Blender's side talks to the daemon (no bpy in here).

The daemon thread owns all networking and never touches bpy; Blender's thread hands it
plain data and drains its events with :meth:`Bridge.pump` — from a ``bpy.app.timers``
callback in the GUI, or from a blocking loop headless (timers never fire in module mode
or ``blender -b``). Events of a render job go to that job's queue; everything else
updates :class:`Status`, which panels draw.

The bridge is split by concern: its lifecycle and the event pump here, event routing in
:mod:`.routing`, the wallet in :mod:`.account`, the LAN hub in :mod:`.lan_hub`, selling in
:mod:`.selling`; what panels draw in :mod:`.status`.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any

from ..bitwrk.daemon import CancelJob, Daemon, DaemonConfig
from ..bitwrk.daemon.events import Event
from .account import Account, payments_offered
from .addresses import lan_ip, reachable, shown_url
from .lan_hub import LanHubControl
from .routing import JobRouter
from .selling import Selling
from .status import NO_PAYMENTS, NOT_CONNECTED, Progress, Status
from .tasks import Outcome, Tasks

log = logging.getLogger("bitwrk.extension")
STOP_TIMEOUT = 15.0  # bounded join of the daemon's own stop
QUIT_WAIT = 1.5  # unregister / quit returns within 2 s; the daemon's stop goes on behind


class Bridge:
    """Owns the daemon of this Blender session (one at a time, for one exchange), the
    :class:`Status` panels draw, the background tasks of GUI operators and the parts by
    concern: ``account`` (wallet), ``lan`` (the LAN hub), ``selling``."""

    def __init__(self) -> None:
        self.daemon: Daemon | None = None
        self.status = Status()
        self.router = JobRouter()
        self._lock = threading.Lock()
        self.tasks = Tasks()
        self.account = Account(self)
        self.lan = LanHubControl(self)
        self.selling = Selling(self)

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
            info = daemon.start(timeout)
        except Exception as exc:
            daemon.stop(STOP_TIMEOUT)
            self.status.connected, self.status.error = False, f"cannot connect: {exc}"
            raise
        self.daemon = daemon
        self.status = Status(exchange_url=exchange_url, connected=True,
                             address=daemon.address)
        self.account.set_payments(payments_offered(info))
        return daemon

    def stop(self) -> bool:
        """Stop the daemon (bounded join); True when its thread ended in time."""
        daemon, self.daemon = self.daemon, None
        self.status.connected = False
        self.lan.forget()
        if daemon is None:
            return True
        self.selling.stop(daemon, STOP_TIMEOUT)
        return daemon.stop(STOP_TIMEOUT)

    # -- events ---------------------------------------------------------------------------

    def listen(self, job_id: str, total: int) -> queue.SimpleQueue[Event]:
        """A queue of ``job_id``'s events; the render panel follows this job from now on."""
        self.status.progress = Progress(job_id=job_id, total=total)
        return self.router.listen(job_id)

    def forget(self, job_id: str) -> None:
        self.router.forget(job_id)

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
                self.router.route(event, self.status)
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


__all__ = ["NOT_CONNECTED", "NO_PAYMENTS", "Bridge", "Outcome", "Progress", "Status", "get",
           "lan_ip", "reachable", "shown_url", "shutdown"]
