"""The buyer's check of a render result between decrypting it and sending ``accept``.

Every result is decoded under hard caps (the unit's exact size, an honest render's
passes; :mod:`bitwrk.render.exrheader` refuses bombs before anything is allocated). Then,
for every unit of a seller this buyer has not yet checked successfully, and for later
units at the mandate's ``check_rate``, the buyer renders a few secret patches itself in
a sandboxed worker (the seller's own :class:`WorkerPool`, on this machine's CPUs) and
compares them with the seller's pixels (:mod:`bitwrk.render.verify`). A result that fails
either step is disputed with its evidence, the seller is blocked by this buyer for good
(:class:`SellerRecords`) and the unit is bought again elsewhere. Whether a result is
checked is drawn when its trade is matched (:meth:`SpotChecker.expect`): only then is the
worker started and the scene loaded, while the seller renders.

When the buyer cannot render its patches (its own Blender fails), the result is accepted
on the caps alone and the event is logged: a buyer's broken install is not the seller's
fault.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import sqlite3
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..cas import ChunkStore, JobManifest
from ..errors import BitwrkError
from ..render import exr, verify
from ..render.errors import RenderError, ResultRejected, SpotCheckFailed
from ..render.jobspec import JobSpec
from ..render.tiling import Rect
from ..seller.pool import WorkerPool, blender_binary
from ..seller.sandbox import SandboxUnavailable
from .jobdirs import JobDirs

log = logging.getLogger("bitwrk.spotcheck")
# The check worker renders only this buyer's own scenes: it may keep serving the next job's
# file instead of a fresh process paying ``import bpy`` again (bitwrk.seller.pool).
OWN_SCENES = "own scenes"


class SellerRecords:
    """What this buyer knows of sellers: checks passed and failed, who is blocked."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("CREATE TABLE IF NOT EXISTS sellers(address TEXT PRIMARY KEY,"
                        " passed INTEGER NOT NULL DEFAULT 0, failed INTEGER NOT NULL DEFAULT 0,"
                        " blocked_tx INTEGER, reason TEXT)")

    def passed(self, seller: str) -> int:
        row = self.db.execute("SELECT passed FROM sellers WHERE address = ?",
                              (seller,)).fetchone()
        return int(row[0]) if row else 0

    def blocked(self) -> set[str]:
        return {r[0] for r in self.db.execute(
            "SELECT address FROM sellers WHERE blocked_tx IS NOT NULL")}

    def record(self, seller: str, ok: bool, txid: int | None = None, reason: str = "") -> None:
        self.db.execute("INSERT OR IGNORE INTO sellers(address) VALUES (?)", (seller,))
        if ok:
            self.db.execute("UPDATE sellers SET passed = passed + 1 WHERE address = ?",
                            (seller,))
        else:
            self.db.execute("UPDATE sellers SET failed = failed + 1, blocked_tx = ?,"
                            " reason = ? WHERE address = ?", (txid, reason[:500], seller))

    def close(self) -> None:
        self.db.close()


@dataclass
class CheckOutcome:
    """How one result was checked, and what that cost the buyer."""

    content_checked: bool
    seconds: float = 0.0  # wall time of the whole check
    render_seconds: float = 0.0  # the buyer's patch renders inside its worker
    diffs: list[verify.PatchDiff] = field(default_factory=list)
    note: str = ""


def dispute_fields(exc: BaseException, encresulthash: str) -> dict[str, str]:
    """``reason`` and ``evidence`` for the dispute message about a refused result."""
    evidence = exc.data.get("evidence") if isinstance(exc, BitwrkError) else None
    if not isinstance(evidence, str):  # not opened at all (decryption failed)
        code = exc.code if isinstance(exc, BitwrkError) else "unreadable"
        evidence = _compact({"v": 1, "encresulthash": encresulthash, "error": code})
    return {"reason": str(exc)[:400], "evidence": evidence}


def _compact(data: dict[str, object]) -> str:
    return json.dumps(data, separators=(",", ":"), sort_keys=True)


class SpotChecker:
    """The spot check of one job's render results (see the module text).

    Owns the job's manifests, the layout learnt from the buyer's own render and the
    sandboxed worker ``pool`` it renders secret patches in; reads and updates the buyer's
    ``records`` of sellers (checked, or blocked for good) and writes dispute evidence to
    ``evidence_dir``.
    """

    def __init__(self, store: ChunkStore, manifests: dict[str, JobManifest],
                 records: SellerRecords, rate: float, pool: WorkerPool, dirs: JobDirs,
                 evidence_dir: Path, rng: secrets.SystemRandom | None = None,
                 track: Callable[[asyncio.Task[None]], None] | None = None) -> None:
        self.store = store
        self.manifests = manifests
        self.records = records
        self.rate = rate
        self.pool = pool
        self.dirs = dirs
        self.evidence_dir = evidence_dir
        self.rng = rng or secrets.SystemRandom()
        self.layout: list[tuple[str, list[str]]] | None = None  # learnt from our own render
        self.track = track  # hears of the warming task (so that closing can cancel it)
        self.decided: dict[int, str] = {}  # txid -> new | drawn | skip (see expect)
        self.warming: asyncio.Task[None] | None = None

    async def warm(self) -> None:
        """Load the job's scene in the worker now (one pixel of the first unit, not a check),
        so the first result does not wait for Blender to start."""
        manifest = next(iter(self.manifests.values()))
        spec = JobSpec.from_json(manifest.spec)
        r = spec.rect
        try:
            async with self.dirs.use(manifest, self.store) as folder:
                with tempfile.TemporaryDirectory(prefix="bitwrk-check-") as tmp:
                    await self.pool.render(
                        folder / spec.blend,
                        spec.with_rect(Rect(r.x0, r.x0 + 1, r.y0, r.y0 + 1)),
                        Path(tmp) / "warm.exr", root=folder, owner=OWN_SCENES)
        except (BitwrkError, OSError) as exc:
            log.info("warming the check worker failed: %s", exc)

    def wanted(self, seller: str) -> bool:
        """Every unit of a seller not yet checked successfully; later ones at the rate."""
        return self.records.passed(seller) == 0 or self.rng.random() < self.rate

    def expect(self, txid: int, seller: str) -> None:
        """A trade was matched: decide now (secretly) whether its result will be checked,
        and if so start loading the scene in the worker while the seller renders. A job
        none of whose results is checked never starts the worker at all.

        A seller not yet checked successfully is marked ``new``: its result is checked
        unless another of its results passes first (then the rate decides, as for any
        seller that passed); otherwise the rate is drawn here, ``drawn`` or ``skip``."""
        if txid in self.decided:
            return
        if self.records.passed(seller) == 0:
            self.decided[txid] = "new"
        else:
            self.decided[txid] = "drawn" if self.rng.random() < self.rate else "skip"
        if self.decided[txid] != "skip" and self.warming is None:
            self.warming = asyncio.get_running_loop().create_task(self.warm())
            if self.track is not None:
                self.track(self.warming)

    def _due(self, txid: int, seller: str) -> bool:
        """Whether the result of ``txid`` is checked (see :meth:`expect`)."""
        decided = self.decided.pop(txid, "new")  # not seen matched (a resumed trade)
        return decided == "drawn" or (decided == "new" and self.wanted(seller))

    async def check(self, unit_id: str, seller: str, txid: int, encresulthash: str,
                    result: bytes) -> CheckOutcome:
        """Raise :class:`ResultRejected` (or :class:`SpotCheckFailed`) to refuse ``result``;
        the seller is then blocked."""
        started = time.perf_counter()
        manifest = self.manifests[unit_id]
        spec = JobSpec.from_json(manifest.spec)
        resulthash = verify.result_hash(result)
        try:
            image = await asyncio.to_thread(_decode, result, spec)
            if self.layout is not None and verify.layout(image) != self.layout:
                raise ResultRejected("result's passes differ from the buyer's own render")
            if not self._due(txid, seller):
                return CheckOutcome(False, time.perf_counter() - started)
            outcome = await self._content(manifest, spec, image, resulthash, encresulthash)
        except ResultRejected as exc:
            self.records.record(seller, False, txid, str(exc))
            exc.data.setdefault("evidence", _compact({
                "v": 1, "resulthash": resulthash, "encresulthash": encresulthash,
                "error": exc.code}))
            self._keep_evidence(txid, exc, result)
            raise
        if outcome.content_checked:
            self.records.record(seller, True)
        outcome.seconds = time.perf_counter() - started
        return outcome

    async def _content(self, manifest: JobManifest, spec: JobSpec, image: exr.MultiLayer,
                       resulthash: str, encresulthash: str) -> CheckOutcome:
        patches = verify.pick_patches(spec.rect, rng=self.rng)
        tolerance = verify.tolerance_for(spec)
        # The buyer checks on its own CPU: a GPU unit is compared within the GPU tolerance.
        own = replace(spec, device="CPU")
        ours: list[exr.MultiLayer] = []
        rendered = 0.0
        try:
            async with self.dirs.use(manifest, self.store) as folder:
                with tempfile.TemporaryDirectory(prefix="bitwrk-check-") as tmp:
                    for i, patch in enumerate(patches):
                        out = Path(tmp) / f"patch{i}.exr"
                        done = await self.pool.render(folder / spec.blend,
                                                      own.with_rect(patch), out, root=folder,
                                                      owner=OWN_SCENES)
                        rendered += done.seconds
                        ours.append(await asyncio.to_thread(exr.read, out))
        except (BitwrkError, OSError) as exc:  # our own Blender failed: not the seller's fault
            log.warning("spot check skipped, the buyer's own render failed: %s", exc)
            return CheckOutcome(False, note=f"buyer's render failed: {exc}")
        self.layout = verify.layout(ours[0])
        theirs = [image.crop(_local(p, spec.rect)) for p in patches]
        diffs = [verify.compare(t, o, p, tolerance)
                 for t, o, p in zip(theirs, ours, patches, strict=True)]
        if verify.failed(diffs, tolerance):
            evidence = verify.Evidence(resulthash, encresulthash, diffs, theirs, ours, tolerance)
            raise SpotCheckFailed(verify.summary(diffs, tolerance), evidence=evidence.field(),
                                  full=evidence.full())
        return CheckOutcome(True, render_seconds=rendered, diffs=diffs)

    def _keep_evidence(self, txid: int, exc: ResultRejected, result: bytes) -> None:
        """The refused result and the full evidence stay with the buyer for the operator."""
        folder = self.evidence_dir / f"tx{txid}"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "result.bin").write_bytes(result)
            full = exc.data.get("full") or {"error": exc.code}
            (folder / "evidence.json").write_text(json.dumps(
                {"reason": str(exc), **full}, indent=1, default=str))
        except OSError as err:
            log.warning("could not keep the evidence of tx %d: %s", txid, err)


def _decode(result: bytes, spec: JobSpec) -> exr.MultiLayer:
    """The result under the caps; anything the decoder chokes on is the seller's fault."""
    with tempfile.TemporaryDirectory(prefix="bitwrk-result-") as tmp:
        path = Path(tmp) / "result.exr"
        path.write_bytes(result)
        try:
            image = exr.read_capped(path, spec.rect.width, spec.rect.height)
        except ResultRejected:
            raise
        except RenderError as exc:
            raise ResultRejected(f"result does not decode: {exc}") from None
    verify.check_passes(image, spec)
    return image


def _local(patch: Rect, unit: Rect) -> Rect:
    """``patch`` in the unit's own pixel coordinates."""
    return Rect(patch.x0 - unit.x0, patch.x1 - unit.x0, patch.y0 - unit.y0, patch.y1 - unit.y0)


def make_pool() -> WorkerPool:
    """One sandboxed worker on this machine's CPUs; under a Blender binary, ``blender -b``.
    No spare: the pool lives for a purchase's checks, a spare's start-up would be wasted."""
    try:
        return WorkerPool(slots=1, timeout=600.0, idle_seconds=60.0, prewarm_after=None,
                          blender=blender_binary())
    except SandboxUnavailable:
        # The scene is the buyer's own file, rebuilt from its own manifest: checking it
        # without an OS sandbox (scripts still off) exposes the buyer to nothing new.
        return WorkerPool(slots=1, timeout=600.0, idle_seconds=60.0, prewarm_after=None,
                          blender=blender_binary(), unsandboxed=True)


class CheckResources:
    """What the checks of all of a daemon's jobs share: the seller records, one worker
    (started when the first trade whose result will be checked is matched), the job
    folders it renders from, the evidence kept."""

    def __init__(self, data_dir: Path, cache_dir: Path) -> None:
        self.records = SellerRecords(data_dir / "sellers.sqlite3")
        self.evidence_dir = data_dir / "evidence"
        self.dirs = JobDirs(cache_dir / "check", keep=2)
        self.pool: WorkerPool | None = None
        self._warming: set[asyncio.Task[None]] = set()

    def checker(self, units: list[Any], store: ChunkStore, rate: float) -> SpotChecker | None:
        """A checker for a job's units (journal rows), or None when they are not renders."""
        manifests = {}
        try:
            for unit in units:
                manifest = JobManifest.from_json(unit.payload["manifest"].encode())
                JobSpec.from_json(manifest.spec)
                manifests[unit.unit_id] = manifest
        except (BitwrkError, KeyError):
            return None
        if not manifests:
            return None
        if self.pool is None:
            self.pool = make_pool()
        return SpotChecker(store, manifests, self.records, rate, self.pool, self.dirs,
                           self.evidence_dir, track=self._track)

    def _track(self, task: asyncio.Task[None]) -> None:
        self._warming.add(task)
        task.add_done_callback(self._warming.discard)

    async def close(self) -> None:
        for task in list(self._warming):
            task.cancel()
        if self.pool is not None:
            await self.pool.close(kill=True)  # patch renders are disposable
        self.records.close()
