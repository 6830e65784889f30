"""The BitWrk daemon: trades for a buyer and a seller from one background thread.

``Daemon`` wires the runtime (thread + loop), the identity, the exchange client, the events
watcher, the journal, the chunk store and the two agents. Commands are frozen dataclasses
handed in with :meth:`Daemon.submit`; results come back as events from :meth:`Daemon.pump`.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from ..cas import ChunkStore
from ..client import ExchangeClient
from ..endpoints import check_endpoint_url
from ..identity import load_or_create_key
from ..keys import PrivateKey
from ..protocol import SellerTerms
from ..wire import JobState, UnitState
from . import paths
from .buyer import BuyerAgent, DirectorySink, JobRun, Mandate
from .commands import (
    BuyJob,
    CancelJob,
    Command,
    JoinLan,
    PauseSelling,
    StartLanHub,
    StartSelling,
)
from .endpoint import TradeEndpoint, endpoint_app
from .events import Event, JobDone
from .identity_lock import IdentityInUse, IdentityLock
from .journal import Journal
from .lan import LanHub, LanWorker, lan_app
from .relay import choose
from .runtime import Runtime
from .seller import Executor, Offer, SellerAgent
from .spotcheck import CheckResources
from .status import status_app
from .watch import EventWatcher

log = logging.getLogger("bitwrk.daemon")
SHUTDOWN_RETRY = 5.0  # seconds of exchange outage a stopping daemon still waits out


@dataclass(frozen=True)
class DaemonConfig:
    """Where the daemon trades and keeps its files, and how long it rides out outages."""

    exchange_url: str
    data_dir: Path = field(default_factory=paths.data_dir)
    cache_dir: Path = field(default_factory=paths.cache_dir)
    network: str = "testnet"  # for a new key; the address prefix is the same on all test nets
    store_cap: int = 8 * 1024**3
    # Trade with sellers whose endpoint is on loopback, a private or link-local network
    # (tests, demos, a LAN); off, such endpoints are refused (bitwrk/endpoints.py)
    allow_local_sellers: bool = False
    connect_for: float = 20.0  # seconds start() keeps trying an unreachable exchange
    retry_for: float = 180.0  # seconds any later exchange call rides out an outage


class Daemon:
    """One identity trading on one exchange from one background thread.

    Owns the runtime (loop thread), the identity key and its lock, the exchange client, the
    events watcher, the journal, the chunk store, the buyer agent (from the first connect)
    and the seller agent (from :class:`StartSelling`), plus the HTTP servers it started
    (the seller's endpoint, the LAN hub, the status page). Callers hand it
    :data:`~.commands.Command` values; the loop-side methods below are also what tests
    and scripts await through :meth:`call`."""

    def __init__(self, config: DaemonConfig) -> None:
        self.config = config
        self.key: PrivateKey = load_or_create_key(config.data_dir / "identity.wif",
                                                  config.network)
        self.runtime = Runtime(self._handle)
        self.client: ExchangeClient | None = None
        self.buyer: BuyerAgent | None = None
        self.seller: SellerAgent | None = None
        self.endpoint_url: str | None = None
        self._runners: list[web.AppRunner] = []
        self._checks: CheckResources | None = None
        self.lock = IdentityLock(config.data_dir)

    @property
    def address(self) -> str:
        return self.key.address

    # -- caller's thread ------------------------------------------------------------------

    def start(self, timeout: float | None = None) -> dict[str, Any]:
        """Take the identity's lock (:class:`IdentityInUse` when another process holds
        it: nothing starts), start the thread and connect (trying for ``connect_for``
        seconds); returns the exchange's info, or raises ExchangeUnreachable."""
        self.lock.acquire()
        self.runtime.start()
        wait = self.config.connect_for + 30.0 if timeout is None else timeout
        info: dict[str, Any] = self.runtime.call(self._connect(), wait)
        return info

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop the thread (bounded join). The identity's lock is released once the
        journal is closed: here when the thread ended in time, else by the thread."""
        self.hurry()
        stopped = self.runtime.stop(timeout)
        if stopped:
            self.lock.release()
        return stopped

    def hurry(self) -> None:
        """Shutting down: exchange calls from now on give up after a few seconds of outage
        (cancelling bids on the way out must not outlast the caller's timeout)."""
        if self.client is not None:
            self.client.retry_for = min(self.client.retry_for, SHUTDOWN_RETRY)

    def submit(self, command: Command) -> None:
        """Hand ``command`` to the loop; never blocks. Its results and errors come back
        as events (:meth:`pump`)."""
        self.runtime.submit(command)

    def pump(self, budget: float = 0.005) -> list[Event]:
        return self.runtime.pump(budget)

    def call(self, coro: Any, timeout: float | None = None) -> Any:
        """Run ``coro`` on the loop and wait for it: scripts, tests and background threads
        only, never Blender's UI thread."""
        return self.runtime.call(coro, timeout)

    # -- loop thread ----------------------------------------------------------------------

    async def _connect(self) -> dict[str, Any]:
        self.client = ExchangeClient(self.config.exchange_url, self.key,
                                     retry_for=self.config.connect_for)
        try:
            info = await self.client.info()
        except BaseException:
            await self.client.close()
            self.client = None
            raise
        self.client.retry_for = self.config.retry_for
        self.journal = Journal(self.config.data_dir / "journal.sqlite3")
        self.store = ChunkStore(self.config.cache_dir / "chunks", self.config.store_cap)
        self.watcher = EventWatcher(self.client)
        self.watcher.start()
        spool = self.config.data_dir / "spool"
        self.buyer = BuyerAgent(self.client, self.watcher, self.journal, self.store,
                                self.runtime.post, spool, int(info["fee_bps"]),
                                self.config.allow_local_sellers)
        self.runtime.on_shutdown(self._close)
        await self.buyer.settle_leftovers()
        await self.buyer.withdraw_orphans()
        for job_id in self.journal.jobs("active"):
            log.info("resuming job %s", job_id)
            self.runtime.spawn(self._resume(job_id), f"resume {job_id}")
        for job_id in self.journal.jobs(JobState.CANCELLED):
            # given up, but a seller may already work on some of its units: see those
            # trades to their end (paid for work done, no money left blocked); no new bids
            if self.journal.units(job_id, UnitState.TRADING):
                log.info("settling the trades of cancelled job %s", job_id)
                self.buyer.cancelled.add(job_id)
                self.runtime.spawn(self._resume(job_id), f"settle {job_id}")
        return info

    async def _close(self) -> None:
        if self.seller is not None:
            await self.seller.stop()
            if self.seller.reach.tunnel is not None:  # after the last unit was delivered
                await self.seller.reach.tunnel.close()
        for runner in self._runners:
            await runner.cleanup()
        await self.watcher.close()
        if self.client is not None:
            await self.client.close()
        if self._checks is not None:
            await self._checks.close()
        await asyncio.to_thread(self.store.close)
        self.journal.close()
        self.lock.release()

    async def _handle(self, command: Command) -> None:
        match command:
            case BuyJob():
                await self._buy(command)
            case CancelJob(job_id):
                assert self.buyer is not None
                await self.buyer.cancel_job(job_id)
            case StartSelling():
                await self.start_selling(command)
            case StartLanHub():
                await self.start_lan_hub(command)
            case JoinLan():
                await self.join_lan(command)
            case PauseSelling(paused) if self.seller is not None:
                await self.pause_selling(paused)
            case PauseSelling():
                log.info("pause ignored: not selling")
            case _:
                raise TypeError(f"unknown command {command!r}")

    async def _buy(self, job: BuyJob) -> None:
        m = job.mandate
        self.journal.add_job(job.job_id, job.article, m.max_price, m.budget, m.valid_until,
                             {"concurrency": job.concurrency, "out_dir": str(job.out_dir),
                              "suffix": job.suffix, "check_rate": m.check_rate,
                              "sellers": m.sellers.to_fields()},
                             [(uid, {"manifest": raw.decode()}) for uid, raw in job.units])
        await self._run(job.job_id)

    async def _resume(self, job_id: str) -> None:
        await self._run(job_id)

    async def _run(self, job_id: str) -> None:
        assert self.buyer is not None
        row = self.journal.job(job_id)
        assert row is not None
        spec = row["spec"]
        mandate = Mandate(row["max_price"], row["budget"], row["valid_until"],
                          float(spec.get("check_rate", Mandate.check_rate)),
                          SellerTerms.from_fields(spec.get("sellers", {})))
        sink = DirectorySink(Path(spec["out_dir"]), spec["suffix"])
        run = JobRun(job_id, row["article"], mandate, sink)
        run.avoid |= mandate.sellers.exclude  # the exchange passes them over; so do we
        if spec["suffix"] == ".exr":
            if self._checks is None:
                self._checks = CheckResources(self.config.data_dir, self.config.cache_dir)
            run.avoid |= self._checks.records.blocked()
            run.check = self._checks.checker(self.journal.units(job_id), self.store,
                                             mandate.check_rate)
        done, failed = await self.buyer.run_job(run, int(spec["concurrency"]))
        current = self.journal.job(job_id)
        if current is not None and current["state"] == "active":  # not cancelled meanwhile
            self.journal.set_job_state(job_id, "finished")
        self.runtime.post(JobDone(job_id, done, failed, run.spent))

    async def cancel_jobs(self) -> None:
        """Give up every active job (a buyer that gives up: no bid left open, no trade
        left establishing, so no funds stay blocked)."""
        assert self.buyer is not None
        for job_id in self.journal.jobs("active"):
            await self.buyer.cancel_job(job_id)

    async def start_lan_hub(self, command: StartLanHub) -> str:
        """Serve LAN workers; returns the hub's URL for them."""
        assert self.buyer is not None
        hub = LanHub(self.store, set(command.trusted))
        self.buyer.lan = hub
        runner = web.AppRunner(lan_app(hub), access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        await web.TCPSite(runner, command.host, command.port).start()
        self._runners.append(runner)
        return f"http://{command.host}:{runner.addresses[0][1]}"

    async def join_lan(self, command: JoinLan) -> None:
        assert self.client is not None
        worker = LanWorker(command.url, self.key, self.store, command.executor,
                           self.config.cache_dir / "work", lambda unit, ok: None)
        (self.config.cache_dir / "work").mkdir(parents=True, exist_ok=True)
        self.runtime.spawn(worker.run(self.client.session), f"LAN worker for {command.url}")

    async def pause_selling(self, paused: bool) -> None:
        assert self.seller is not None
        if paused:
            self.seller.selling.clear()
            await self.seller.cancel_open_bids()
        else:
            self.seller.selling.set()

    async def start_status_page(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve the seller's status page (after ``start_selling``); returns its URL."""
        assert self.seller is not None
        app = status_app(self.seller, self.pause_selling, self.config.exchange_url)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port).start()
        except OSError:
            await runner.cleanup()
            raise
        self._runners.append(runner)
        return f"http://{host}:{runner.addresses[0][1]}/"

    async def start_selling(self, command: StartSelling) -> str:
        assert self.client is not None
        if self.seller is not None:
            return self.endpoint_url or ""
        exchange_id = await self.client.exchange_id()
        self.seller = SellerAgent(self.client, self.watcher, self.journal, self.store,
                                  command.executor, command.offer, "", self.runtime.post,
                                  self.config.cache_dir / "work")
        (self.config.cache_dir / "work").mkdir(parents=True, exist_ok=True)
        endpoint = TradeEndpoint(self.seller, exchange_id)
        runner = web.AppRunner(endpoint_app(endpoint), access_log=None,
                                shutdown_timeout=1.0)
        await runner.setup()
        await web.TCPSite(runner, command.host, command.port).start()
        self._runners.append(runner)
        port = runner.addresses[0][1]
        base = command.public_url or f"http://{command.host}:{port}"
        direct = base.rstrip("/") + "/bitwrk/v1"
        check_endpoint_url(direct)  # what the exchange would refuse, refused now
        reach = await choose(self.client, command.reach, direct, endpoint.serve,
                             command.relay_url)
        self.seller.reach = reach
        self.endpoint_url = self.seller.endpoint_url = reach.url
        await self.seller.start()
        return self.endpoint_url


__all__ = ["BuyJob", "CancelJob", "Command", "Daemon", "DaemonConfig", "Executor",
           "IdentityInUse", "JoinLan", "Mandate", "Offer", "PauseSelling", "StartLanHub",
           "StartSelling"]
