"""``python -m bitwrk.buy SCENE.blend --exchange URL --max-price SAT --out DIR``:
render a scene through the exchange, headless (scripts and CI).

The scene is probed and packed (every dependency), each frame is cut into tiles (units),
the units are bought under a mandate, and each frame is stitched — and denoised once,
when the scene denoises — into ``DIR/<scene>_<frame>.exr`` and ``.png``. One bpy process,
started first, probes the scene while this one packs and connects, and then composes each
frame as soon as its last unit has landed (:mod:`bitwrk.render.composer`): after the last
unit only that unit's frame is left to compose. ``--quote`` renders one small sample tile
here and prints the job's estimated time and price from the market's asks, buying nothing.

Several scenes, one run: ``python -m bitwrk.buy A.blend [options] --then B.blend [--frames
A-B] [--tiles N] [--cost-class C] [--out DIR] [--then ...]``. Each ``--then`` scene takes the
options given before the first ``--then`` unless it gives its own (only those four); every
scene is probed, packed and planned before anything is bought, and their jobs then trade
side by side under one daemon: no seller waits between one scene's last unit and the next
scene's first, and the buyer starts up once (its check worker, its exchange connection).
Each scene's lines start with its file's name; ``--budget`` is shared out by units.

Exit codes: 0 done; 1 failed (a unit could not be bought, a broken scene, compositing);
2 bad arguments; 3 the exchange stayed unreachable (``--wait-exchange`` seconds at start,
or longer than the daemon rides out an outage later); 4 not finished within ``--timeout``;
130 interrupted. Whatever ends a run early, its open bids are cancelled and its trades
not yet working are cancelled (refunded) first, and it says why in one line. A run that
was killed leaves its job in the journal; the next run with the same identity settles the
trades that were already working and withdraws the rest before it starts its own job.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .articles import COST_CLASSES, article_id
from .errors import AddressError, BitwrkError, ExchangeUnreachable
from .keys import address_network, check_address
from .protocol import MAX_EXCLUDED, MAX_MIN_FINISHED, SellerTerms
from .render.composer import Composer, FrameOutput
from .render.jobspec import JobSpec
from .render.tiling import auto_count, end_split, region, tiles_in

# The daemon, the chunk store and the exchange client (aiohttp) take most of a second to
# import: they are imported once the compose process is started, so that it overlaps.
if TYPE_CHECKING:
    from .cas import ChunkStore
    from .daemon import Daemon
    from .daemon.events import JobDone, UnitDone

ADAPTIVE_OVERSCAN = 8  # px; adaptive sampling looks at neighbours (docs/measured-facts.md R1)
EXIT_FAILED, EXIT_UNREACHABLE, EXIT_TIMEOUT, EXIT_INTERRUPTED = 1, 3, 4, 130
STOP_WAIT = 30.0  # seconds for cancelling and stopping the daemon on the way out
THEN = "--then"  # starts another scene of the same run
SCENE_FLAGS = ("--frames", "--tiles", "--cost-class", "--out")  # a --then scene's own
MAX_SCENES = 8


class JobTimeout(BitwrkError):
    """The job did not finish within ``--timeout``."""

    code = "job_timeout"


@dataclass(frozen=True)
class Plan:
    article: str
    units: list[tuple[str, JobSpec]]  # (unit id, spec)
    frames: list[int]


def _bpy_env() -> dict[str, str]:
    env = dict(os.environ)
    scratch = Path(tempfile.gettempdir()) / f"bitwrk-buy-{os.getpid()}"
    env.setdefault("BLENDER_USER_RESOURCES", str(scratch / "user"))
    env.setdefault("XDG_CACHE_HOME", str(scratch / "cache"))
    return env


def layer_samples(info: dict[str, Any]) -> int:
    """The sample count of the rendered view layers, as Cycles decides it: a layer's own
    count (View Layer > Samples, when not 0) replaces the scene's under "Layer Samples:
    Use", caps it under "Bounded", and is ignored under "Ignore". Units carry one count
    (sellers render every layer with it), so layers that would differ are refused."""
    scene = int(info["samples"])
    mode = info.get("layer_samples", "USE")
    counts: dict[int, list[str]] = {}
    for layer in info["view_layers"]:
        if not layer["use"]:
            continue
        own = int(layer.get("samples") or 0)
        count = (scene if mode == "IGNORE" or own == 0
                 else min(own, scene) if mode == "BOUNDED" else own)
        counts.setdefault(count, []).append(str(layer["name"]))
    if len(counts) > 1:
        which = "; ".join(f"{', '.join(names)}: {n}" for n, names in sorted(counts.items()))
        raise BitwrkError(f"the view layers render with different sample counts ({which});"
                          " BitWrk renders one count for all: give them the same, or set"
                          " Layer Samples to Ignore")
    return next(iter(counts), scene)


def frame_spec(info: dict[str, Any], blend_name: str, frame: int, version: str,
               device: str = "CPU") -> JobSpec:
    layers = tuple(v["name"] for v in info["view_layers"] if v["use"])
    adaptive = bool(info["adaptive"]["use"])
    return JobSpec(blend=blend_name, scene=info["scene"], view_layers=layers, frame=frame,
                   width=info["width"], height=info["height"], x0=0, x1=info["width"], y0=0,
                   y1=info["height"], samples=layer_samples(info), seed=info["seed"],
                   max_bounces=info["max_bounces"], denoise=bool(info["denoise"]["use"]),
                   overscan=ADAPTIVE_OVERSCAN if adaptive else 0, blender=version,
                   device=device)


def check_gpu(info: dict[str, Any]) -> None:
    """A scene that needs CPU-only features (the probe lists them) cannot be sold as GPU."""
    needs = info.get("cpu_only") or []
    if needs:
        raise BitwrkError("this scene cannot render on GPUs, it needs the CPU for: "
                          + "; ".join(needs[:10]) + " (buy CPU time: leave GPUs off)")


def plan(info: dict[str, Any], blend_name: str, frames: list[int], tiles_arg: str,
         cost_class: str, gpu: bool = False, sellers: int = 0) -> Plan:
    """The units of a job and the article to buy them as; ``gpu``: GPU results are
    acceptable, so the ``~gpu`` article (refused for a scene with CPU-only features). With
    ``tiles_arg`` "auto" and ``sellers`` free now, frames of a last round that would leave
    sellers idle are cut into tiles (:func:`~bitwrk.render.tiling.end_split`)."""
    if gpu:
        check_gpu(info)
    if info.get("multiview"):
        raise BitwrkError("stereoscopy (Output Properties > Views) is not bought on BitWrk:"
                          " a unit is one view, and sellers render mono; turn Views off")
    if info.get("path_guiding"):
        raise BitwrkError("Path Guiding (Render Properties > Sampling > Path Guiding) makes"
                          " each pixel depend on the rest of the region rendered with it:"
                          " tiles would differ from a local render and could not be"
                          " checked, so sellers render without it; turn it off")
    version = info["blender"]
    specs = [frame_spec(info, blend_name, frame, version, "GPU" if gpu else "CPU")
             for frame in frames]
    # A render region (Ctrl+B in the camera view) is rendered alone, as Blender does.
    area = region(info.get("border"), int(info["width"]), int(info["height"]))
    counts = [auto_count(spec, cost_class, area) if tiles_arg == "auto" else int(tiles_arg)
              for spec in specs]
    split = end_split(counts, sellers) if tiles_arg == "auto" else 1
    if split > 1:
        left = len(counts) % sellers
        counts[-left:] = [split] * left
    units: list[tuple[str, JobSpec]] = []
    classes = []
    for spec, count in zip(specs, counts, strict=True):
        for i, rect in enumerate(tiles_in(area, count)):
            unit = spec.with_rect(rect)
            classes.append(unit.cost_class())
            units.append((f"f{spec.frame:05d}_t{i:03d}", unit))
    needed = max(classes, key=COST_CLASSES.__getitem__)
    if COST_CLASSES[needed] > COST_CLASSES[cost_class]:
        cost_class = needed  # --tiles N made tiles bigger than the asked class
    return Plan(article_id(version, cost_class, gpu=gpu), units, frames)


def check_scripts(info: dict[str, Any], allow: bool) -> None:
    """Sellers never run Python from a scene: drivers that need it would render wrong."""
    drivers = info.get("python_drivers") or []
    if drivers and not allow:
        raise BitwrkError("the scene is not farm-ready: these drivers need Python, which "
                          "sellers never run (make them simple expressions, or pass "
                          "--allow-missing to render without them):\n  "
                          + "\n  ".join(drivers[:20]))


def pack_files(blend: Path, workdir: Path, allow_missing: bool) -> tuple[str, dict[str, Path]]:
    """Every file the scene needs, by its name in the job."""
    from .render.packing import pack

    result = pack(blend, workdir / "pack")
    if result.missing and not allow_missing:
        raise BitwrkError("the scene is not farm-ready; missing files:\n  "
                          + "\n  ".join(result.missing))
    return result.blend, result.files


def manifests(plan_: Plan, files: dict[str, Path], store: ChunkStore
              ) -> list[tuple[str, bytes]]:
    """One canonical manifest per unit; the files are chunked into the store once."""
    from .cas import JobManifest

    first = JobManifest.from_files(plan_.units[0][1].to_json(), files, store)
    return [(uid, JobManifest(spec.to_json(), first.files).to_json())
            for uid, spec in plan_.units]


def frames_of(text: str | None, info: dict[str, Any]) -> list[int]:
    if text is None:
        return [int(info["frame_current"])]
    start, _, end = text.partition("-")
    first, last = int(start), int(end or start)
    if last < first:
        raise BitwrkError("--frames A-B needs A <= B")
    return list(range(first, last + 1, max(1, int(info["frame_step"]))))


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bitwrk.buy", description=__doc__)
    p.add_argument("scene", type=Path, help=".blend file")
    p.add_argument("--exchange", required=True)
    p.add_argument("--max-price", type=int, required=True, help="satoshi per unit")
    p.add_argument("--budget", type=int, help="satoshi for the whole job (price + fees)")
    p.add_argument("--frames", help="A-B (default: the scene's current frame)")
    p.add_argument("--tiles", default="auto", help="tiles per frame: auto or a number")
    p.add_argument("--cost-class", default="512M", choices=list(COST_CLASSES))
    p.add_argument("--concurrency", type=int, default=4, help="units traded at once")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--allow-missing", action="store_true",
                   help="buy even if dependencies are missing or drivers need Python")
    p.add_argument("--timeout", type=float, default=3600.0,
                   help="give up after this many seconds, whatever is left (exit code 4)")
    p.add_argument("--wait-exchange", type=float, default=60.0,
                   help="seconds to keep trying an unreachable exchange at start (exit 3)")
    p.add_argument("--gpu", action="store_true",
                   help="GPU results are acceptable: buy the ~gpu article (GPU sellers; pixels"
                        " match a CPU render within the GPU tolerance, not exactly); refused"
                        " for scenes that need CPU-only features such as OSL")
    p.add_argument("--allow-local-sellers", action="store_true",
                   help="trade with sellers on loopback, private or link-local addresses"
                        " (tests, demos, your own LAN); refused by default")
    p.add_argument("--check-rate", type=_rate, default=None,
                   help="share of a known seller's units whose secret patches this machine "
                        "re-renders before paying (0-1; a seller's units are always checked "
                        "until one passes; default 0.2)")
    p.add_argument("--min-seller-finished", type=_count(MAX_MIN_FINISHED), default=0,
                   metavar="N", help="trade only with sellers that finished at least N trades"
                                     " on this exchange (default 0: new sellers too)")
    p.add_argument("--max-seller-lost-pct", type=_count(100), default=100, metavar="P",
                   help="trade only with sellers that lost at most P %% of their decided "
                        "trades (finished + disputes lost) in dispute (default 100)")
    p.add_argument("--exclude-seller", action="append", default=[], metavar="ADDR",
                   type=_address,
                   help="never trade with this seller (repeatable, at most "
                        f"{MAX_EXCLUDED})")
    p.add_argument("--quote", action="store_true",
                   help="buy nothing: render two small sample tiles here and print the job's "
                        "estimated time and price from the market's current asks")
    return p


def _count(maximum: int) -> Any:
    def parse(text: str) -> int:
        value = int(text)
        if not 0 <= value <= maximum:
            raise argparse.ArgumentTypeError(f"must be from 0 to {maximum}")
        return value
    return parse


def describe_terms(terms: SellerTerms) -> str:
    parts = [f">= {terms.min_finished} finished trades"] if terms.min_finished else []
    if terms.max_lost_pct < 100:
        parts.append(f"<= {terms.max_lost_pct} % of decided trades lost in dispute")
    if terms.exclude:
        parts.append(f"not the {len(terms.exclude)} excluded")
    return ", ".join(parts)


def _address(text: str) -> str:
    try:
        address_network(text)
    except AddressError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from None
    return text


def seller_terms(args: argparse.Namespace, network: str) -> SellerTerms:
    """The mandate's seller terms; excluded sellers must be addresses of the exchange's
    network (a bad one is refused before any bid, not on every bid)."""
    for seller in args.exclude_seller:
        try:
            check_address(seller, network)
        except AddressError as exc:
            raise AddressError(f"--exclude-seller {seller}: {exc}") from None
    return SellerTerms(args.min_seller_finished, args.max_seller_lost_pct,
                       frozenset(args.exclude_seller))


def _rate(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError("must be between 0 and 1")
    return value


def parse(argv: list[str]) -> list[argparse.Namespace]:
    """The run's options, one namespace per scene: the first scene's options are the run's,
    and each ``--then SCENE [--frames] [--tiles] [--cost-class] [--out]`` adds a scene that
    takes them unless it gives its own."""
    parser = _parser()
    segments: list[list[str]] = [[]]
    for arg in argv:
        if arg == THEN:
            segments.append([])
        else:
            segments[-1].append(arg)
    first = parser.parse_args(segments[0])
    if len(segments) > MAX_SCENES:
        parser.error(f"at most {MAX_SCENES} scenes in one run (each keeps a bpy process with"
                     " its file open until its frames are written)")
    scenes = [first]
    more = _scene_parser()
    for segment in segments[1:]:
        own = more.parse_args(segment)
        scene = argparse.Namespace(**vars(first))
        for key, value in vars(own).items():
            if value is not None:
                setattr(scene, key, value)
        scenes.append(scene)
    return scenes


def _scene_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"python -m bitwrk.buy ... {THEN}",
                                description="one more scene in the same run")
    p.add_argument("scene", type=Path, help=".blend file")
    for flag in SCENE_FLAGS:
        p.add_argument(flag, type=Path if flag == "--out" else str,
                       choices=list(COST_CLASSES) if flag == "--cost-class" else None)
    return p


def main(argv: list[str] | None = None) -> int:
    scenes = parse(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    try:
        return run(scenes)
    except ExchangeUnreachable as exc:
        print(f"error: {exc}; giving up", file=sys.stderr)
        return EXIT_UNREACHABLE
    except JobTimeout as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_TIMEOUT
    except BitwrkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # one clear line, never a traceback, for whatever went wrong
        from .client import describe

        logging.getLogger("bitwrk.buy").debug("failed", exc_info=True)
        print(f"error: {describe(exc)}", file=sys.stderr)
        return EXIT_FAILED


@dataclass
class Purchase:
    """One scene of a run: its options, its compose process, and then its plan and job."""

    args: argparse.Namespace
    blend: Path
    label: str  # "" for a run of one scene; else what its output lines start with
    composer: Composer
    name: str = ""  # the packed .blend's name in the job
    files: dict[str, Path] | None = None
    info: dict[str, Any] | None = None
    plan: Plan | None = None
    output: FrameOutput | None = None
    job_id: str = ""
    done: list[UnitDone] = field(default_factory=list)
    final: JobDone | None = None

    def say(self, text: str) -> str:
        return f"{self.label} {text}" if self.label else text


def labels(blends: list[Path]) -> list[str]:
    """What each scene's lines start with: its file's stem ("" for a run of one scene)."""
    if len(blends) == 1:
        return [""]
    stems = [b.stem for b in blends]
    return [s if stems.count(s) == 1 else f"{s}#{i + 1}" for i, s in enumerate(stems)]


def run(scenes: list[argparse.Namespace]) -> int:
    args = scenes[0]  # the run's options; each scene may have its own frames, tiles, out
    started = time.monotonic()
    deadline = started + args.timeout
    blends = [scene.scene.resolve() for scene in scenes]
    with (tempfile.TemporaryDirectory(prefix="bitwrk-buy-") as tmp,
          contextlib.ExitStack() as stack):
        # every scene's bpy process probes while this one packs
        buys = [Purchase(scene, blend, label, stack.enter_context(Composer(blend, _bpy_env())))
                for scene, blend, label in zip(scenes, blends, labels(blends), strict=True)]
        from .daemon import Daemon, DaemonConfig  # meanwhile: see the imports above

        _pack(buys, Path(tmp), args.allow_missing)
        if args.quote:
            return _quote(buys)
        daemon = Daemon(DaemonConfig(args.exchange, connect_for=args.wait_exchange,
                                     allow_local_sellers=args.allow_local_sellers))
        try:
            try:
                exchange = daemon.start()
                _plan_all(buys, daemon)  # every scene, before anything is bought
                _buy(args, daemon, exchange, buys, Path(tmp), deadline)
            finally:
                daemon.stop(STOP_WAIT)  # meanwhile the composers work on the last frames
            # also when units failed: whole frames stay
            written = [_finish(buy, deadline) for buy in buys]
        except BaseException:
            for buy in buys:
                if buy.output is not None:
                    buy.output.abandon()
            raise
        failed = sum(buy.final.failed for buy in buys if buy.final is not None)
        if failed:
            print(f"error: {failed} unit(s) could not be bought", file=sys.stderr)
            return 1
    seconds = time.monotonic() - started
    for buy, files in zip(buys, written, strict=True):
        _summary(buy, files, seconds)
    return 0


def _pack(buys: list[Purchase], tmp: Path, allow_missing: bool) -> None:
    for i, buy in enumerate(buys):
        try:
            buy.name, buy.files = pack_files(buy.blend, tmp / f"scene{i}", allow_missing)
        except BitwrkError as exc:
            buy.composer.probe()  # Blender's own word on a broken file is the clearer error
            raise _about(buy, exc) from None


def _quote(buys: list[Purchase]) -> int:
    from .quote import print_quote

    for buy in buys:
        if buy.label:
            print(f"{buy.label}: {buy.blend}", flush=True)
        code = print_quote(buy.args, buy.composer, buy.name)
        if code:
            return code
    return 0


def _plan_all(buys: list[Purchase], daemon: Daemon) -> None:
    """Probe and plan every scene, and refuse a run whose scenes would overwrite each
    other's files; then each scene's frames have their output."""
    for buy in buys:
        try:
            buy.info = buy.composer.probe()
            check_scripts(buy.info, buy.args.allow_missing)
            buy.plan = _plan(buy.args, daemon, buy.info, buy.name)
        except BitwrkError as exc:
            raise _about(buy, exc) from None
    _no_overwrites(buys)
    for buy in buys:
        assert buy.plan is not None and buy.info is not None
        buy.output = FrameOutput(buy.plan.units, buy.args.out, buy.info["scene"], buy.composer)


def _about(buy: Purchase, exc: BitwrkError) -> BitwrkError:
    """``exc`` naming its scene, in a run of several."""
    if not buy.label:
        return exc
    if type(exc) is not BitwrkError or str(buy.blend) in str(exc):
        return exc
    return BitwrkError(f"{buy.blend}: {exc}")


def _no_overwrites(buys: list[Purchase]) -> None:
    """Two scenes of one run must not write the same file."""
    seen: dict[Path, Purchase] = {}
    for buy in buys:
        assert buy.plan is not None and buy.info is not None
        for frame in buy.plan.frames:
            path = buy.args.out.resolve() / f"{buy.info['scene']}_{frame:04d}.exr"
            other = seen.setdefault(path, buy)
            if other is not buy:
                raise BitwrkError(f"{other.blend} and {buy.blend} would both write {path}"
                                  " (same scene name, frame and --out): give one its own"
                                  " --out after --then")


def _finish(buy: Purchase, deadline: float) -> list[Path]:
    """Wait for the frames handed to the compose process; the files written."""
    assert buy.output is not None
    try:
        return buy.output.finish(max(1.0, deadline - time.monotonic()))
    except BitwrkError as exc:
        if time.monotonic() >= deadline:
            raise JobTimeout("compositing not finished within --timeout") from None
        raise BitwrkError(buy.say(f"compositing failed: {exc}")) from None


def _plan(args: argparse.Namespace, daemon: Daemon, info: dict[str, Any], name: str) -> Plan:
    """The units; with ``--tiles auto`` the last round fits the sellers asking now."""
    frames = frames_of(args.frames, info)
    job_plan = plan(info, name, frames, args.tiles, args.cost_class, args.gpu)
    if args.tiles != "auto" or daemon.client is None:
        return job_plan
    from .quote import asks_within

    market = daemon.call(daemon.client.market(job_plan.article), 30)
    sellers = sum(n for _p, n in asks_within(market, args.max_price))
    return plan(info, name, frames, args.tiles, args.cost_class, args.gpu,
                min(sellers, args.concurrency))


def budgets(total: int | None, units: list[int], max_price: int) -> list[int]:
    """Each scene's share of ``--budget`` (by its units; the shares add up to it), or
    without one its units at the max price plus room for fees."""
    if total is None:
        fee_room = 1 + 0.1  # fees are a few percent; the budget is price + fee
        return [int(n * max_price * fee_room) + 100 for n in units]
    shares = [total * n // sum(units) for n in units]
    shares[0] += total - sum(shares)
    return shares


def _buy(args: argparse.Namespace, daemon: Daemon, exchange: dict[str, Any],
         buys: list[Purchase], tmp: Path, deadline: float) -> None:
    """Buy every unit of every scene (their jobs trade side by side); each result goes to
    its scene's compose process as it arrives."""
    from .daemon import BuyJob, Mandate
    from .money import fee_for

    check_rate = Mandate.check_rate if args.check_rate is None else args.check_rate
    # A run killed mid-job left its job in the journal, and the daemon took it up again:
    # trades already working are fetched and paid, but nobody will compose that job, so its
    # bids and unstarted trades are withdrawn.
    _give_up(daemon, quietly=True)
    _check_funds(daemon, args.max_price + fee_for(args.max_price, exchange["fee_bps"]))
    terms = seller_terms(args, exchange["network"])
    plans = [buy.plan for buy in buys if buy.plan is not None]
    shares = budgets(args.budget, [len(p.units) for p in plans], args.max_price)
    for i, (buy, job_plan, budget) in enumerate(zip(buys, plans, shares, strict=True)):
        units = manifests(job_plan, buy.files or {}, daemon.store)
        job = BuyJob(job_plan.article,
                     Mandate(args.max_price, budget, time.time() + args.timeout, check_rate,
                             terms),
                     tuple(units), tmp / f"results{i}", concurrency=args.concurrency)
        buy.job_id = job.job_id
        print(buy.say(f"buying {len(units)} units of {job_plan.article} for "
                      f"{len(job_plan.frames)} frame(s) at <= {args.max_price} sat each"
                      f" (budget {budget} sat)"), flush=True)
        if i == 0 and terms.to_fields():  # the exchange matches only such sellers: say so
            print(f"sellers: {describe_terms(terms)} (the exchange matches no others)",
                  flush=True)
        daemon.submit(job)
    try:
        _wait(daemon, buys, deadline)
    except BaseException:
        _give_up(daemon)
        raise
    _give_up(daemon, quietly=True)  # nothing left open behind this run


def _check_funds(daemon: Daemon, per_unit: int) -> None:
    """Refuse at once when not even one unit can be paid (rather than bid in vain)."""
    assert daemon.client is not None
    available = daemon.call(daemon.client.account(), 30).available
    if available < per_unit:
        raise BitwrkError(
            f"not enough money on the exchange: {available} sat available, a unit may cost "
            f"up to {per_unit} sat (max price + fee); deposit to {daemon.address} first")


def _give_up(daemon: Daemon, quietly: bool = False) -> None:
    """Cancel what is still open (bids, trades not yet working), within STOP_WAIT. Giving
    up for real (not ``quietly``) also stops riding out exchange outages."""
    if daemon.buyer is None or not daemon.runtime.running:
        return
    if not quietly:
        print("cancelling: open bids withdrawn, trades not yet working refunded", flush=True)
        daemon.hurry()
    try:
        daemon.call(daemon.cancel_jobs(), STOP_WAIT)
    except Exception as exc:  # leaving anyway: say what could not be cancelled
        from .client import describe

        print(f"warning: could not cancel everything: {describe(exc)}", file=sys.stderr)


def _wait(daemon: Daemon, buys: list[Purchase], deadline: float) -> None:
    """Until every scene's job is done: each result handed to its scene's compose process."""
    from .daemon.events import Crashed, JobDone, UnitDone, UnitFailed

    by_job = {buy.job_id: buy for buy in buys}
    left = set(by_job)
    while time.monotonic() < deadline:
        event = daemon.runtime.wait_event(0.5)
        buy = by_job.get(getattr(event, "job_id", ""))
        if isinstance(event, Crashed):
            raise BitwrkError(f"daemon error in {event.where}: {event.error}")
        if buy is None:
            continue  # no job's, or a job the daemon resumed from an earlier, killed run
        if isinstance(event, UnitDone):
            assert buy.plan is not None and buy.output is not None
            buy.done.append(event)
            total = len(buy.plan.units)
            bar = "#" * (20 * len(buy.done) // total)
            print(buy.say(f"[{bar:<20}] {len(buy.done)}/{total} {event.unit_id} from "
                          f"{event.seller[:14]} for {event.price} sat"), flush=True)
            buy.output.landed(event.unit_id, Path(event.result))
        elif isinstance(event, UnitFailed) and event.final:
            print(buy.say(f"unit {event.unit_id} failed: {event.reason}"), flush=True)
        elif isinstance(event, JobDone):
            buy.final = event
            left.discard(event.job_id)
            if not left:
                return
    done = sum(len(buy.done) for buy in buys)
    total = sum(len(buy.plan.units) for buy in buys if buy.plan is not None)
    outage = daemon.client.outage() if daemon.client is not None else None
    raise JobTimeout(f"job not finished within --timeout ({done}/{total} units done"
                     + (f"; {outage})" if outage else ")"))


def _summary(buy: Purchase, written: list[Path], seconds: float) -> None:
    assert buy.final is not None and buy.output is not None
    by_seller = Counter(e.seller for e in buy.done)
    print(buy.say(f"done: {len(buy.done)} units in {seconds:.1f} s, spent {buy.final.spent}"
                  " sat"))
    for seller, count in by_seller.most_common():
        print(f"  {seller}: {count} units")
    for path in written:
        print(f"  wrote {path}")
    print(f"  {buy.output.report()}", flush=True)


def _exit(code: int) -> None:
    """Leave without the interpreter's last garbage collection: every file is written and
    closed by now, and that collection (~0.07 s after a purchase) is the last thing a
    waiting script would wait for (docs/measured-facts.md R8)."""
    import gc

    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":
    _exit(main())

