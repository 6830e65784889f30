"""One frame bought through the daemon: pack, plan tiles, buy, hand tiles back (no bpy).

:class:`RenderRequest` is what the main thread snapshots from the scene; :class:`RenderJob`
runs the farm-ready check (packing), plans the tiles (docs/architecture.md), submits one ``BuyJob``
and yields each tile as it lands, so the render engine can write it into the result.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..bitwrk.articles import Article, parse_article
from ..bitwrk.buy import Plan, check_scripts, manifests, pack_files, plan
from ..bitwrk.daemon import BuyJob, Mandate
from ..bitwrk.daemon.events import Crashed, JobDone, UnitDone, UnitFailed, UnitProgress
from ..bitwrk.errors import BitwrkError
from ..bitwrk.protocol import SellerTerms
from ..bitwrk.render.jobspec import JobSpec
from .bridge import Bridge

FEE_ROOM = 1.1  # fees are a few percent; the budget covers price + fee


@dataclass(frozen=True)
class RenderRequest:
    """Plain data snapshotted from the scene on Blender's thread."""

    blend: Path  # a saved .blend that holds the scene as it is now
    info: dict[str, Any]  # bitwrk.render.scene.describe() + "blender"
    frame: int
    exchange_url: str
    max_price: int  # satoshi per unit
    budget: int  # satoshi for the job; 0: units x max price + fee room
    tiles: int  # per frame; 0: by the cost class
    cost_class: str = "512M"
    concurrency: int = 4
    allow_missing: bool = False
    timeout: float = 3600.0
    trusted_only: bool = False  # buy the ``~trusted`` article: operator-trusted sellers only
    allow_local_sellers: bool = False  # loopback/private seller endpoints (tests, a LAN)
    lan_workers: tuple[str, ...] = ()  # trusted LAN worker addresses, served first
    lan_host: str = ""  # the interface the LAN hub listens on ("": the LAN address)
    min_seller_finished: int = 0  # sellers with fewer finished trades are never matched
    exclude_sellers: tuple[str, ...] = ()  # addresses never matched with this job's bids
    gpu: bool = False  # GPU results acceptable: buy the ``~gpu`` article


def seller_terms(request: Any) -> SellerTerms:
    """The mandate's seller terms from a still or animation request (AddressError for an
    excluded seller that is not an address: the job is refused before buying)."""
    return SellerTerms(int(getattr(request, "min_seller_finished", 0)),
                       exclude=frozenset(getattr(request, "exclude_sellers", ())))


def job_article(article: str, trusted_only: bool) -> str:
    """The article to buy: its ``~trusted`` variant when only trusted sellers may render
    (the exchange lets a seller bid there only if its operator trusts that seller)."""
    a = parse_article(article)
    return Article(a.blender, a.cost_class, a.trusted or trusted_only, a.gpu).id


def parse_workers(text: str) -> tuple[str, ...]:
    """LAN worker addresses from the settings field (commas, spaces or newlines between)."""
    return tuple(dict.fromkeys(w for w in text.replace(",", " ").split() if w))


def start_job(bridge: Bridge, request: Any, job_plan: Plan, units: list[tuple[str, bytes]],
              workdir: Path) -> BuyJob:
    """The ``BuyJob`` for a request's plan (trusted article, budget); the LAN hub started
    first when the request lists LAN workers, so they get units before the exchange does."""
    if request.lan_workers:
        from .addresses import reachable

        bridge.lan.start(tuple(request.lan_workers),
                         host=reachable(getattr(request, "lan_host", "")))
    budget = request.budget or int(len(units) * request.max_price * FEE_ROOM) + 100
    return BuyJob(job_article(job_plan.article, request.trusted_only),
                  Mandate(request.max_price, budget, time.time() + request.timeout,
                          sellers=seller_terms(request)),
                  tuple(units), workdir / "results", concurrency=request.concurrency)


@dataclass(frozen=True)
class Tile:
    """One unit of a frame: its rectangle's spec and, once bought, the EXR it landed in."""

    unit_id: str
    spec: JobSpec
    path: Path | None  # None: still in flight (a placeholder may be drawn)


class RenderJob:
    """One frame bought on BitWrk for the render engine: owns the frame's plan (units),
    its job id at the daemon and the counts the engine reports (failed units, spent)."""

    def __init__(self, bridge: Bridge, request: RenderRequest, workdir: Path) -> None:
        self.bridge = bridge
        self.request = request
        self.workdir = workdir
        self.plan: Plan | None = None
        self.job_id = ""
        self.failed: list[str] = []
        self.spent = 0
        self.cancelled = False

    @property
    def total(self) -> int:
        return len(self.plan.units) if self.plan else 0

    def start(self) -> None:
        """Farm-ready check, plan and submit; raises :class:`BitwrkError` before buying."""
        r = self.request
        check_scripts(r.info, r.allow_missing)
        name, files = pack_files(r.blend, self.workdir, r.allow_missing)
        self.plan = plan(r.info, name, [r.frame], str(r.tiles) if r.tiles else "auto",
                         r.cost_class, r.gpu)
        daemon = self.bridge.connect(r.exchange_url, allow_local_sellers=r.allow_local_sellers)
        units = manifests(self.plan, files, daemon.store)
        job = start_job(self.bridge, r, self.plan, units, self.workdir)
        self.job_id = job.job_id
        self._events = self.bridge.listen(job.job_id, len(units))
        daemon.submit(job)

    def tiles(self, cancelled: Callable[[], bool]) -> Iterator[Tile]:
        """Tiles as they land (and as they start, with ``path`` None), until the job ends."""
        assert self.plan is not None
        specs = dict(self.plan.units)
        deadline = time.monotonic() + self.request.timeout
        ended = False
        try:
            while time.monotonic() < deadline:
                if cancelled() and not self.cancelled:
                    self.cancelled = True
                    self.bridge.cancel(self.job_id)  # no new bids; unfinished trades refunded
                event = self.bridge.wait(self._events, 0.1)
                if isinstance(event, UnitDone):
                    yield Tile(event.unit_id, specs[event.unit_id], Path(event.result))
                elif isinstance(event, UnitProgress) and event.stage != "bidding":
                    yield Tile(event.unit_id, specs[event.unit_id], None)
                elif isinstance(event, UnitFailed) and event.final:
                    self.failed.append(f"{event.unit_id}: {event.reason}")
                elif isinstance(event, Crashed):
                    raise BitwrkError(f"daemon error in {event.where}: {event.error}")
                elif isinstance(event, JobDone):
                    self.spent, ended = event.spent, True
                    return
            raise BitwrkError(f"the job did not finish in {self.request.timeout:.0f} s")
        finally:
            if not ended and not self.cancelled:  # timeout, crash, any error: stop buying
                self.cancelled = True
                with contextlib.suppress(Exception):  # a dead daemon cannot be told
                    self.bridge.cancel(self.job_id)
            self.bridge.forget(self.job_id)
