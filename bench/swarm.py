"""Swarm benchmark: parallel efficiency of an animation bought from two one-core sellers.

Efficiency = T_local / (2 x T_swarm), target >= 0.95 (and >= 0.85 for a still of the same
scene bought in 4 tiles, against one local process rendering that frame):

- T_local: one plain bpy process pinned to CPU 0 renders the N frames of a heavier copy of
  the bundled test scene one after the other (file opened once, one EXR per frame), from
  the process start (``import bpy`` included) to the last frame written;
  taken before and again after the swarm, and their mean used (this VM's speed drifts by
  10-20 % over minutes);
- T_swarm: the wall time of ``python -m bitwrk.buy SCENE --frames 1-N --tiles 1`` against a
  real exchange (``python -m service``) with two warm headless sellers
  (``python -m bitwrk.seller --cpus 0`` and ``--cpus 1``), split from the buyer's output
  into prep (probe + pack + manifests, up to its "buying" line), trading (up to the last
  unit accepted) and the tail (daemon stop + compositing the last frame + summary: the
  other frames were composed while units still traded);
- the still: ``python -m bitwrk.buy SCENE --frames 1 --tiles 4`` on the same warm swarm,
  against T_local's start-up plus its first frame;
- the still by F12, as an artist buys it: one Blender session (the bpy module) with the
  extension installed from its zip renders frame 1 five times locally (Cycles, one thread
  pinned to CPU 0) and five times on BitWrk in 4 tiles (``bench/f12_still.py``); the
  medians of the later renders of each are compared (neither side starts Blender). Four
  later renders, not two: the one F12 whose units first draw a spot check pays the check
  worker's start (``import bpy``, ~0.4 s on the sellers' cores), and a median of two is
  their mean;
- T_pair: two local processes at once, one per core, each rendering all N frames. On a VM
  two busy cores may each be slower than one (the host shares its cores); T_pair / 2 is
  the best any two-core split can reach, so T_pair / (2 x T_swarm) is the efficiency with
  the hardware's own scaling taken out (printed beside the target, not instead of it).

Per-unit overheads come from the exchange's own timestamps (bids, transactions and their
messages, read from its SQLite file): waiting for a match, establishing, transmitting,
the seller's work beyond the render itself (against the same frame's local render in CPU
time), the buyer's verify, and each seller's idle gap between units. A sampler thread
watches the sellers' render worker processes, the per-CPU load, and the CPU that
processes outside this benchmark use.

The machine matters: on a 2-core box the buyer, the exchange and both seller daemons
share the two cores the sellers render on, while T_local has its core to itself. Other
work on the machine stretches both wall times; the table shows how much CPU it took, and
the efficiency once more with T_local as the CPU time of the local process (pinned to
one core, its wall time can only be longer).

``python -m bench.swarm [--quick] [--strict]``; progress on stderr, the table on stdout.
Needs the ``bpy`` module.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import platform
import re
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.cli import arguments, exit_status
from bench.table import Row, pair_note, print_table
from tools.processes import Proc, free_port

ROOT = Path(__file__).resolve().parents[1]

NAME = "swarm"
TARGET_EFFICIENCY = 0.95
TARGET_STILL = 0.85
STILL_TILES = 4
F12_ROUNDS = 5  # local F12s and BitWrk F12s in one Blender session; the first ones warm it
SELLERS = 2
MIN_PRICE, MAX_PRICE = 10, 100
CREDIT = 1_000_000
TIMEOUT_SCALE = 1.0  # the exchange's production timeouts
WORKER_MARK = "bitwrk.seller.worker"


@dataclass(frozen=True)
class Settings:
    frames: int
    width: int
    height: int
    samples: int


# 192x128 px at 128 spp: ~4 s a frame on one core of the 2-core EPYC this was written on.
DEFAULT = Settings(frames=12, width=192, height=128, samples=128)
QUICK = Settings(frames=4, width=128, height=96, samples=48)


def log(message: str) -> None:
    print(f"[bench swarm] {message}", file=sys.stderr, flush=True)


# --- processes -----------------------------------------------------------------------------


def node_env(base: Path) -> dict[str, str]:
    """A participant's own identity, caches and Blender dirs (nothing lands under ~)."""
    env = dict(os.environ)
    env.update({"XDG_DATA_HOME": str(base / "data"), "XDG_CACHE_HOME": str(base / "cache"),
                "BLENDER_USER_RESOURCES": str(base / "blender-user"), "PYTHONPATH": str(ROOT),
                "PYTHONUNBUFFERED": "1", "TMPDIR": str(base / "tmp")})  # leftovers go with us
    (base / "tmp").mkdir(parents=True, exist_ok=True)
    return env


def run_py(args: list[str], env: dict[str, str], timeout: float) -> str:
    done = subprocess.run([sys.executable, *args], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, start_new_session=True)
    if done.returncode != 0:
        raise RuntimeError(f"{args[:3]} failed ({done.returncode}): "
                           f"{(done.stdout + done.stderr)[-2000:]}")
    return done.stdout


# --- the scene and the local baseline ------------------------------------------------------

HEAVY = """
import sys, bpy
src, dst = sys.argv[1], sys.argv[2]
w, h, samples, frames = (int(a) for a in sys.argv[3:7])
bpy.ops.wm.open_mainfile(filepath=src, load_ui=False, use_scripts=False)
bpy.context.preferences.filepaths.save_version = 0
scene = bpy.context.scene
r = scene.render
r.resolution_x, r.resolution_y, r.resolution_percentage = w, h, 100
scene.cycles.samples = samples
scene.frame_start, scene.frame_end = 1, frames
cube = bpy.data.objects["Cube"]  # keep it moving over every frame, not just 1-4
cube.location.x = 1.4
cube.keyframe_insert("location", index=0, frame=frames)
bpy.ops.wm.save_as_mainfile(filepath=dst, relative_remap=True)
"""

LOCAL = """
import json, os, sys, time
os.sched_setaffinity(0, {int(sys.argv[4])})
import bpy
blend, out, frames = sys.argv[1], sys.argv[2], int(sys.argv[3])
bpy.ops.wm.open_mainfile(filepath=blend, load_ui=False, use_scripts=False)
scene = bpy.context.scene
r = scene.render
r.threads_mode, r.threads = "FIXED", 1
r.use_persistent_data = True
ims = r.image_settings
if hasattr(ims, "media_type"):
    ims.media_type = "MULTI_LAYER_IMAGE"
ims.file_format, ims.color_depth, ims.exr_codec = "OPEN_EXR_MULTILAYER", "32", "ZIP"
print("BENCH " + json.dumps({"opened": time.time()}), flush=True)
for frame in range(1, frames + 1):
    scene.frame_set(frame)
    started, cpu = time.perf_counter(), time.process_time()
    bpy.ops.render.render(scene=scene.name)
    path = os.path.join(out, f"frame_{frame:04d}.exr")
    bpy.data.images["Render Result"].save_render(filepath=path, scene=scene)
    print("BENCH " + json.dumps({"frame": frame, "seconds": time.perf_counter() - started,
                                 "cpu": time.process_time() - cpu, "written": time.time(),
                                 "process_cpu": time.process_time()}), flush=True)
"""


def build_scene(work: Path, s: Settings) -> Path:
    env = node_env(work / "build")
    run_py([str(ROOT / "tests/data/scenes/make_scene.py"), str(work / "job")], env, 120)
    heavy = work / "job" / "heavy.blend"  # beside scene.blend: //textures/ still resolves
    run_py(["-c", HEAVY, str(work / "job" / "scene.blend"), str(heavy), str(s.width),
            str(s.height), str(s.samples), str(s.frames)], env, 120)
    return heavy


@dataclass
class Local:
    seconds: float  # start of the process to the last frame written
    open_seconds: float  # start to the file open (import bpy + open)
    cpu_seconds: float  # the process's CPU time at the last frame (one core: <= wall)
    renders: list[float]  # per frame: render call + EXR save, wall
    render_cpu: list[float]  # the same in CPU time: what other load cannot stretch
    others: float | None  # CPU used by other processes meanwhile, % of one core


def local_render(work: Path, blend: Path, frames: int, cpu: int, name: str = "local") -> Local:
    out = work / name
    out.mkdir()
    env = node_env(work / f"{name}-user")
    sampler = Sampler().start()
    started = time.time()
    try:
        text = run_py(["-c", LOCAL, str(blend), str(out), str(frames), str(cpu)], env,
                      60 + 120 * frames)
    finally:
        sampler.stop()
    events = [json.loads(line[6:]) for line in text.splitlines() if line.startswith("BENCH ")]
    done = sorted((e for e in events if "frame" in e), key=lambda e: e["frame"])
    renders = [e["seconds"] for e in done]
    if len(renders) != frames:
        raise RuntimeError(f"local render wrote {len(renders)} of {frames} frames")
    opened = next(e["opened"] for e in events if "opened" in e)
    last = done[-1]["written"]
    return Local(last - started, opened - started, done[-1]["process_cpu"], renders,
                 [e["cpu"] for e in done], sampler.others(started, last))


def mean_local(runs: list[Local]) -> Local:
    """The runs' mean, field by field: this VM's speed drifts by 10-20 % over minutes, so
    T_local is taken before and after the swarm, and the swarm is compared with both."""
    def mean(values: list[float]) -> float:
        return statistics.mean(values)

    others = [r.others for r in runs if r.others is not None]
    return Local(mean([r.seconds for r in runs]), mean([r.open_seconds for r in runs]),
                 mean([r.cpu_seconds for r in runs]),
                 [mean(list(f)) for f in zip(*(r.renders for r in runs), strict=True)],
                 [mean(list(f)) for f in zip(*(r.render_cpu for r in runs), strict=True)],
                 mean(others) if others else None)


def pair_render(work: Path, blend: Path, frames: int) -> float:
    """Two local processes at once, one per core, each rendering every frame: wall time to
    the later one's last frame. Two busy cores of a VM may each run slower than one alone
    (the host's cores are shared); T_pair / 2 is the best any two-core split can do."""
    results: list[Local | BaseException | None] = [None] * SELLERS

    def one(i: int) -> None:
        try:
            results[i] = local_render(work, blend, frames, cpu=i, name=f"local-pair{i}")
        except BaseException as exc:  # re-raised below, in the caller's thread
            results[i] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(SELLERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    done = []
    for result in results:
        if not isinstance(result, Local):
            raise RuntimeError(f"pair render failed: {result}")
        done.append(result)
    return max(r.seconds for r in done)


def probe_seconds(work: Path, blend: Path) -> float:
    """One buyer-side bpy helper process (the probe: import bpy, open, read settings)."""
    env = node_env(work / "probe-user")
    started = time.perf_counter()
    run_py(["-m", "bitwrk.render.scene", str(blend)], env, 120)
    return time.perf_counter() - started


# --- watching the swarm --------------------------------------------------------------------


def _stat(pid: str) -> tuple[int, int, str] | None:
    """(ppid, utime + stime jiffies, start time) of a process; None when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[1]), int(fields[11]) + int(fields[12]), fields[19]


def _label(pid: int) -> str:
    """A short name for a process: a worker, its ``-m`` module, else its program's name."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return "?"
    if any(WORKER_MARK in a for a in argv):  # not a seller's: the buyer's spot checks
        return "spot-check worker"
    if "-m" in argv[:-1]:
        return argv[argv.index("-m") + 1]
    return Path(argv[0]).name or "?"


def _per_cpu() -> dict[str, tuple[int, int]]:
    """cpuN -> (busy, total) jiffies."""
    out = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *vals = line.split()
        if re.fullmatch(r"cpu\d+", name):
            nums = [int(v) for v in vals]
            idle = nums[3] + (nums[4] if len(nums) > 4 else 0)
            out[name] = (sum(nums[:8]) - idle, sum(nums[:8]))
    return out


@dataclass
class WorkerSeen:
    seller: int
    first: float
    last: float
    jiffies: int
    start_id: str  # /proc start time, so a reused pid is never taken for the same process
    sandbox: bool = False  # bubblewrap around a worker (its args name the worker too)


@dataclass
class Sampler:
    """Every ``period`` s: the per-CPU load, the CPU time of this benchmark's processes and
    of everything else on the machine, and the sellers' render worker processes."""

    sellers: list[int] = field(default_factory=list)
    period: float = 0.2  # its own CPU (it reads every process) is in the figures: ~0.5 %
    workers: dict[int, WorkerSeen] = field(default_factory=dict)
    cpu: list[tuple[float, dict[str, tuple[int, int]]]] = field(default_factory=list)
    ticks: list[tuple[float, int, int]] = field(default_factory=list)  # (t, mine, others)
    # (t, process, jiffies) of this benchmark's processes other than the render workers
    spent: list[tuple[float, tuple[int, str], int]] = field(default_factory=list)
    names: dict[tuple[int, str], str] = field(default_factory=dict)
    _seen: dict[tuple[int, str], int] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Sampler:
        self.sample()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.wait(self.period):
            self.sample()
        self.sample()

    def sample(self) -> None:
        now = time.time()
        with contextlib.suppress(OSError):
            self.cpu.append((now, _per_cpu()))
        procs = {}
        for name in os.listdir("/proc"):
            if name.isdigit():
                info = _stat(name)
                if info is not None:
                    procs[int(name)] = info
        me, sellers = os.getpid(), {pid: i for i, pid in enumerate(self.sellers)}
        mine = others = 0
        seen: dict[tuple[int, str], int] = {}
        for pid, (_ppid, jiffies, start_id) in procs.items():
            owner, up, hops = None, pid, 0
            while up > 1 and hops < 64 and up != me:
                if owner is None and up in sellers and up != pid:
                    owner = sellers[up]
                up, hops = procs[up][0] if up in procs else 0, hops + 1
            key = (pid, start_id)
            delta = jiffies - self._seen.get(key, 0 if self._seen else jiffies)
            seen[key] = jiffies
            if up == me:
                mine += delta
            else:
                others += delta
            if owner is not None:
                self._worker(pid, owner, jiffies, start_id, now)
                known = self.workers.get(pid)
                if known is not None and known.start_id == start_id:
                    continue
            if up == me and delta > 0:
                if key not in self.names:
                    self.names[key] = _label(pid)
                self.spent.append((now, key, delta))
        self._seen = seen
        self.ticks.append((now, mine, others))

    def _worker(self, pid: int, seller: int, jiffies: int, start_id: str, now: float) -> None:
        known = self.workers.get(pid)
        if known is not None and known.start_id == start_id:
            known.last, known.jiffies = now, jiffies
            return
        with contextlib.suppress(OSError):
            argv = Path(f"/proc/{pid}/cmdline").read_bytes()
            if WORKER_MARK.encode() in argv:
                sandbox = Path(argv.split(b"\0")[0].decode(errors="replace")).name == "bwrap"
                self.workers[pid] = WorkerSeen(seller, now, now, jiffies, start_id, sandbox)

    def busy(self, start: float, end: float) -> float | None:
        """Busy share of all CPUs between ``start`` and ``end`` (%, 100 = every core)."""
        if len(self.cpu) < 2:
            return None
        a = min(self.cpu, key=lambda x: abs(x[0] - start))[1]
        b = min(self.cpu, key=lambda x: abs(x[0] - end))[1]
        busy = sum(b[k][0] - a[k][0] for k in a if k in b)
        total = sum(b[k][1] - a[k][1] for k in a if k in b)
        return 100.0 * busy / total if total > 0 else None

    def others(self, start: float, end: float) -> float | None:
        """CPU used by processes outside this benchmark, in % of one core."""
        inside = [o for t, _m, o in self.ticks if start < t <= end + self.period]
        if end <= start or not inside:
            return None
        return 100.0 * sum(inside) / os.sysconf("SC_CLK_TCK") / (end - start)

    def split(self, start: float, end: float) -> tuple[float, float] | None:
        """CPU seconds of this benchmark's processes between ``start`` and ``end``: the
        render workers (sandbox included) and all the rest (buyer, exchange, daemons)."""
        mine = [m for t, m, _o in self.ticks if start < t <= end + self.period]
        if end <= start or not mine:
            return None
        tck = os.sysconf("SC_CLK_TCK")
        rest = sum(d for t, _k, d in self.spent if start < t <= end + self.period)
        return (sum(mine) - rest) / tck, rest / tck

    def heaviest(self, start: float, end: float, n: int = 4) -> list[tuple[str, float]]:
        """The ``n`` kinds of process (by :func:`_label`) besides the render workers that
        used the most CPU seconds between ``start`` and ``end``."""
        by: dict[str, int] = {}
        for t, key, delta in self.spent:
            if start < t <= end + self.period:
                name = self.names.get(key, "?")
                by[name] = by.get(name, 0) + delta
        tck = os.sysconf("SC_CLK_TCK")
        return [(k, v / tck) for k, v in sorted(by.items(), key=lambda kv: -kv[1])[:n]]

    def kill_leftovers(self) -> None:
        """Workers outliving their seller (they lead their own sessions): kill them."""
        for pid, seen in self.workers.items():
            info = _stat(str(pid))
            with contextlib.suppress(OSError):
                if info is not None and info[2] == seen.start_id and \
                        WORKER_MARK.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                    os.kill(pid, signal.SIGKILL)


# --- the swarm run -------------------------------------------------------------------------


@dataclass
class BuyerRun:
    started: float
    ended: float
    lines: list[tuple[float, str]]
    returncode: int

    def first(self, pattern: str) -> float | None:
        return next((t for t, line in self.lines if re.search(pattern, line)), None)

    def last(self, pattern: str) -> float | None:
        return next((t for t, line in reversed(self.lines) if re.search(pattern, line)), None)

    def text(self) -> str:
        return "\n".join(line for _t, line in self.lines)


@dataclass
class Trade:
    txid: int
    seller: str
    bid_created: float
    matched: float
    phases: dict[str, float]  # phase -> when the exchange entered it
    phase: str


def start_exchange(work: Path, procs: list[Proc]) -> tuple[str, Path]:
    exdir = work / "exchange"
    exdir.mkdir()
    db, port = exdir / "exchange.sqlite3", free_port()
    url = f"http://127.0.0.1:{port}"
    proc = Proc("exchange", [sys.executable, "-m", "service", "--db", str(db), "--host",
                             "127.0.0.1", "--port", str(port), "--timeout-scale",
                             repr(TIMEOUT_SCALE)], node_env(exdir), exdir / "server.log")
    procs.append(proc)
    deadline = time.monotonic() + 30
    while True:
        with contextlib.suppress(OSError), \
                urllib.request.urlopen(url + "/api/v1/info", timeout=2) as resp:
            if resp.status == 200:
                return url, db
        if not proc.alive() or time.monotonic() > deadline:
            raise RuntimeError(f"exchange did not come up: {proc.output()[-1500:]}")
        time.sleep(0.1)


def read_trades(db: Path, buyer: str) -> tuple[list[Trade], int]:
    """The buyer's trades with the exchange's timestamps; and how many buy bids it placed."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        rows = conn.execute(
            "SELECT t.id, t.seller, b.created, t.matched, t.phase FROM transactions t"
            " JOIN bids b ON b.id = t.buy_bid WHERE t.buyer = ? ORDER BY t.id", (buyer,)
        ).fetchall()
        trades = []
        for txid, seller, created, matched, phase in rows:
            phases: dict[str, float] = {}
            for when, post in conn.execute(
                    "SELECT time, post_phase FROM messages WHERE txid = ? ORDER BY id", (txid,)):
                phases.setdefault(post, when)
            trades.append(Trade(txid, seller, created, matched, phases, phase))
        bids = conn.execute("SELECT COUNT(*) FROM bids WHERE address = ? AND type = 'buy'",
                            (buyer,)).fetchone()[0]
    finally:
        conn.close()
    return trades, int(bids)


@dataclass
class Swarm:
    buyer: BuyerRun
    trades: list[Trade]
    buy_bids: int
    sampler: Sampler
    out: Path
    seller_addresses: list[str]
    seller_lines: list[str]
    still: BuyerRun | None = None
    f12: dict[str, Any] | None = None  # bench/f12_still.py's report
    f12_error: str = ""


def buy(work: Path, name: str, blend: Path, url: str, env: dict[str, str], extra: list[str],
        timeout: float, procs: list[Proc]) -> BuyerRun:
    """One ``python -m bitwrk.buy`` run, each line of its output timed."""
    started = time.time()
    buyer = Proc(name, [sys.executable, "-m", "bitwrk.buy", str(blend), "--exchange", url,
                        "--max-price", str(MAX_PRICE), "--timeout", str(timeout),
                        "--allow-local-sellers", *extra], env, work / f"{name}.err", pipe=True)
    procs.append(buyer)
    lines: list[tuple[float, str]] = []

    def read() -> None:
        assert buyer.proc.stdout is not None
        for line in buyer.proc.stdout:
            lines.append((time.time(), line.rstrip("\n")))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        code = buyer.proc.wait(timeout + 60)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{name} still running after {timeout + 60:.0f} s") from None
    ended = time.time()
    reader.join(10)
    run = BuyerRun(started, ended, lines, code)
    if code != 0:
        raise RuntimeError(f"{name} failed ({code}): {run.text()[-1500:]} "
                           f"{buyer.output()[-1500:]}")
    return run


def run_swarm(work: Path, blend: Path, s: Settings, timeout: float) -> Swarm:
    procs: list[Proc] = []
    sampler: Sampler | None = None
    try:
        url, db = start_exchange(work, procs)
        log(f"exchange on {url}; starting {SELLERS} sellers (warm workers)")
        sellers = []
        for i in range(SELLERS):
            base = work / f"seller{i}"
            sellers.append(Proc(f"seller{i}", [
                sys.executable, "-m", "bitwrk.seller", "--exchange", url, "--cpus", str(i),
                "--min-price", str(MIN_PRICE), "--classes", "512M"], node_env(base),
                base / "out.log"))
            procs.append(sellers[-1])
        addresses = [p.wait_for(r"seller (\S+) on http", 120).group(1) for p in sellers]
        buyer_env = node_env(work / "buyer")
        account = run_py(["-m", "bitwrk", "account"], buyer_env, 60)
        address = re.search(r"address\s+(\S+)", account).group(1)  # type: ignore[union-attr]
        run_py(["-m", "service", "credit", address, str(CREDIT), "--exchange", url, "--db",
                str(db)], buyer_env, 60)
        out = work / "buyer-out"
        sampler = Sampler([p.pid for p in sellers]).start()
        time.sleep(0.3)  # a baseline sample of the idle sellers
        log(f"buying {s.frames} frames")
        run = buy(work, "buyer", blend, url, buyer_env, ["--frames", f"1-{s.frames}",
                                                         "--tiles", "1", "--out", str(out)],
                  timeout, procs)
        sampler.stop()
        trades, bids = read_trades(db, address)
        log(f"buying frame 1 as a still in {STILL_TILES} tiles")
        still = buy(work, "still", blend, url, buyer_env, [
            "--frames", "1", "--tiles", str(STILL_TILES), "--out", str(work / "still-out")],
            timeout, procs)
        log(f"frame 1 again in {STILL_TILES} tiles, by F12 in a Blender session with the"
            " extension (local F12s first)")
        f12, f12_error = None, ""
        try:
            f12 = f12_still(work, blend, url, buyer_env)
        except (RuntimeError, ValueError, IndexError, KeyError,
                subprocess.TimeoutExpired) as exc:
            f12_error = str(exc)[-300:]
            log(f"the F12 still failed: {f12_error}")
        return Swarm(run, trades, bids, sampler, out, addresses,
                     [p.output() for p in sellers], still, f12, f12_error)
    finally:
        if sampler is not None:
            sampler.stop()
        for proc in reversed(procs):  # buyer, sellers (Ctrl-C: clean stop), exchange
            clean = proc.name.startswith("seller")
            proc.stop(signal.SIGINT if clean else signal.SIGTERM, 60 if clean else 10)
        if sampler is not None:
            sampler.kill_leftovers()


def f12_still(work: Path, blend: Path, url: str, env: dict[str, str]) -> dict[str, Any]:
    """An artist's F12 on the still, local and on BitWrk, in one Blender session with the
    extension installed from its zip (bench/f12_still.py)."""
    if platform.system() != "Linux" or platform.machine() != "x86_64":
        raise RuntimeError("the extension zip is built for linux-x64 only here")
    dist = work / "dist"
    run_py([str(ROOT / "tools" / "build_extension.py"), "--platforms", "linux-x64", "--out",
            str(dist)], env, 900)
    (zip_path,) = sorted(dist.glob("bitwrk-*.zip"))
    out = work / "f12-out"
    out.mkdir()
    own = {k: v for k, v in env.items() if k != "PYTHONPATH"}  # the extension's own wheels
    text = run_py([str(ROOT / "bench" / "f12_still.py"), str(zip_path), str(blend), url,
                   str(out), str(STILL_TILES), str(F12_ROUNDS)], own, 900)
    line = [ln for ln in text.splitlines() if ln.startswith("F12 ")][-1]
    report: dict[str, Any] = json.loads(line[len("F12 "):])
    if report["failed"] or report["done"] != STILL_TILES:  # the last F12's units
        raise RuntimeError(f"the last F12 bought {report['done']} units, {report['failed']}"
                           " failed")
    return report


# --- the table -----------------------------------------------------------------------------


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _ms(value: float | None) -> float | None:
    return None if value is None else value * 1000


PREP = """
import json, sys, tempfile, time
from pathlib import Path
started = time.perf_counter()
import bitwrk.buy as buy
imported = time.perf_counter()
with tempfile.TemporaryDirectory() as tmp:
    buy.pack_files(Path(sys.argv[1]), Path(tmp), False)
print(json.dumps({"import": imported - started, "pack": time.perf_counter() - imported}))
"""


def prep_parts(work: Path, blend: Path) -> dict[str, float]:
    """The buyer's start-up pieces alone: ``import bitwrk.buy`` and packing the scene."""
    try:
        return dict(json.loads(run_py(["-c", PREP, str(blend)], node_env(work / "prep"),
                                      120).splitlines()[-1]))
    except (RuntimeError, ValueError, IndexError, subprocess.TimeoutExpired) as exc:
        log(f"could not time the buyer's start-up pieces: {exc}")
        return {}


def collect(quick: bool = False) -> list[Row]:
    s = QUICK if quick else DEFAULT
    load = os.getloadavg()[0]
    if hasattr(os, "sched_getaffinity") and len(os.sched_getaffinity(0)) < SELLERS:
        raise RuntimeError(f"needs {SELLERS} CPUs (one per seller)")
    with tempfile.TemporaryDirectory(prefix="bitwrk-bench-swarm-") as tmp:
        work = Path(tmp)
        log(f"building the scene: {s.width}x{s.height} px, {s.samples} spp, {s.frames} frames")
        blend = build_scene(work, s)
        log("local baseline on CPU 0")
        before = local_render(work, blend, s.frames, cpu=0)
        log(f"T_local {before.seconds:.1f} s; timing the buyer's start-up pieces alone")
        parts = {"probe": probe_seconds(work, blend), **prep_parts(work, blend)}
        swarm = run_swarm(work, blend, s, timeout=max(300.0, 8 * before.seconds))
        files = sorted(p.stat().st_mtime for p in swarm.out.iterdir())
        log("local baseline again, after the swarm (the machine's speed drifts)")
        after = local_render(work, blend, s.frames, cpu=0, name="local-after")
        log(f"T_local {after.seconds:.1f} s; now two such processes at once, one per core")
        pair = pair_render(work, blend, s.frames)
        log(f"T_pair {pair:.1f} s")
    return rows(s, mean_local([before, after]), parts, swarm, files, load,
                (before.seconds, after.seconds), pair)


UNIT_LINE = re.compile(r"^\[#*\s*\] \d+/\d+ f(\d+)_t\d+ from (\S+) ")


def frames_of(trades: list[Trade], lines: list[tuple[float, str]]) -> dict[int, int]:
    """txid -> frame: each "unit done" line of the buyer goes with the finished trade of that
    seller whose FINISHED time is nearest to the line."""
    free = [t for t in trades if "FINISHED" in t.phases]
    found: dict[int, int] = {}
    for when, line in lines:
        m = UNIT_LINE.match(line)
        if not m:
            continue
        mine = [t for t in free if t.seller.startswith(m.group(2))]
        if mine:
            best = min(mine, key=lambda t: abs(t.phases["FINISHED"] - when))
            free.remove(best)
            found[best.txid] = int(m.group(1))
    return found


def rows(s: Settings, local: Local, parts: dict[str, float], sw: Swarm, files: list[float],
         load: float, locals_: tuple[float, float] | None = None,
         pair: float | None = None) -> list[Row]:
    out: list[Row] = []

    def add(metric: str, value: float | None, unit: str = "", target: str = "",
            ok: bool | None = None, note: str = "") -> None:
        out.append(Row(NAME, metric, value, unit, target, ok, note))

    b = sw.buyer
    t_swarm = b.ended - b.started
    t_buying = b.first(r"^buying ") or b.started
    t_last = b.last(UNIT_LINE.pattern) or t_buying
    trading = t_last - t_buying
    tail = b.ended - t_last
    prep = t_buying - b.started
    # Per-unit overheads are measured against each frame's local render in CPU time: other
    # work on the machine stretches the wall time of the local run, not its CPU time.
    renders = local.render_cpu
    mean_render = statistics.mean(renders)
    ideal = local.seconds / SELLERS
    eff = local.seconds / (SELLERS * t_swarm)
    eff_cpu = local.cpu_seconds / (SELLERS * t_swarm)

    scene = f"{s.width}x{s.height} px, {s.samples} spp"
    add(f"T_local: {s.frames} frames on CPU 0, one bpy process", _ms(local.seconds), "ms",
        note=scene + (f"; mean of {locals_[0]:.1f} s before and {locals_[1]:.1f} s after"
                      " the swarm" if locals_ else ""))
    add("  the same as CPU time of that process", _ms(local.cpu_seconds), "ms",
        note="what other load cannot stretch")
    add("  other processes' CPU meanwhile", local.others, "%",
        note=f"of one core; load average before: {load:.2f}")
    add("  import bpy + open the file", _ms(local.open_seconds), "ms")
    add("  render + EXR per frame, wall (mean)", _ms(statistics.mean(local.renders)), "ms",
        note=f"{min(local.renders):.2f}-{max(local.renders):.2f} s")
    add("  render + EXR per frame, CPU time (mean)", _ms(mean_render), "ms",
        note=f"{min(renders):.2f}-{max(renders):.2f} s")
    add("T_swarm: buyer command wall time", _ms(t_swarm), "ms",
        note=f"{SELLERS} sellers, --tiles 1, {len(sw.trades)} trades")
    add("  prep: start -> 'buying' line", _ms(prep), "ms",
        note="python, probe, pack, daemon, manifests")
    add("    alone: probe (a bpy process: import, open, read)", _ms(parts.get("probe")), "ms")
    add("    alone: import bitwrk.buy", _ms(parts.get("import")), "ms")
    add("    alone: pack the scene (BAT)", _ms(parts.get("pack")), "ms")
    add("  trading: 'buying' -> last unit accepted", _ms(trading), "ms")
    add("  tail: last unit accepted -> buyer exit", _ms(tail), "ms",
        note="daemon stop, the last frame's compose, summary")
    if files:
        early = sum(f < t_last for f in files) // 2  # EXR + PNG per frame
        add("    frames written before the last unit landed", early, "",
            note=f"of {s.frames}: composed while trading")
        add("    last unit -> last output file written", _ms(files[-1] - t_last), "ms",
            note="the last frame's stitch + write")
    add("  ideal: T_local / 2", _ms(ideal), "ms")
    add("  T_swarm - ideal", _ms(t_swarm - ideal), "ms",
        note=f"prep {prep:.2f} + trading excess {trading - ideal:.2f} + tail {tail:.2f} s")
    add("parallel efficiency T_local / (2 x T_swarm)", eff, "x",
        f">= {TARGET_EFFICIENCY}", eff >= TARGET_EFFICIENCY)
    add("  the same with T_local as its CPU time", eff_cpu, "x", f">= {TARGET_EFFICIENCY}",
        eff_cpu >= TARGET_EFFICIENCY, note="differs when other load slowed T_local")
    add("parallel efficiency, trading part only", local.seconds / (SELLERS * trading)
        if trading > 0 else None, "x", note="T_local / (2 x trading)")
    out.extend(pair_rows(local, pair, t_swarm))

    if sw.still is not None:
        out.extend(still_rows(local, sw.still, pair))
        out.extend(f12_rows(sw.f12, sw.f12_error,
                            None if pair is None else pair / local.seconds))
    done = [t for t in sw.trades if "FINISHED" in t.phases]
    frame = frames_of(done, b.lines)

    def local_of(t: Trade) -> float:
        f = frame.get(t.txid)
        return renders[f - 1] if f is not None and 0 < f <= len(renders) else mean_render

    def span(a: str, z: str) -> list[float]:
        return [t.phases[z] - (t.matched if a == "MATCHED" else t.phases[a])
                for t in done if z in t.phases and (a == "MATCHED" or a in t.phases)]

    first = min((t.matched for t in sw.trades), default=None)
    add("buyer start -> first trade matched", _ms(first - b.started if first else None), "ms")
    add("per unit: buy bid -> matched (median)",
        _ms(_median([t.matched - t.bid_created for t in done])), "ms",
        note=f"{sw.buy_bids} buy bids for {len(done)} units; queued at concurrency 4")
    add("per unit: matched -> transmitting (endpoint + work msgs)",
        _ms(_median(span("MATCHED", "TRANSMITTING"))), "ms")
    add("per unit: transmitting -> working (manifest + chunks)",
        _ms(_median(span("TRANSMITTING", "WORKING"))), "ms")
    by_seller: dict[str, list[Trade]] = {}
    for t in sorted(done, key=lambda t: t.matched):
        by_seller.setdefault(t.seller, []).append(t)
    firsts = {mine[0].txid for mine in by_seller.values()}
    worked = [t for t in done if "WORKING" in t.phases and "UNVERIFIED" in t.phases]

    def beyond(t: Trade) -> float:
        return t.phases["UNVERIFIED"] - t.phases["WORKING"] - local_of(t)

    add("per unit: working -> result published (median)", _ms(_median(span("WORKING",
        "UNVERIFIED"))), "ms", note="assemble, worker, render, seal, fetch, receipt")
    add("  beyond the frame's local render CPU time (median)",
        _ms(_median([beyond(t) for t in worked])), "ms",
        note=f"{len(frame)}/{len(done)} units matched to frames")
    add("  first unit per seller (its warm worker opens the scene)",
        _ms(_median([beyond(t) for t in worked if t.txid in firsts])), "ms",
        note=f"{sum(t.txid in firsts for t in worked)} units")
    add("  later units (the scene already open in the worker)",
        _ms(_median([beyond(t) for t in worked if t.txid not in firsts])), "ms",
        note=f"{sum(t.txid not in firsts for t in worked)} units")
    add("per unit: result -> accepted (buyer unseal + verify)",
        _ms(_median(span("UNVERIFIED", "FINISHED"))), "ms")

    gaps, idle, per_seller, ends = [], [], [], []
    for mine in by_seller.values():
        per_seller.append(len(mine))
        for a, z in itertools.pairwise(mine):
            if "UNVERIFIED" in a.phases:
                gaps.append(z.matched - a.phases["UNVERIFIED"])
        if "UNVERIFIED" in mine[-1].phases:
            ends.append(mine[-1].phases["UNVERIFIED"])
            busy = mine[-1].phases["UNVERIFIED"] - mine[0].matched
            idle.append((busy - sum(local_of(t) for t in mine)) / len(mine))
    add("seller: result published -> next trade matched (median)", _ms(_median(gaps)), "ms",
        note="re-bid + match")
    add("seller: time per unit not rendering (mean)",
        _ms(statistics.mean(idle) if idle else None), "ms",
        note="first match -> last result, minus local render CPU")
    add("sellers' last results apart", _ms(max(ends) - min(ends) if ends else None), "ms",
        note="one core idle at the end")
    add("units per seller", min(per_seller) if per_seller else None, "",
        note=" / ".join(map(str, per_seller)))
    workers = [w for w in sw.sampler.workers.values() if not w.sandbox]
    add("render worker processes seen / units", len(workers) / max(1, len(done)), "x",
        note=f"{len(workers)} for {len(done)} units, {SELLERS} started warm (bubblewrap's"
             " own processes not counted)")
    cpu = sum(w.jiffies for w in workers) / os.sysconf("SC_CLK_TCK")
    add("  worker CPU per unit beyond the local render (mean)",
        _ms((cpu - sum(renders)) / len(done) if done else None), "ms",  # 1 unit per frame
        note="import bpy + open, per process")
    add("all cores busy during trading", sw.sampler.busy(t_buying, t_last), "%",
        note="every process")
    out.extend(helper_rows(sw.sampler, t_buying, t_last))
    add("all cores busy during the tail", sw.sampler.busy(t_last, b.ended), "%")
    add("other processes' CPU during T_swarm", sw.sampler.others(b.started, b.ended), "%",
        note="of one core")
    return out


def helper_rows(sampler: Sampler, start: float, end: float) -> list[Row]:
    """What BitWrk's processes other than the render workers took of the two cores while
    units traded (on one machine that CPU is taken from the sellers' renders)."""
    split = sampler.split(start, end)
    if split is None:
        return []
    heaviest = ", ".join(f"{name} {cpu:.1f}" for name, cpu in sampler.heaviest(start, end))
    return [Row(NAME, "  of the two cores during trading: BitWrk's processes besides the workers",
                100.0 * split[1] / (SELLERS * (end - start)), "%",
                note=f"{split[1]:.1f} CPU-s: {heaviest}; the render workers {split[0]:.1f} CPU-s")]


def pair_rows(local: Local, pair: float | None, t_swarm: float) -> list[Row]:
    """The machine's own two-core scaling, and the efficiency with it taken out."""
    if pair is None:
        return []
    return [
        Row(NAME, "T_pair: two local processes at once, one per core, each all frames",
            _ms(pair), "ms", note=pair_note(pair / local.seconds)),
        Row(NAME, "  efficiency against the machine's own two-core scaling",
            pair / (SELLERS * t_swarm), "x",
            note="T_pair / (2 x T_swarm): the loss that is BitWrk's own")]


def still_rows(local: Local, still: BuyerRun, pair: float | None = None) -> list[Row]:
    """The 4-tile still against one local process rendering that frame (start-up included)."""
    t_local = local.open_seconds + local.renders[0]
    t_swarm = still.ended - still.started
    buying = still.first(r"^buying ") or still.started
    last = still.last(UNIT_LINE.pattern) or buying
    eff = t_local / (SELLERS * t_swarm)
    return [
        Row(NAME, f"still: frame 1 in {STILL_TILES} tiles, buyer wall time", _ms(t_swarm), "ms",
            note=f"prep {buying - still.started:.2f} + trading {last - buying:.2f}"
                 f" + tail {still.ended - last:.2f} s"),
        Row(NAME, "  T_local: import bpy + open + frame 1", _ms(t_local), "ms"),
        Row(NAME, "still: parallel efficiency T_local / (2 x T_swarm)", eff, "x",
            f">= {TARGET_STILL}", eff >= TARGET_STILL),
        *([] if pair is None else [
            Row(NAME, "  against the machine's own two-core scaling (T_local x T_pair /"
                      " T_local(all frames))", eff * pair / local.seconds, "x",
                note="the loss that is BitWrk's own")])]



def f12_rows(f12: dict[str, Any] | None, error: str = "", scaling: float | None = None
             ) -> list[Row]:
    """The still as an artist buys it: F12 in a Blender session that has rendered before,
    against a local F12 (Cycles on one core) in that same session. ``scaling``: the
    machine's own two-core scaling (T_pair / T_local), when measured."""
    metric = f"still by F12 in Blender (the extension's engine), {STILL_TILES} tiles"
    if f12 is None:
        return [Row(NAME, metric, None, "ms", note=f"not measured: {error}")]
    local, bitwrk = f12["local"], f12["bitwrk"]
    warm_local, warm = statistics.median(local[1:]), statistics.median(bitwrk[1:])
    eff = warm_local / (SELLERS * warm)
    later = f"median of F12s 2-{len(bitwrk)}"
    return [
        Row(NAME, f"{metric}, wall", _ms(warm), "ms",
            note=f"{later}: {', '.join(f'{x:.2f}' for x in bitwrk[1:])} s; the first (it"
                 f" also connects the extension's daemon) {bitwrk[0]:.2f} s"),
        Row(NAME, "  local F12 in the same session (Cycles, one thread on CPU 0)",
            _ms(warm_local), "ms",
            note=f"{later}: {', '.join(f'{x:.2f}' for x in local[1:])} s; the first"
                 f" {local[0]:.2f} s"),
        Row(NAME, "still by F12: parallel efficiency local F12 / (2 x BitWrk F12)", eff, "x",
            f">= {TARGET_STILL}", eff >= TARGET_STILL,
            note="no bpy start-up on either side: the artist's Blender is running"),
        *([] if scaling is None else [
            Row(NAME, "  against the machine's own two-core scaling (x T_pair / T_local"
                      "(all frames))", eff * scaling, "x",
                note="the loss that is BitWrk's own")]),
    ]


def main(argv: list[str] | None = None) -> int:
    args = arguments("bench.swarm", __doc__).parse_args(argv)
    started = time.monotonic()
    table = collect(quick=args.quick)
    print_table(table, title="BitWrk swarm benchmark")
    log(f"{time.monotonic() - started:.0f} s")
    return exit_status(table, args.strict)


if __name__ == "__main__":
    sys.exit(main())
