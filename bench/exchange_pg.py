"""The exchange on PostgreSQL beside SQLite, in one run (issue 15).

Three set-ups against real processes on loopback, each on a fresh store: one exchange
process on SQLite (the default), one on PostgreSQL, two on the same PostgreSQL (each
participant talks to one of them, as behind a sticky load balancer). PostgreSQL is Debian's
server started in a temp dir (fsync on). The compared set-ups run with
``synchronous_commit = off``: a commit survives the exchange process's SIGKILL (PostgreSQL
has it) and may be lost only if PostgreSQL or the machine crashes within a fraction of a
second — the guarantee SQLite's WAL with ``synchronous=NORMAL`` gives; one more row shows
one process with an fsync per group commit (synchronous_commit on, the default). For
each: signed bids/s in a closed loop, bid latency p50/p99 at a fixed 500 bids/s (open loop),
and match -> event p99 — with two processes every listener is subscribed on the *other*
process, so that figure includes the LISTEN/NOTIFY relay. Nothing is pinned: the servers,
PostgreSQL and the load generator share the machine's cores, and the CPU each used during
the closed loop is printed (the CPU budget), which says what limits the figures.

``python -m bench.exchange_pg [--quick] [--strict]``.
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from bench.cli import arguments, exit_status
from bench.exchange import (
    NETWORK,
    THROUGHPUT_ARTICLES,
    Arrival,
    Participant,
    Server,
    Tally,
    _child_env,
    closed_loop,
    cpu_seconds,
    credit_buyers,
    listen,
    machine_busy_seconds,
    make_participants,
    open_loop,
)
from bench.table import Row, percentile, print_table
from bitwrk.identity import load_or_create_key
from tools.pgserver import PgServer
from tools.processes import descendants

NAME = "exchange-pg"
TARGET_PG_SHARE = 0.70  # one PostgreSQL process >= 70 % of SQLite's bids/s
TARGET_SCALE = 1.6  # two processes >= 1.6x one
LATENCY_ARTICLES = tuple(f"net.bitwrk/blender/4.5/{c}" for c in ("512M", "2G", "8G"))
WARMUP_ARTICLES = ("net.bitwrk/blender/4.4/2G",)
EVENT_DRAIN_S = 5.0


@dataclass(frozen=True)
class Settings:
    participants: int = 48
    bids_each: int = 80  # 3,840 timed bids per set-up
    rate: float = 500.0
    latency_seconds: float = 6.0
    latency_participants: int = 40


DEFAULT = Settings()
QUICK = Settings(participants=12, bids_each=10, latency_seconds=1.5, latency_participants=12)


def log(message: str) -> None:
    print(f"[bench {NAME}] {message}", file=sys.stderr, flush=True)


class StoreServer(Server):
    """``python -m service`` on a given store (SQLite file or PostgreSQL URL), unpinned."""

    def __init__(self, workdir: Path, store: str, key_path: Path) -> None:
        super().__init__(workdir)
        self.store = store
        self.key_path = key_path

    def start(self) -> None:
        import subprocess

        cmd = [sys.executable, "-m", "service", "--db", self.store, "--host", "127.0.0.1",
               "--port", str(self.port), "--network", NETWORK, "--operator-key",
               str(self.key_path),
               # nobody sends endpoints here: a slow run must not bar the sellers
               "--bar-after-misses", "1000000"]
        self.workdir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as out:
            self.proc = subprocess.Popen(cmd, cwd=Path(__file__).resolve().parents[1],
                                         env=_child_env(), stdout=out,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


@dataclass
class Outcome:
    label: str
    bids_per_s: float = 0.0
    accepted: int = 0
    rejected: int = 0
    p50_ms: float | None = None
    p99_ms: float | None = None
    event_p99_ms: float | None = None
    events: str = ""
    cpu: dict[str, float] = field(default_factory=dict)  # role -> share of one core


def _postgres_cpu(pg: PgServer | None) -> float:
    if pg is None:
        return 0.0
    try:
        pid = int((pg.data / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0.0
    return sum(cpu_seconds(p) or 0.0 for p in [pid, *descendants(pid)])


def _spread(people: list[Participant], n: int) -> list[list[Participant]]:
    return [people[k::n] for k in range(n)]


async def _closed(session: aiohttp.ClientSession, servers: list[StoreServer],
                  people: list[Participant]) -> tuple[Tally, float]:
    groups = _spread(people, len(servers))
    start = time.perf_counter()
    tallies = await asyncio.gather(*(closed_loop(session, s.url, g)
                                     for s, g in zip(servers, groups, strict=True)))
    elapsed = time.perf_counter() - start
    total = Tally()
    for tally, _ in tallies:
        total.latencies += tally.latencies
        total.statuses.update(tally.statuses)
        total.errors.update(tally.errors)
        total.trades += tally.trades
    return total, elapsed


async def _measure(servers: list[StoreServer], pg: PgServer | None, settings: Settings,
                   out: Outcome) -> None:
    timeout = aiohttp.ClientTimeout(total=60, connect=10)
    async with aiohttp.ClientSession(timeout=timeout,
                                     connector=aiohttp.TCPConnector(limit=0)) as session, \
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as sse:
        infos = [await s.wait_ready(session) for s in servers]
        exchange = infos[0]["exchange"]
        operator = load_or_create_key(servers[0].key_path, NETWORK)
        rng = random.Random(15)
        s = settings
        warm = make_participants(8, 10, WARMUP_ARTICLES, exchange, rng)
        bulk = make_participants(s.participants, s.bids_each, THROUGHPUT_ARTICLES, exchange,
                                 rng)
        due = round(s.rate * s.latency_seconds)
        listeners = make_participants(s.latency_participants,
                                      -(-due // s.latency_participants), LATENCY_ARTICLES,
                                      exchange, rng)
        for i, p in enumerate(listeners):
            p.bodies = p.bodies[: len(range(i, due, s.latency_participants))]
        await credit_buyers(servers[0].url, operator, warm + bulk + listeners, session)
        await _closed(session, servers, warm)

        pids = [s.pid for s in servers]
        busy0, own0 = machine_busy_seconds(), time.process_time()
        srv0, pg0 = sum(cpu_seconds(p) or 0.0 for p in pids), _postgres_cpu(pg)
        tally, elapsed = await _closed(session, servers, bulk)
        busy1, own1 = machine_busy_seconds(), time.process_time()
        srv1, pg1 = sum(cpu_seconds(p) or 0.0 for p in pids), _postgres_cpu(pg)
        out.bids_per_s, out.accepted, out.rejected = (tally.accepted / elapsed, tally.accepted,
                                                      tally.rejected)
        if tally.errors:
            log(f"{out.label}: refused {dict(tally.errors.most_common(3))}")
        out.cpu = {"exchange": (srv1 - srv0) / elapsed, "postgres": (pg1 - pg0) / elapsed,
                   "load generator": (own1 - own0) / elapsed}
        if busy0 is not None and busy1 is not None:
            out.cpu["machine"] = (busy1 - busy0) / elapsed

        # latency at a fixed rate; each listener subscribed on the next process
        arrivals: dict[int, Arrival] = {}
        groups = _spread(listeners, len(servers))
        readies = [asyncio.Event() for _ in listeners]
        tasks = []
        for k, group in enumerate(groups):
            where = servers[(k + 1) % len(servers)].url
            for p in group:
                ready = readies[listeners.index(p)]
                tasks.append(asyncio.create_task(listen(where, sse, p.key, ready, arrivals)))
        try:
            await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), 30)
            results = await asyncio.gather(*(
                open_loop(session, srv.url, g, s.rate * len(g) / len(listeners))
                for srv, g in zip(servers, groups, strict=True)))
            latencies = [x for tally, _ in results for x in tally.latencies]
            expected = 2 * sum(tally.trades for tally, _ in results)
            deadline = time.monotonic() + EVENT_DRAIN_S
            while len(arrivals) < expected and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        out.p50_ms = _ms(percentile(latencies, 50))
        out.p99_ms = _ms(percentile(latencies, 99))
        event_ms = [(a.wall - float(a.bid["closed"])) * 1000 for a in arrivals.values()
                    if a.bid.get("closed") is not None]
        out.event_p99_ms = percentile(event_ms, 99)
        out.events = f"{len(arrivals)}/{expected} events"


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


def run_setup(label: str, store: str, processes: int, pg: PgServer | None,
              settings: Settings, root: Path) -> Outcome:
    out = Outcome(label)
    key_path = root / "operator.wif"
    load_or_create_key(key_path, NETWORK)
    servers = [StoreServer(root / f"p{i}", store, key_path) for i in range(processes)]
    try:
        for server in servers:  # one at a time: the first migrates a fresh store
            server.start()
            asyncio.run(_ready(server))
        asyncio.run(_measure(servers, pg, settings, out))
    finally:
        for server in servers:
            server.stop()
    log(f"{label}: {out.bids_per_s:.0f} bids/s, p99 {out.p99_ms} ms, cpu {out.cpu}")
    return out


async def _ready(server: StoreServer) -> None:
    async with aiohttp.ClientSession() as session:
        await server.wait_ready(session)


def measure(settings: Settings) -> list[Outcome]:
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="bitwrk-bench-pg-") as tmp:
        root = Path(tmp)
        log("SQLite, one process ...")
        outcomes.append(run_setup("sqlite, 1 process", str(root / "sqlite" / "ex.sqlite3"), 1,
                                  None, settings, root / "sqlite"))
        pg = PgServer(durable=True)
        try:
            for name in ("bench0", "bench1", "bench2"):
                pg.sql(f"CREATE DATABASE {name}")
            for name in ("bench1", "bench2"):  # the durability SQLite's default has
                pg.sql(f"ALTER DATABASE {name} SET synchronous_commit = off")
            log("PostgreSQL, one process, synchronous_commit on ...")
            outcomes.append(run_setup("postgresql fsync per commit, 1 process",
                                      pg.url_of("bench0"), 1, pg, settings, root / "pg0"))
            log("PostgreSQL, one process ...")
            outcomes.append(run_setup("postgresql, 1 process", pg.url_of("bench1"), 1, pg,
                                      settings, root / "pg1"))
            log("PostgreSQL, two processes ...")
            outcomes.append(run_setup("postgresql, 2 processes", pg.url_of("bench2"), 2, pg,
                                      settings, root / "pg2"))
        finally:
            pg.stop()
    return outcomes


def rows(outcomes: list[Outcome]) -> list[Row]:
    out: list[Row] = []
    cores = len(os.sched_getaffinity(0))
    lite, _, pg1, pg2 = outcomes
    for o in outcomes:
        target, ok = "", None
        if o is pg1:
            target = f">= {TARGET_PG_SHARE:.0%} of sqlite"
            ok = o.bids_per_s >= TARGET_PG_SHARE * lite.bids_per_s
        elif o is pg2:
            target = f">= {TARGET_SCALE}x 1 process"
            ok = o.bids_per_s >= TARGET_SCALE * pg1.bids_per_s
        out.append(Row(NAME, f"{o.label}: signed bids/s", o.bids_per_s, "bids/s", target, ok,
                       f"{o.accepted} bids, {o.rejected} refused"))
        out.append(Row(NAME, f"  {o.label}: bid p99 at 500 bids/s", o.p99_ms, "ms",
                       note=f"p50 {o.p50_ms or 0:.1f} ms"))
        out.append(Row(NAME, f"  {o.label}: match -> event p99", o.event_p99_ms, "ms",
                       note=o.events + (", listeners on the other process"
                                        if o is pg2 else "")))
        budget = ", ".join(f"{k} {100 * v:.0f} %" for k, v in o.cpu.items())
        out.append(Row(NAME, f"  {o.label}: CPU during the closed loop",
                       100 * o.cpu.get("machine", 0.0), "%",
                       note=f"of one core; {budget}; {cores} cores"))
    out.append(Row(NAME, "postgresql 1 process / sqlite", pg1.bids_per_s / lite.bids_per_s
                   if lite.bids_per_s else None, "x"))
    out.append(Row(NAME, "postgresql 2 processes / 1 process", pg2.bids_per_s / pg1.bids_per_s
                   if pg1.bids_per_s else None, "x",
                   note=f"{cores} cores shared by exchange, PostgreSQL and load generator"))
    return out


def collect(quick: bool = False) -> list[Row]:
    return rows(measure(QUICK if quick else DEFAULT))


def main(argv: list[str] | None = None) -> int:
    args = arguments("bench.exchange_pg", __doc__).parse_args(argv)
    table = collect(quick=args.quick)
    print_table(table)
    return exit_status(table, args.strict)


if __name__ == "__main__":
    sys.exit(main())
