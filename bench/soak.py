"""Soak with faults: three headless buyers buy an animation in loops from three headless
sellers while a seller, the exchange and a buyer are SIGKILLed and restarted.

Every participant is a real process (``python -m service``, ``python -m bitwrk.seller``,
``python -m bitwrk.buy``) on loopback. The timeline:

1. warm-up: every buyer finishes two jobs (the "before" job times);
2. a seller is SIGKILLed while it holds a unit, and restarted;
3. the exchange is SIGKILLed with jobs in flight, and with it a buyer mid-job, whose loop
   starts its next run at once, into the outage; the exchange stays down ``DOWNTIME``
   seconds and restarts on its store;
4. the load goes on until every buyer has finished a job started after the restart.

``run_soak`` returns what happened (each job's times and exit code, every log, the ledger,
the recovery time from the exchange's restart to the first trade established after it);
``tests/e2e/test_soak.py`` asserts on it, ``python -m bench.soak`` prints the figures.
Needs the ``bpy`` module.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
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

from bench.swarm import node_env, run_py
from bench.table import Row, percentile, print_table
from tools.processes import REPO, Proc, free_port

NAME = "soak"
BUYERS = SELLERS = 3
TIMEOUT_SCALE = 0.25  # bids live 30 s, establishing 15 s, transmitting 30 s, review 225 s
DOWNTIME = 10.0  # seconds the exchange stays dead
JOB_TIMEOUT = 150.0  # each bitwrk.buy's --timeout
EXIT_GRACE = 15.0  # a bitwrk.buy may take this much beyond its --timeout to exit
CREDIT = 2_000_000
MAX_PRICE = 100
TARGET_RECOVERY = 5.0  # seconds from the exchange's restart to the first trade
WARM_UP_JOBS = 2  # per buyer before the faults: the "before" median has 6 jobs


def log(message: str) -> None:
    print(f"[bench soak] {message}", file=sys.stderr, flush=True)


@dataclass
class Job:
    buyer: int
    run: int
    out: Path
    started: float
    ended: float | None = None
    code: int | None = None
    killed: bool = False  # SIGKILLed on purpose
    overran: bool = False  # still running EXIT_GRACE after its --timeout: killed
    output: str = ""

    @property
    def seconds(self) -> float | None:
        return None if self.ended is None else self.ended - self.started


@dataclass
class Soak:
    jobs: list[Job] = field(default_factory=list)
    logs: dict[str, str] = field(default_factory=dict)  # every process's output by name
    sellers_alive: list[bool] = field(default_factory=list)  # just before the clean stop
    seller_codes: list[int | None] = field(default_factory=list)  # after SIGINT
    t_faults: float = 0.0  # the seller's SIGKILL
    t_exchange_killed: float = 0.0
    t_exchange_ready: float = 0.0
    t_faults_over: float = 0.0  # the exchange is back
    recovery: float | None = None  # exchange ready -> first trade established after it
    in_flight: list[Job] = field(default_factory=list)  # running across the outage
    killed_next: Job | None = None  # the killed buyer's next run, started in the outage
    totals: dict[str, Any] = field(default_factory=dict)
    blocked: dict[str, int] = field(default_factory=dict)  # per buyer, after the last job
    seconds: float = 0.0  # the load, first job to last

    def before(self) -> list[float]:
        return [j.seconds for j in self.jobs if j.code == 0 and j.ended is not None
                and j.seconds is not None and j.ended < self.t_faults]

    def after(self) -> list[float]:
        return [j.seconds for j in self.jobs if j.code == 0 and j.seconds is not None
                and j.started > self.t_faults_over]


class Exchange:
    """The exchange process; SIGKILL and restart on the same store and port."""

    def __init__(self, work: Path) -> None:
        self.dir = work / "exchange"
        self.dir.mkdir(parents=True)
        self.db = self.dir / "exchange.sqlite3"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.procs: list[Proc] = []

    def start(self) -> float:
        n = len(self.procs)
        self.procs.append(Proc(f"exchange-{n}", [
            sys.executable, "-m", "service", "--db", str(self.db), "--host", "127.0.0.1",
            "--port", str(self.port), "--timeout-scale", repr(TIMEOUT_SCALE)],
            node_env(self.dir), self.dir / f"server-{n}.log"))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), \
                    urllib.request.urlopen(self.url + "/api/v1/info", timeout=2):
                return time.time()
            if not self.procs[-1].alive():
                break
            time.sleep(0.05)
        raise RuntimeError(f"exchange did not come up: {self.procs[-1].output()[-1500:]}")

    def kill(self) -> None:
        self.procs[-1].stop(signal.SIGKILL)

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=10) as resp:
            return json.loads(resp.read())


class Seller:
    def __init__(self, work: Path, index: int, url: str) -> None:
        self.index = index
        self.base = work / f"seller{index}"
        self.env = node_env(self.base)
        self.url = url
        self.procs: list[Proc] = []

    def start(self) -> None:
        cpus = sorted(os.sched_getaffinity(0))
        n = len(self.procs)
        self.procs.append(Proc(f"seller{self.index}-{n}", [
            sys.executable, "-m", "bitwrk.seller", "--exchange", self.url, "--cpus",
            str(cpus[self.index % len(cpus)]), "--min-price", str(10 + self.index),
            "--classes", "512M", "--status-port", "-1"], self.env,
            self.base / f"out-{n}.log"))

    def ready(self) -> None:
        self.procs[-1].wait_for(r"seller \S+ on http", 120)

    @property
    def proc(self) -> Proc:
        return self.procs[-1]


class BuyerLoop(threading.Thread):
    """Runs ``bitwrk.buy`` again and again until told to stop."""

    def __init__(self, index: int, work: Path, url: str, blend: Path, soak: Soak,
                 stop: threading.Event) -> None:
        super().__init__(name=f"buyer{index}", daemon=True)
        self.index = index
        self.base = work / f"buyer{index}"
        self.env = node_env(self.base)
        self.url, self.blend, self.soak, self.stop = url, blend, soak, stop
        self.current: tuple[Job, Proc] | None = None
        self.lock = threading.Lock()

    def address(self) -> str:
        out = run_py(["-m", "bitwrk", "account"], self.env, 60)
        found = re.search(r"address\s+(\S+)", out)
        assert found, out
        return found.group(1)

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            self.one(n)
            n += 1

    def one(self, n: int) -> None:
        out = self.base / f"out{n}"
        job = Job(self.index, n, out, time.time())
        proc = Proc(f"buyer{self.index}-{n}", [
            sys.executable, "-m", "bitwrk.buy", str(self.blend), "--exchange", self.url,
            "--max-price", str(MAX_PRICE), "--frames", "1-3", "--tiles", "2",
            "--concurrency", "2", "--out", str(out), "--timeout", repr(JOB_TIMEOUT),
            "--allow-local-sellers"],
            self.env, self.base / f"run{n}.log")
        with self.lock:
            self.current = (job, proc)
            self.soak.jobs.append(job)
        try:
            proc.proc.wait(JOB_TIMEOUT + EXIT_GRACE)
        except subprocess.TimeoutExpired:  # overran its timeout: recorded, then killed
            job.overran = True
        job.ended = time.time()
        proc.stop(signal.SIGKILL, grace=5)
        job.code = proc.proc.returncode
        job.output = proc.output()
        with self.lock:
            self.current = None

    def wait_trading(self, timeout: float) -> tuple[Job, Proc]:
        """The running job once it is buying (its units are on the exchange)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                current = self.current
            if current is not None and re.search(r"buying \d+ units", current[1].output()):
                return current
            time.sleep(0.05)
        raise RuntimeError(f"buyer{self.index}: no job started buying")

    def kill(self, current: tuple[Job, Proc]) -> None:
        current[0].killed = True
        with contextlib.suppress(ProcessLookupError):
            os.killpg(current[1].pid, signal.SIGKILL)


def wait_until(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.1)


def credit(ex: Exchange, address: str) -> None:
    run_py(["-m", "service", "credit", address, str(CREDIT), "--exchange", ex.url, "--db",
            str(ex.db)], node_env(ex.dir), 60)


def recovery_seconds(db: Path, ready: float) -> float | None:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        row = conn.execute("SELECT MIN(matched) FROM transactions WHERE matched >= ?",
                           (ready,)).fetchone()
    finally:
        conn.close()
    return None if row[0] is None else float(row[0]) - ready


def finished_after(soak: Soak, buyer: int, t: float, count: int = 1) -> bool:
    return sum(j.buyer == buyer and j.code == 0 and j.started > t
               for j in soak.jobs) >= count


def run_soak(work: Path, blend: Path, downtime: float = DOWNTIME) -> Soak:  # noqa: C901
    """The whole scenario; every process it started is gone when it returns."""
    soak = Soak()
    ex = Exchange(work)
    sellers: list[Seller] = []
    loops: list[BuyerLoop] = []
    stop = threading.Event()
    try:
        ex.start()
        sellers = [Seller(work, i, ex.url) for i in range(SELLERS)]
        for s in sellers:
            s.start()
        for s in sellers:
            s.ready()
        loops = [BuyerLoop(i, work, ex.url, blend, soak, stop) for i in range(BUYERS)]
        for loop in loops:
            credit(ex, loop.address())
        t0 = time.time()
        log("load: 3 buyers looping over a 3-frame animation (6 units), 3 sellers")
        for loop in loops:
            loop.start()
        wait_until(lambda: all(finished_after(soak, i, 0, WARM_UP_JOBS)
                               for i in range(BUYERS)), 240, "warm-up jobs from every buyer")

        # 1. a seller dies holding a unit, and comes back
        victim = sellers[0]
        seen = len(re.findall(r"tx \d+ started", victim.proc.output()))
        wait_until(lambda: len(re.findall(r"tx \d+ started", victim.proc.output())) > seen,
                   60, "seller0 taking a unit")
        soak.t_faults = time.time()
        victim.proc.stop(signal.SIGKILL)
        log("seller0 SIGKILLed mid-unit; restarting it")
        victim.start()
        victim.ready()

        # 2. the exchange dies; a buyer dies mid-job with it, and its loop starts the next
        # run at once, into the outage; the exchange comes back on its store
        busy = loops[0].wait_trading(120)
        soak.t_exchange_killed = time.time()
        ex.kill()
        soak.in_flight = [c[0] for c in (lp.current for lp in loops[1:]) if c is not None]
        loops[0].kill(busy)
        killed = busy[0]
        log(f"exchange SIGKILLed with {len(soak.in_flight) + 1} jobs in flight, and buyer0"
            f" mid-job; exchange down {downtime:.0f} s")
        time.sleep(downtime)
        soak.t_exchange_ready = ex.start()
        soak.t_faults_over = soak.t_exchange_ready
        log("exchange back")

        wait_until(lambda: all(finished_after(soak, i, soak.t_faults_over)
                               for i in range(BUYERS)), 240, "a job after the faults")
        stop.set()
        for loop in loops:
            loop.join(JOB_TIMEOUT + EXIT_GRACE + 30)
        soak.seconds = time.time() - t0
        soak.killed_next = next((j for j in soak.jobs if j.buyer == 0
                                 and j.run == killed.run + 1), None)
        soak.recovery = recovery_seconds(ex.db, soak.t_exchange_ready)
        settle(ex, loops, soak)
        soak.sellers_alive = [s.proc.alive() for s in sellers]
        soak.seller_codes = [s.proc.stop(signal.SIGINT, grace=90) for s in sellers]
    finally:
        stop.set()
        for loop in loops:
            with loop.lock:
                current = loop.current
            if current is not None:
                current[1].stop(signal.SIGKILL, grace=1)
        for s in sellers:
            for p in s.procs:
                p.stop(signal.SIGKILL, grace=1)
        for p in ex.procs:
            p.stop(signal.SIGTERM)
        for p in [*ex.procs, *(p for s in sellers for p in s.procs)]:
            soak.logs[p.name] = p.output()
        for j in soak.jobs:
            soak.logs[f"buyer{j.buyer}-{j.run}"] = j.output
    return soak


def settle(ex: Exchange, loops: list[BuyerLoop], soak: Soak) -> None:
    """Wait (bounded) until no buyer has funds blocked, then read the ledger."""
    addresses = {f"buyer{lp.index}": lp.address() for lp in loops}

    def blocked() -> dict[str, int]:
        return {n: int(ex.get(f"/api/v1/accounts/{a}")["blocked"])
                for n, a in addresses.items()}

    deadline = time.monotonic() + 60
    soak.blocked = blocked()
    while any(soak.blocked.values()) and time.monotonic() < deadline:
        time.sleep(0.5)
        soak.blocked = blocked()
    soak.totals = ex.get("/api/v1/info")["totals"]


def rows(soak: Soak) -> list[Row]:
    rec = soak.recovery
    out = [Row(NAME, "exchange restart -> first trade established",
               None if rec is None else rec * 1000, "ms", f"< {TARGET_RECOVERY * 1000:.0f} ms",
               rec is not None and rec < TARGET_RECOVERY)]
    for label, values in (("before the faults", soak.before()),
                          ("started after the faults", soak.after())):
        for q in (50, 90, 100):
            out.append(Row(NAME, f"job time p{q}, {label}", percentile(values, q), "s",
                           note=f"n={len(values)}"))
    before, after = soak.before(), soak.after()
    ratio = max(after) / statistics.median(before) if before and after else None
    out.append(Row(NAME, "slowest job after the faults / median before", ratio, "x",
                   "<= 3", ratio is not None and ratio <= 3))
    failed = [j for j in soak.jobs if j.code != 0 and not j.killed]
    out.append(Row(NAME, "jobs failed (not killed on purpose)", len(failed), "", "0",
                   not failed, note=f"of {len(soak.jobs)}"))
    out.append(Row(NAME, "load duration", soak.seconds, "s"))
    return out


def build_scene(work: Path) -> Path:
    run_py([str(REPO / "tests/data/scenes/make_scene.py"), str(work / "job")],
           node_env(work / "build"), 120)
    return work / "job" / "scene.blend"


def run(downtime: float = DOWNTIME) -> list[Row]:
    with tempfile.TemporaryDirectory(prefix="bitwrk-soak-") as tmp:
        work = Path(tmp)
        soak = run_soak(work, build_scene(work), downtime)
        for j in soak.jobs:
            log(f"buyer{j.buyer} run {j.run}: exit {j.code} in {j.seconds or 0:.1f} s"
                + (" (killed)" if j.killed else "")
                + (" (across the outage)" if j in soak.in_flight else ""))
        return rows(soak)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    p.add_argument("--downtime", type=float, default=DOWNTIME,
                   help=f"seconds the exchange stays dead (default {DOWNTIME:.0f})")
    args = p.parse_args(argv)
    print_table(run(args.downtime))
    return 0


if __name__ == "__main__":
    sys.exit(main())
