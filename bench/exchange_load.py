"""Exchange under load it does not control (issue 11): idle subscribers and a big ledger.

Against a real ``python -m service`` on loopback (server pinned to CPU 0, this process to
CPU 1, as in bench/exchange.py, whose helpers this reuses):

1. subscribers: the open-loop latency run (500 bids/s) without subscribers, then again
   with 2,000 idle public ``/events`` subscribers connected (each drains what it gets and
   does nothing else); target: p99 with them < 2× the p99 without;
2. ledger size: closed-loop accepted bids/s on an empty store, then on a store holding
   10^6 movements (inserted before the server starts), with ``/info`` polled every 20 ms
   during both runs; target: within 10 % of the empty store.

``python -m bench.exchange_load [--quick] [--strict]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import resource
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from bench.exchange import (
    CLIENT_CPU,
    LATENCY_ARTICLES,
    REQUEST_TIMEOUT_S,
    THROUGHPUT_ARTICLES,
    Server,
    can_pin,
    closed_loop,
    cpu_seconds,
    credit_buyers,
    make_participants,
    open_loop,
    pin_self,
    pinned,
)
from bench.table import Row, percentile, print_table
from bitwrk.identity import load_or_create_key

NAME = "exchange-load"
TARGET_P99_RATIO = 2.0
TARGET_LEDGER_RATIO = 0.9
SERVER_ARGS = ("--max-connections-per-ip", "10000", "--max-connections", "10000",
               "--max-streams", "10000")


@dataclass(frozen=True)
class Settings:
    subscribers: int = 2000
    rate: float = 500.0
    latency_seconds: float = 10.0
    participants: int = 50
    movements: int = 1_000_000
    throughput_participants: int = 64
    throughput_bids: int = 120  # per participant


DEFAULT = Settings()
QUICK = Settings(subscribers=200, latency_seconds=2.0, movements=50_000,
                 throughput_bids=10)


def _raise_fd_limit() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 65536 if hard == resource.RLIM_INFINITY else hard
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def log(message: str) -> None:
    print(f"[bench {NAME}] {message}", file=sys.stderr, flush=True)


def prefill(db_path: Path, count: int) -> None:
    """``count`` movements (block/release pairs of one account: balances end unchanged)
    written straight into a migrated store, with the running totals to match."""
    from service import db

    conn = db.connect(db_path)
    account, now = "mbench1111111111111111111111111111", time.time()
    rows = ((now, "bid" if i % 2 == 0 else "bid_release", account,
             -1 if i % 2 == 0 else 1, account, 1 if i % 2 == 0 else -1)
            for i in range(count))
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO movements(time, kind, available_account, available_delta,"
        " blocked_account, blocked_delta, fee_delta, world_delta) VALUES (?,?,?,?,?,?,0,0)",
        rows)
    conn.execute("INSERT OR IGNORE INTO accounts(address, created) VALUES (?, ?)",
                 (account, now))
    for kind, sign in (("bid", -1), ("bid_release", 1)):
        n = (count + (1 if kind == "bid" else 0)) // 2
        conn.execute("INSERT OR REPLACE INTO ledger_totals(kind, shard, available, blocked,"
                     " fee, world) VALUES (?, 0, ?, ?, 0, 0)",
                     (kind, sign * n, -sign * n))
    conn.execute("COMMIT")
    conn.close()


async def _subscriber(url: str, ready: asyncio.Event) -> None:
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(b"GET /api/v1/events HTTP/1.1\r\nHost: bench\r\n\r\n")
        await reader.readuntil(b"event: hello")
        ready.set()
        while await reader.read(65536):
            pass
    finally:
        writer.close()


async def _start_subscribers(url: str, count: int) -> asyncio.subprocess.Process:
    """A separate process holds the subscribers, so their reading never delays the bid
    sender's event loop (that would count against the server's latency)."""
    cmd = pinned([sys.executable, "-m", "bench.exchange_load", "--subscribers-worker", url,
                  str(count)],
                 CLIENT_CPU)  # off the server's CPU
    worker = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.PIPE,
                                                  cwd=Path(__file__).resolve().parents[1])
    assert worker.stdout is not None
    line = await asyncio.wait_for(worker.stdout.readline(), 180)
    if line.strip() != b"ready":
        raise RuntimeError(f"subscriber process failed: {line!r}")
    return worker


async def _hold_subscribers(url: str, count: int) -> None:
    readies = [asyncio.Event() for _ in range(count)]
    tasks = [asyncio.create_task(_subscriber(url, r)) for r in readies]
    await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), 120)
    print("ready", flush=True)
    await asyncio.gather(*tasks)


async def _latency_p99(server: Server, session: aiohttp.ClientSession, s: Settings,
                       exchange: str, rng: random.Random, cpu_ms: dict[int, float]
                       ) -> float | None:
    """The open-loop run's p99 (s); the server's CPU µs per accepted bid into ``cpu_ms``."""
    total = round(s.rate * s.latency_seconds)
    people = make_participants(s.participants, -(-total // s.participants), LATENCY_ARTICLES,
                               exchange, rng)
    operator = load_or_create_key(server.workdir / "operator.wif", "regtest")
    await credit_buyers(server.url, operator, people, session)
    cpu0 = cpu_seconds(server.pid)
    tally, _ = await open_loop(session, server.url, people, s.rate)
    cpu1 = cpu_seconds(server.pid)
    if cpu0 is not None and cpu1 is not None and tally.accepted:
        cpu_ms[len(cpu_ms)] = (cpu1 - cpu0) * 1e6 / tally.accepted
    return percentile(tally.latencies, 99)


async def _subscribers_phase(server: Server, s: Settings, out: dict[str, float]) -> None:
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S, connect=10)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        info = await server.wait_ready(session)
        rng = random.Random(11)
        log(f"latency at {s.rate:.0f} bids/s without subscribers ...")
        cpu_ms: dict[int, float] = {}
        base = await _latency_p99(server, session, s, info["exchange"], rng, cpu_ms)
        log(f"connecting {s.subscribers} idle public subscribers (another process) ...")
        worker = await _start_subscribers(server.url, s.subscribers)
        try:
            log(f"latency at {s.rate:.0f} bids/s with {s.subscribers} subscribers ...")
            loaded = await _latency_p99(server, session, s, info["exchange"], rng, cpu_ms)
            alive = s.subscribers if worker.returncode is None else 0
        finally:
            if worker.returncode is None:
                worker.terminate()
            await worker.wait()
    if base is not None and loaded is not None:
        out.update(p99_base=base * 1000, p99_loaded=loaded * 1000, alive=alive)
    out.update({f"cpu_ms_{i}": v for i, v in cpu_ms.items()})


async def _poll_info(session: aiohttp.ClientSession, url: str, stop: asyncio.Event) -> int:
    polls = 0
    while not stop.is_set():
        async with session.get(url + "/api/v1/info") as resp:
            await resp.read()
        polls += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.02)
    return polls


async def _throughput(server: Server, s: Settings) -> tuple[float, int, float]:
    """Accepted bids/s, /info polls, server CPU µs per accepted bid."""
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S, connect=10)
    async with aiohttp.ClientSession(timeout=timeout,
                                     connector=aiohttp.TCPConnector(limit=0)) as session:
        info = await server.wait_ready(session)
        people = make_participants(s.throughput_participants, s.throughput_bids,
                                   THROUGHPUT_ARTICLES, info["exchange"], random.Random(7))
        operator = load_or_create_key(server.workdir / "operator.wif", "regtest")
        await credit_buyers(server.url, operator, people, session)
        stop = asyncio.Event()
        poller = asyncio.create_task(_poll_info(session, server.url, stop))
        cpu0 = cpu_seconds(server.pid)
        tally, seconds = await closed_loop(session, server.url, people)
        cpu1 = cpu_seconds(server.pid)
        stop.set()
        polls = await poller
    cpu = (cpu1 - cpu0) * 1e6 / max(1, tally.accepted) if cpu0 and cpu1 else 0.0
    return tally.accepted / seconds, polls, cpu


def _run_server(workdir: Path) -> Server:
    server = Server(workdir, extra_args=SERVER_ARGS)
    server.start()
    return server


def measure(s: Settings) -> dict[str, float]:
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bitwrk-bench-load-") as tmp, pin_self(CLIENT_CPU):
        for name in ("subscribers", "empty", "big"):
            workdir = Path(tmp) / name
            workdir.mkdir()
            if name == "big":
                log(f"writing {s.movements:,} movements into the store ...")
                prefill(workdir / "exchange.sqlite3", s.movements)
            server = _run_server(workdir)
            try:
                if name == "subscribers":
                    asyncio.run(_subscribers_phase(server, s, out))
                else:
                    log(f"throughput, {name} ledger ...")
                    rate, polls, cpu = asyncio.run(_throughput(server, s))
                    out[f"rate_{name}"], out[f"polls_{name}"] = rate, polls
                    out[f"cpu_ms_{name}"] = cpu
            finally:
                server.stop()
    return out


def rows(res: dict[str, float], s: Settings) -> list[Row]:
    out: list[Row] = []
    note = "" if can_pin() else "UNPINNED"

    def add(metric: str, value: float | None, unit: str = "", target: str = "",
            ok: bool | None = None, extra: str = "") -> None:
        out.append(Row(NAME, metric, value, unit, target, ok, ", ".join(
            x for x in (extra, note) if x)))

    base, loaded = res.get("p99_base"), res.get("p99_loaded")
    add(f"bid p99 at {s.rate:.0f}/s, no subscribers", base, "ms")
    add(f"bid p99 at {s.rate:.0f}/s, {s.subscribers} idle subscribers", loaded, "ms",
        extra=f"{int(res.get('alive', 0))} still connected at the end")
    ratio = loaded / base if base and loaded else None
    for i, label in ((0, "no subscribers"), (1, f"{s.subscribers} subscribers")):
        add(f"  server CPU per bid, {label}", res.get(f"cpu_ms_{i}"), "µs",
            extra="robust to a shared machine, unlike latency")
    add("  p99 ratio with/without subscribers", ratio, "x", f"< {TARGET_P99_RATIO:g}",
        None if ratio is None else ratio < TARGET_P99_RATIO)
    empty, big = res.get("rate_empty"), res.get("rate_big")
    add("accepted bids/s, empty ledger", empty, "bids/s",
        extra=f"/info polled {int(res.get('polls_empty', 0))}x")
    add(f"accepted bids/s, {s.movements:,} movements", big, "bids/s",
        extra=f"/info polled {int(res.get('polls_big', 0))}x")
    for name in ("empty", "big"):
        add(f"  server CPU per bid, {name} ledger", res.get(f"cpu_ms_{name}"), "µs")
    share = big / empty if empty and big else None
    add("  big / empty ledger", share, "x", f">= {TARGET_LEDGER_RATIO:g}",
        None if share is None else share >= TARGET_LEDGER_RATIO)
    return out


def collect(quick: bool = False) -> list[Row]:
    s = QUICK if quick else DEFAULT
    return rows(measure(s), s)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--quick", action="store_true", help="short run (smoke test)")
    p.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    p.add_argument("--subscribers-worker", nargs=2, metavar=("URL", "N"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.subscribers_worker:
        _raise_fd_limit()
        asyncio.run(_hold_subscribers(args.subscribers_worker[0],
                                      int(args.subscribers_worker[1])))
        return 0
    table = collect(quick=args.quick)
    print_table(table)
    return 1 if args.strict and any(r.ok is False for r in table) else 0


if __name__ == "__main__":
    sys.exit(main())
