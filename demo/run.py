"""``make demo`` (``python -m demo.run``): the whole of BitWrk on one machine, in about 90 s.

1. builds the demo scene with bpy (``demo/make_demo_scene.py``) into ``demo-output/scene/``;
2. starts a local exchange (``python -m service``) on a fresh SQLite file in a work dir;
3. starts two headless sellers (``python -m bitwrk.seller``), one CPU core each; with
   ``--via-relay`` the exchange also runs its relay (``python -m service relay``) and seller
   A sells through it, as a seller behind NAT would (docs/relay.md);
4. credits the buyer play money and buys, through the exchange, a still cut into 4 tiles
   and a short animation, one unit per frame, in one buyer command (``python -m bitwrk.buy
   STILL --then ANIMATION``, as the local render below is one process); the sellers render
   noisy tiles plus denoising passes, the buyer stitches and denoises each frame once and
   writes ``demo-output/still/`` and ``demo-output/animation/`` (EXR + PNG per frame);
5. renders the same frames locally, one bpy process on one core, for comparison;
6. prints a summary: units, which seller did what, wall times, parallel efficiency,
   money spent and earned, fees (read back from the exchange's API).

Every process it starts runs in its own process group and is stopped at the end, also on
Ctrl-C, SIGTERM or an error; each run uses a fresh work dir and exchange database.
``--quick`` renders a smaller scene (tests).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from tools.processes import Proc, free_port, proc_stat

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
CREDIT = 1_000_000  # sat of play money (regtest)
MAX_PRICE = 1_500  # sat per unit the buyer pays at most
SELLERS = ((0, 1_000), (1, 1_200))  # (cpu, min price in sat)
STILL_TILES = 4
SELLER_GRACE = 20.0  # s a seller may take to stop cleanly (Ctrl-C) before SIGKILL
MARKER = "BITWRK_DEMO_RUN"  # every process the demo starts carries it in its environment


@dataclass(frozen=True)
class Size:
    width: int
    height: int
    samples: int
    frames: int


# 320x180 px: ~4 s a frame on one core, so that the buyer's fixed costs (start-up, the
# last frame's stitch + denoise) are small beside the rendering, as for a real job (issue
# 17). The sample count stays a power of two: only then is the buyer's denoise of the
# stitched frame bit-identical to Cycles' own (bitwrk/render/oidn.py).
FULL = Size(320, 180, 32, 6)
TARGET_EFFICIENCY = 0.85
QUICK = Size(96, 54, 16, 3)


def still_frame(size: Size) -> int:
    return min(4, size.frames)  # as make_demo_scene.py sets it


class Stop(Exception):
    """SIGTERM (or SIGHUP) arrived: clean up as on Ctrl-C."""


def _on_signal(signum: int, frame: FrameType | None) -> None:
    raise Stop(signal.Signals(signum).name)


# --- output --------------------------------------------------------------------------------

T0 = time.monotonic()


def say(text: str = "") -> None:
    print(f"[{time.monotonic() - T0:5.1f}s] {text}" if text else "", flush=True)


def rel(path: Path) -> str:
    with contextlib.suppress(ValueError):
        return str(path.relative_to(Path.cwd()))
    return str(path)


# --- processes -----------------------------------------------------------------------------


def stragglers(work: Path, run_id: str) -> list[int]:
    """Processes of this run still alive: the marker in their environment, or their
    working dir inside the work dir (render workers get a clean environment)."""
    found = []
    needle = f"{MARKER}={run_id}".encode()
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid() or proc_stat(int(name)) is None:
            continue
        with contextlib.suppress(OSError):
            if needle in Path(f"/proc/{name}/environ").read_bytes().split(b"\0"):
                found.append(int(name))
                continue
        with contextlib.suppress(OSError):
            if Path(os.readlink(f"/proc/{name}/cwd")).is_relative_to(work):
                found.append(int(name))
    return found


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


# --- the demo ------------------------------------------------------------------------------


@dataclass
class Seller:
    label: str
    cpu: int
    price: int
    proc: Proc
    address: str = ""
    url: str = ""
    reach: str = ""  # "direct" or "via relay", as the seller printed it
    units: Counter[str] = field(default_factory=Counter)


@dataclass
class Purchase:
    """The buyer's one command: both scenes."""

    seconds: float
    units: Counter[str]  # delivered, by "still" and "animation"
    files: dict[str, list[Path]]  # written, by the same
    prep: float  # start -> the last scene's bids placed (probe, pack, manifests)
    trading: float  # -> last unit delivered


UNIT = re.compile(r"^\[#*\s*\] (\d+)/(\d+) f(\d+)_t(\d+) from (\S+) for (\d+) sat")


class Demo:
    def __init__(self, work: Path, out: Path, size: Size, via_relay: bool = False) -> None:
        self.via_relay = via_relay
        self.relay = ""
        self.work = work
        self.out = out
        self.size = size
        self.run_id = f"{os.getpid()}-{time.time_ns()}"
        self.procs: list[Proc] = []
        self.sellers: list[Seller] = []
        self.exchange = ""
        self.db = work / "exchange" / "exchange.sqlite3"
        self.ports: list[int] = []
        self.pids: dict[int, str] = {}

    def env(self, name: str) -> dict[str, str]:
        """A participant's own identity, caches, Blender and temp dirs in the work dir."""
        base = self.work / name
        for sub in ("data", "cache", "blender-user", "tmp"):
            (base / sub).mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env.update({"XDG_DATA_HOME": str(base / "data"), "XDG_CACHE_HOME": str(base / "cache"),
                    "BLENDER_USER_RESOURCES": str(base / "blender-user"),
                    "TMPDIR": str(base / "tmp"), "PYTHONPATH": str(ROOT),
                    "PYTHONUNBUFFERED": "1", MARKER: self.run_id})
        return env

    def start(self, name: str, argv: list[str], env: dict[str, str], pipe: bool = False
              ) -> Proc:
        proc = Proc(name, [sys.executable, *argv], env, self.work / f"{name}.log", pipe)
        self.procs.append(proc)
        self.pids[proc.pid] = (proc_stat(proc.pid) or (0, ""))[1]
        return proc

    def run_py(self, name: str, argv: list[str], timeout: float, who: str | None = None
               ) -> str:
        """Run one short command as participant ``who`` (default: its own dir)."""
        proc = self.start(name, argv, self.env(who or name), pipe=True)
        assert proc.proc.stdout is not None
        try:
            text, _ = proc.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"{name} took longer than {timeout:.0f} s") from None
        finally:
            proc.stop(signal.SIGKILL, 5)
        if proc.proc.returncode != 0:
            raise RuntimeError(f"{name} failed ({proc.proc.returncode}):\n"
                               f"{(text + proc.output())[-2500:]}")
        return text

    # -- steps ------------------------------------------------------------------------------

    def build_scene(self) -> tuple[Path, Path]:
        s = self.size
        scene_dir = self.out / "scene"
        shutil.rmtree(scene_dir, ignore_errors=True)
        self.run_py("make-scene", [str(HERE / "make_demo_scene.py"), str(scene_dir),
                                   "--width", str(s.width), "--height", str(s.height),
                                   "--samples", str(s.samples), "--frames", str(s.frames)], 120)
        return scene_dir / "demo_still.blend", scene_dir / "demo.blend"

    def start_exchange(self) -> None:
        port = free_port()
        self.exchange = f"http://127.0.0.1:{port}"
        self.db.parent.mkdir(parents=True)
        relay_args: list[str] = []
        if self.via_relay:
            relay_port = free_port()
            self.relay = f"http://127.0.0.1:{relay_port}"
            # loopback probes allowed: seller B's automatic choice finds it reachable
            relay_args = ["--relay-url", self.relay, "--allow-local-probes"]
        proc = self.start("exchange", ["-m", "service", "--db", str(self.db), "--port",
                                       str(port), "--network", "regtest", *relay_args],
                          self.env("exchange"))
        self.ports.append(port)
        if self.via_relay:
            self.start_relay()
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError, ValueError):
                info = get(self.exchange + "/api/v1/info")
                say(f"exchange {info['exchange'][:12]} on {self.exchange} (fresh SQLite file"
                    f" {rel(self.db)}, fee {info['fee_bps'] / 100:g} %)")
                return
            if not proc.alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the exchange did not come up:\n{proc.output()[-2000:]}")
            time.sleep(0.1)

    def start_relay(self) -> None:
        """The exchange operator's relay for sellers behind NAT (docs/relay.md)."""
        port = int(self.relay.rsplit(":", 1)[1])
        proc = self.start("relay", ["-m", "service", "relay", "--exchange", self.exchange,
                                    "--port", str(port)], self.env("relay"))
        self.ports.append(port)
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError, ValueError):
                get(self.relay + "/relay/v1/status")
                say(f"relay on {self.relay} (advertised in the exchange's /api/v1/info)")
                return
            if not proc.alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the relay did not come up:\n{proc.output()[-2000:]}")
            time.sleep(0.1)

    def start_sellers(self) -> None:
        for i, (cpu, price) in enumerate(SELLERS):
            label = f"seller {'AB'[i]}"
            name = f"seller-{'ab'[i]}"
            relay = ["--via-relay"] if self.via_relay and i == 0 else []
            proc = self.start(name, ["-m", "bitwrk.seller", "--exchange", self.exchange,
                                     "--cpus", str(cpu), "--min-price", str(price),
                                     "--classes", "512M,2G", *relay], self.env(name))
            self.sellers.append(Seller(label, cpu, price, proc))
        for seller in self.sellers:
            found = seller.proc.wait_for(r"seller (\S+) on (http://\S+): Blender", 180)
            seller.address, seller.url = found.group(1), found.group(2)
            reach = seller.proc.wait_for(r", (direct|via relay) \(", 3)
            seller.reach = reach.group(1)
            status = ""
            with contextlib.suppress(RuntimeError):  # the status page line follows
                status = seller.proc.wait_for(r"status page: (http://\S+)", 3).group(1)
            for url in (seller.url, status):
                port = urllib.parse.urlsplit(url).port if url else None
                if port is not None:
                    self.ports.append(port)
            page = f"; status page {status}" if status else ""
            say(f"{seller.label}: {seller.address} on CPU {seller.cpu}, asks >= {seller.price}"
                f" sat/unit, {seller.reach}, warm bpy worker ready{page}")

    def fund_buyer(self) -> str:
        text = self.run_py("buyer-account", ["-m", "bitwrk", "account"], 60, who="buyer")
        found = re.search(r"address\s+(\S+)", text)
        if found is None:
            raise RuntimeError(f"no address in: {text}")
        address = found.group(1)
        self.run_py("credit", ["-m", "service", "credit", address, str(CREDIT), "--exchange",
                               self.exchange, "--db", str(self.db)], 60)
        balance = get(f"{self.exchange}/api/v1/accounts/{address}")["available"]
        if balance != CREDIT:
            raise RuntimeError(f"the buyer's balance is {balance} sat, not {CREDIT}")
        say(f"buyer {address}: credited {CREDIT:,} sat of play money")
        return address

    def buy(self, still: Path, anim: Path) -> Purchase:
        """One buyer command for both scenes: the still in tiles, then the animation (their
        jobs trade side by side, and the buyer starts up once, as the local render does)."""
        names = {still.stem: "still", anim.stem: "animation"}
        for name in names.values():
            shutil.rmtree(self.out / name, ignore_errors=True)
        started = time.monotonic()
        argv = ["-m", "bitwrk.buy", str(still), "--exchange", self.exchange,
                "--max-price", str(MAX_PRICE), "--timeout", "600", "--allow-local-sellers",
                "--tiles", str(STILL_TILES), "--out", str(self.out / "still"),
                "--then", str(anim), "--frames", f"1-{self.size.frames}", "--tiles", "1",
                "--out", str(self.out / "animation")]
        proc = self.start("buy-both", argv, self.env("buyer"), pipe=True)
        assert proc.proc.stdout is not None
        by_prefix = {s.address[:14]: s for s in self.sellers}
        bought = Purchase(0.0, Counter(), {name: [] for name in names.values()}, 0.0, 0.0)
        name = "still"
        bidding = last = started
        for raw in proc.proc.stdout:
            line = raw.rstrip("\n")
            label, _, rest = line.partition(" ")
            if label in names:
                name, line = names[label], rest
            m = UNIT.match(line)
            if m:
                last = time.monotonic()
                units = bought.units[name] = int(m.group(1))
                seller = by_prefix.get(m.group(5))
                who = f"{seller.label} (CPU {seller.cpu})" if seller else m.group(5)
                if seller:
                    seller.units[name] += 1
                total = int(m.group(2))
                bar = "#" * (24 * units // total)
                what = (f"frame {int(m.group(3))} tile {int(m.group(4)) + 1}" if name == "still"
                        else f"frame {int(m.group(3))}")
                say(f"  {name:<9} [{bar:<24}] {units:>2}/{total}  {what:<16} <- {who},"
                    f" {m.group(6)} sat")
            elif line.startswith("  wrote "):
                bought.files[name].append(Path(line[len("  wrote "):]))
            elif line.startswith("  composed "):
                say(f"  {name:<9} {line.strip()}")
            elif line.startswith("buying "):
                bidding = time.monotonic()
                say(f"  {name:<9} {line}")
            elif line.startswith("done: "):
                say(f"  {name:<9} {line} (stitched and denoised by the buyer)")
            elif line.strip() and not line.startswith("  "):
                say(f"  {name:<9} {line}")
        code = proc.proc.wait()
        bought.seconds = time.monotonic() - started
        proc.stop(signal.SIGKILL, 5)
        if code != 0:
            raise RuntimeError(f"the buyer failed ({code}):\n{proc.output()[-2500:]}")
        bought.prep, bought.trading = bidding - started, last - bidding
        return bought

    def local(self, still: Path, anim: Path) -> tuple[float, float, list[Path]]:
        """(wall, CPU) seconds of one bpy process on one core rendering the same frames."""
        s = self.size
        out = self.out / "local"
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        frames = ",".join(str(f) for f in range(1, s.frames + 1))
        proc = self.start("local", [str(HERE / "local_render.py"), str(SELLERS[0][0]),
                                    str(out), f"{still}:{still_frame(s)}", f"{anim}:{frames}"],
                          self.env("local"), pipe=True)
        assert proc.proc.stdout is not None
        seconds = cpu = 0.0
        done, total = 0, 1 + s.frames
        for raw in proc.proc.stdout:
            if raw.startswith("{"):
                event = json.loads(raw)
                done += 1
                seconds, cpu = float(event["since_start"]), float(event["cpu"])
                bar = "#" * (24 * done // total)
                say(f"  {'local':<9} [{bar:<24}] {done:>2}/{total}  {event['blend']} frame"
                    f" {event['frame']} in {event['seconds']:.1f} s")
        code = proc.proc.wait()
        proc.stop(signal.SIGKILL, 5)
        if code != 0 or done != total:
            raise RuntimeError(f"the local render failed ({code}):\n{proc.output()[-2500:]}")
        return seconds, cpu, sorted(out.iterdir())

    def money(self, buyer: str) -> dict[str, Any]:
        accounts = {s.label: get(f"{self.exchange}/api/v1/accounts/{s.address}")
                    for s in self.sellers}
        bids = get(f"{self.exchange}/api/v1/accounts/{buyer}/bids?limit=500")
        trades = [get(f"{self.exchange}/api/v1/transactions/{b['txid']}")
                  for b in bids if b.get("txid")]
        return {"info": get(f"{self.exchange}/api/v1/info"),
                "buyer": get(f"{self.exchange}/api/v1/accounts/{buyer}"),
                "sellers": accounts, "trades": trades, "bids": bids}

    def stop_all(self, verbose: bool = False) -> list[str]:
        """Stop every process, newest first; sellers and buyers get Ctrl-C (sellers cancel
        their bids and finish the current unit, a buyer cancels its job: refunds)."""
        problems = []
        deadline: float | None = None  # the sellers stop together, within SELLER_GRACE
        for proc in reversed(self.procs):
            seller = proc.name.startswith("seller")
            clean = seller or proc.name.startswith("buy-")
            begun, running = time.monotonic(), proc.alive()
            if seller and deadline is None:  # each may wait out a trade its buyer abandoned
                deadline = time.monotonic() + SELLER_GRACE
                for other in self.procs:
                    if other.name.startswith("seller"):
                        other.signal(signal.SIGINT)
            grace = max(0.1, deadline - time.monotonic()) if deadline and seller else \
                30.0 if clean else 10.0
            code = proc.stop(signal.SIGINT if clean else signal.SIGTERM, grace)
            if verbose and running:
                print(f"  stopped {proc.name} (exit {code}) in {time.monotonic() - begun:.1f} s",
                      file=sys.stderr, flush=True)
            if seller and code not in (0, None):
                problems.append(f"{proc.name} exited with {code}")
            self.pids.update(proc.seen)
        left = stragglers(self.work, self.run_id)
        for pid in left:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        if left:
            problems.append(f"killed stragglers {left}")
        with contextlib.suppress(OSError):
            (self.work / "processes.json").write_text(json.dumps(
                {"pids": sorted(self.pids), "ports": self.ports, "marker": MARKER,
                 "run": self.run_id}))
        return problems


def png_pixels(path: Path) -> tuple[bytes, bytes]:
    """(IHDR, decompressed IDAT) of a PNG: equal for equal images from one encoder."""
    data = path.read_bytes()
    pos, header, stream = 8, b"", b""
    while pos + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + size]
        header = body if kind == b"IHDR" else header
        stream += body if kind == b"IDAT" else b""
        pos += 12 + size
    return header, zlib.decompress(stream)


def same_as_local(demo: Demo, bought: Purchase) -> tuple[int, int]:
    """How many bought frames equal the local render's PNG, of how many."""
    pairs = [(p, demo.out / "local" / f"demo_still_{p.stem.rsplit('_', 1)[1]}.png")
             for p in bought.files["still"] if p.suffix == ".png"]
    pairs += [(p, demo.out / "local" / f"demo_{p.stem.rsplit('_', 1)[1]}.png")
              for p in bought.files["animation"] if p.suffix == ".png"]
    same = 0
    for ours, local in pairs:
        with contextlib.suppress(OSError, zlib.error, struct.error):
            same += png_pixels(ours) == png_pixels(local)
    return same, len(pairs)


def summary(demo: Demo, bought: Purchase, local: tuple[float, float],
            money: dict[str, Any], local_files: list[Path], total: float) -> str:
    s = demo.size
    # On a shared machine other processes may take turns on the local render's core; its CPU
    # time is what it needs on a core of its own (one thread: never more than the wall time).
    wall_local, t_local = local[0], min(local)
    t_swarm = bought.seconds
    efficiency = t_local / (len(demo.sellers) * t_swarm)
    info, buyer = money["info"], money["buyer"]
    finished = [t for t in money["trades"] if t.get("phase") == "FINISHED"]
    paid = sum(int(t["price"]) for t in finished)
    fees = int(info["totals"]["fees"])
    spent = CREDIT - int(buyer["available"]) - int(buyer["blocked"])
    earned = {label: int(a["available"]) + int(a["blocked"])
              for label, a in money["sellers"].items()}
    lines = ["", "=" * 78, "BitWrk demo: summary", "=" * 78]
    w, h = s.width * 3 // 2, s.height * 3 // 2
    lines.append(f"scene       {rel(demo.out / 'scene')}/demo.blend: {s.samples} spp, Cycles CPU,"
                 " denoised once per frame by the buyer")
    lines.append(f"still       frame {still_frame(s)}, {w}x{h} px, {STILL_TILES} tiles"
                 f" -> {rel(demo.out / 'still')}/")
    lines.append(f"animation   frames 1-{s.frames}, {s.width}x{s.height} px, one unit per frame"
                 f" -> {rel(demo.out / 'animation')}/")
    tiles, frames = bought.units["still"], bought.units["animation"]
    lines.append(f"units       {tiles + frames} bought and delivered ({tiles} tiles +"
                 f" {frames} frames), {len(finished)} trades settled")
    lines.append(f"images      {sum(map(len, bought.files.values()))} files (EXR + PNG per frame);"
                 f" local reference in {rel(demo.out / 'local')}/ ({len(local_files)} files)")
    same, frames = same_as_local(demo, bought)
    lines.append(f"exactness   {same} of {frames} bought frames have the very pixels of the local"
                 " render (PNG, byte for byte)")
    lines.append("")
    busy = 0.0
    for seller in demo.sellers:
        units = ", ".join(f"{n} {k}" for k, n in seller.units.items()) or "none"
        rendered = sum(float(x) for x in re.findall(r"rendered for \S+ in ([\d.]+)s",
                                                    seller.proc.output()))
        busy += rendered
        count = sum(seller.units.values())
        at_ask = " = units x ask" if earned[seller.label] == count * seller.price else ""
        lines.append(f"{seller.label} (CPU {seller.cpu}, asks {seller.price} sat, {seller.reach})"
                     f"  {count} units ({units}),"
                     f" rendering {rendered:.1f} s, earned {earned[seller.label]:,} sat{at_ask}")
    if demo.via_relay:
        relayed = [s.label for s in demo.sellers if s.reach == "via relay"]
        lines.append(f"relay       {', '.join(relayed) or 'no seller'} sold via the relay at"
                     f" {demo.relay} (buyers' requests forwarded, ciphertext only)")
    lines.append("")
    lines.append(f"wall time, through the exchange   {t_swarm:6.1f} s  (still and animation,"
                 " one buyer command end to end)")
    prep, trading = bought.prep, bought.trading
    lines.append(f"  of which: buyer prep {prep:.1f} s (probe, pack), trading {trading:.1f} s"
                 f" (bids -> last unit; frames stitched + denoised meanwhile), after the last"
                 f" unit {t_swarm - prep - trading:.1f} s (the last frame, stopping)")
    shared = (f"; {wall_local:.1f} s wall: the core was shared" if wall_local > 1.1 * t_local
              else "")
    lines.append(f"local, one bpy process, one core  {t_local:6.1f} s  (same frames, same"
                 f" settings, import bpy included; CPU time{shared})")
    lines.append(f"parallel efficiency               {efficiency:6.2f}   T_local / (2 x T_swarm)"
                 f" = {t_local:.1f} / (2 x {t_swarm:.1f}); speed-up {t_local / t_swarm:.2f}x")
    # Unlike the efficiency, this does not move with the machine's speed between the two
    # measurements (on a shared VM the local render alone varies by 10 % from run to run).
    lines.append(f"sellers busy                      {busy / (2 * t_swarm):6.2f}   rendering"
                 f" {busy:.1f} s of 2 x {t_swarm:.1f} s (the rest: the buyer's prep, the last"
                 " frame, waits between units)")
    met = "met" if efficiency >= TARGET_EFFICIENCY else "missed"
    lines.append(f"  target >= {TARGET_EFFICIENCY} ({met}); the swarm benchmark's targets:"
                 " `make bench` (python -m bench --only swarm demo)")
    lines.append("")
    lines.append(f"buyer spent    {spent:>9,} sat  = {paid:,} paid to sellers + {fees:,} fees"
                 f" ({info['fee_bps'] / 100:g} % per trade, rounded up)")
    lines.append(f"sellers earned {sum(earned.values()):>9,} sat  ("
                 + ", ".join(f"{k} {v:,}" for k, v in earned.items()) + ")")
    lines.append(f"exchange fees  {fees:>9,} sat")
    balanced = spent == sum(earned.values()) + fees and info["totals"]["blocked"] == 0
    lines.append(f"ledger         {'balanced' if balanced else 'NOT balanced'}: deposits"
                 f" {info['totals']['deposits']:,} = balances {info['totals']['available']:,}"
                 f" + blocked {info['totals']['blocked']:,} + fees {fees:,}")
    lines.append("")
    lines.append(f"demo total     {total:.1f} s")
    lines.append("=" * 78)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "demo-output",
                        help="where the images go (default: demo-output/)")
    parser.add_argument("--work", type=Path, help="work dir (default: a fresh temp dir,"
                        " removed after a successful run); must not exist yet")
    parser.add_argument("--quick", action="store_true", help="a smaller scene (tests)")
    parser.add_argument("--via-relay", action="store_true",
                        help="run the exchange's relay and let seller A sell through it")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started ignoring it
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_signal)
    out = args.out.resolve()
    if args.work is not None:
        work = args.work.resolve()
        work.mkdir(parents=True)
    else:
        work = Path(tempfile.mkdtemp(prefix="bitwrk-demo-"))
    out.mkdir(parents=True, exist_ok=True)
    demo = Demo(work, out, QUICK if args.quick else FULL, args.via_relay)
    ok = False
    code = 1
    try:
        say(f"BitWrk demo; work dir {work}, images to {rel(out)}/")
        say("building the demo scene with bpy ...")
        still_blend, anim_blend = demo.build_scene()
        demo.start_exchange()
        say("starting two headless sellers, one CPU core each ...")
        demo.start_sellers()
        buyer = demo.fund_buyer()
        say(f"buying, in one buyer command, a still in {STILL_TILES} tiles and an animation,"
            f" frames 1-{demo.size.frames}, one unit per frame ...")
        bought = demo.buy(still_blend, anim_blend)
        money = demo.money(buyer)
        say("the same work locally: one bpy process on one core ...")
        t_local, cpu_local, local_files = demo.local(still_blend, anim_blend)
        say("stopping the sellers and the exchange ...")
        problems = demo.stop_all()
        for problem in problems:
            say(f"warning: {problem}")
        print(summary(demo, bought, (t_local, cpu_local), money, local_files,
                      time.monotonic() - T0), flush=True)
        ok, code = True, 0
    except KeyboardInterrupt:
        print("\ninterrupted: stopping everything ...", file=sys.stderr, flush=True)
        code = 130
    except Stop as exc:
        print(f"\n{exc}: stopping everything ...", file=sys.stderr, flush=True)
        code = 143
    except (RuntimeError, OSError, ValueError, KeyError) as exc:
        print(f"\nerror: {exc}", file=sys.stderr, flush=True)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)  # a second Ctrl-C must not cut this short
        demo.stop_all(verbose=not ok)
        if ok and args.work is None:
            shutil.rmtree(work, ignore_errors=True)
        elif not ok:
            print(f"logs kept in {work}", file=sys.stderr, flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
