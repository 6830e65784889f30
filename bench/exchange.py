"""Exchange benchmark: signed bids against a real server process on loopback.

The server (``python -m service``) runs pinned to CPU 0 with a fresh temp database; this
process, the load generator, pins itself to CPU 1. Every bid body is signed before the
timed part, each simulated participant sends its own bids in nonce order over a keep-alive
connection, many participants at once.

Phases:

1. throughput: closed loop, 64 participants (half buyers, half sellers, three articles,
   prices that mostly cross), accepted bids/s over >= 10,000 bids;
2. latency: open loop at a fixed 500 bids/s for 10 s (each send scheduled at a fixed time,
   latency from the scheduled time to the response, so a stalled server is not hidden),
   p50/p99; every participant of this phase listens on its SSE stream, giving the
   match -> ``bid`` event (state matched) latency at the buyer and at the seller;
3. pure signature verification on CPU 0 with the server stopped: ``verify_request`` and raw
   ``verify_message`` per second, and the ratio accepted bids/s / verifications/s.

``python -m bench.exchange [--quick] [--strict]``; exit status 0 unless it could not run
(or, with --strict, a target was missed). Progress goes to stderr, the table to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bench.cli import arguments, exit_status
from bench.table import Row, percentile, print_table
from bitwrk.client import ExchangeClient
from bitwrk.client import _parse_sse as parse_sse
from bitwrk.identity import load_or_create_key
from bitwrk.keys import PrivateKey, check_address, verify_message
from bitwrk.protocol import (
    SIGNATURE,
    bid_fields,
    canonical_document,
    sign_request,
    verify_request,
)
from tools.processes import free_port

ROOT = Path(__file__).resolve().parents[1]

NAME = "exchange"
NETWORK = "regtest"
SERVER_CPU = 0
CLIENT_CPU = 1

# Targets (from the issue).
TARGET_BIDS_PER_S = 2000.0
TARGET_P99_MS = 50.0
TARGET_EVENT_P99_MS = 50.0

# Separate Blender versions keep each phase's books apart, so every match in the latency
# phase is between two of its own (listening) participants.
WARMUP_ARTICLES = ("net.bitwrk/blender/4.4/2G",)
THROUGHPUT_ARTICLES = tuple(f"net.bitwrk/blender/5.0/{c}" for c in ("512M", "2G", "8G"))
LATENCY_ARTICLES = tuple(f"net.bitwrk/blender/4.5/{c}" for c in ("512M", "2G", "8G"))
# Buys 950..1150 sat, sells 850..1050: most pairs cross, some bids rest on the book.
BUY_PRICES = (950, 1150)
SELL_PRICES = (850, 1050)
BUYER_CREDIT = 10**10  # sat: far more than all of one buyer's bids block

READY_TIMEOUT_S = 20.0
REQUEST_TIMEOUT_S = 30.0
PHASE_TIMEOUT_S = 180.0  # no phase may run longer, whatever the server does
EVENT_DRAIN_S = 5.0  # how long to wait for outstanding match events after the last response
JSON_HEADERS = {"Content-Type": "application/json"}
OTHER_LOAD_WARN = 0.25  # of one CPU: above this, someone else was using the machine
WAIT_WARN = 0.05  # share of the time the server (or verifier) was runnable but not running


@dataclass(frozen=True)
class Settings:
    warmup_participants: int = 16
    warmup_bids: int = 20  # per participant
    participants: int = 64
    bids_per_participant: int = 160  # 64 x 160 = 10,240 timed bids
    rate: float = 500.0  # bids/s offered in the latency phase
    latency_seconds: float = 10.0
    latency_participants: int = 50
    verify_seconds: float = 2.0  # per measured function
    verify_bodies: int = 1000


DEFAULT = Settings()
QUICK = Settings(warmup_participants=8, warmup_bids=5, bids_per_participant=12,
                 latency_seconds=2.0, latency_participants=20, verify_seconds=0.3,
                 verify_bodies=200)


def log(message: str) -> None:
    print(f"[bench {NAME}] {message}", file=sys.stderr, flush=True)


# -- processes and CPUs ---------------------------------------------------------------------


def _cpus() -> set[int]:
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return set()


def can_pin() -> bool:
    return {SERVER_CPU, CLIENT_CPU} <= _cpus()


def pinned(cmd: list[str], cpu: int) -> list[str]:
    """``cmd`` under ``taskset -c cpu`` where pinning is possible (else as it is)."""
    if not can_pin():
        return cmd
    taskset = shutil.which("taskset")
    if taskset is None:
        return cmd
    return [taskset, "-c", str(cpu), *cmd]


@contextlib.contextmanager
def pin_self(cpu: int) -> Iterator[None]:
    """Pin this process to ``cpu`` for the block, then restore its affinity."""
    before = _cpus()
    pin = can_pin()
    if pin:
        os.sched_setaffinity(0, {cpu})
    try:
        yield
    finally:
        if pin:
            with contextlib.suppress(OSError):
                os.sched_setaffinity(0, before)


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` so far (Linux /proc)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float | None:
    """CPU seconds all CPUs have spent busy (not idle or iowait) since boot (/proc/stat)."""
    try:
        first = Path("/proc/stat").read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return None
    ticks = [int(x) for x in first[1:]]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)
    guest = sum(ticks[8:10])  # already counted in user/nice
    return (sum(ticks) - idle - guest) / os.sysconf("SC_CLK_TCK")


def runqueue_wait_seconds(pid: int | None = None) -> float | None:
    """Seconds the (main thread of) process ``pid`` has waited, runnable, for a CPU that
    another task held (/proc/PID/schedstat): the direct sign of a shared CPU."""
    try:
        text = Path(f"/proc/{pid or 'self'}/schedstat").read_text()
        return int(text.split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return None


class Server:
    """``python -m service`` on a free loopback port, pinned to SERVER_CPU."""

    def __init__(self, workdir: Path, module: str = "service",
                 extra_args: tuple[str, ...] = ()) -> None:
        self.module = module
        self.extra_args = extra_args
        self.workdir = workdir
        self.db = workdir / "exchange.sqlite3"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        cmd = pinned([sys.executable, "-m", self.module, "--db", str(self.db), "--host",
                      "127.0.0.1", "--port", str(self.port), "--network", NETWORK,
                      *self.extra_args], SERVER_CPU)
        with self.log_path.open("wb") as out:
            self.proc = subprocess.Popen(cmd, cwd=ROOT, env=_child_env(), stdout=out,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def wait_ready(self, session: aiohttp.ClientSession) -> dict[str, Any]:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log_tail()}")
            with contextlib.suppress(aiohttp.ClientError, OSError, asyncio.TimeoutError):
                async with session.get(self.url + "/api/v1/info") as resp:
                    if resp.status == 200:
                        info: dict[str, Any] = await resp.json()
                        return info
            await asyncio.sleep(0.05)
        raise RuntimeError(f"server not ready in {READY_TIMEOUT_S:.0f} s:\n{self.log_tail()}")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


# -- participants and pre-signed bids ---------------------------------------------------------


@dataclass
class Participant:
    key: PrivateKey
    side: str  # "buy" | "sell"
    bodies: list[bytes] = field(default_factory=list)  # signed, nonce order

    @property
    def address(self) -> str:
        return self.key.address


def make_participants(count: int, bids_each: int, articles: tuple[str, ...], exchange: str,
                      rng: random.Random) -> list[Participant]:
    """``count`` fresh participants, alternately buyers and sellers, each with ``bids_each``
    signed bid bodies (nonces 1, 2, ...)."""
    people = []
    for i in range(count):
        side = "buy" if i % 2 == 0 else "sell"
        p = Participant(PrivateKey.generate(NETWORK), side)
        low, high = BUY_PRICES if side == "buy" else SELL_PRICES
        for nonce in range(2, bids_each + 2):  # nonce 1: the event-stream token
            fields = bid_fields(exchange=exchange, address=p.address, nonce=nonce, type=side,
                                article=rng.choice(articles), price=rng.randint(low, high))
            p.bodies.append(json.dumps(sign_request(p.key, fields)).encode())
        people.append(p)
    return people


async def credit_buyers(url: str, operator: PrivateKey, people: list[Participant],
                        session: aiohttp.ClientSession) -> None:
    client = ExchangeClient(url, operator, session=session)
    for p in people:
        if p.side == "buy":
            await client.deposit(p.address, BUYER_CREDIT, kind="play",
                                 uid="bench-" + secrets.token_hex(12), ref="bench")


# -- sending ------------------------------------------------------------------------------------


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)  # seconds
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    trades: int = 0  # bids that matched on arrival (one per trade)
    crossing_sent: dict[int, float] = field(default_factory=dict)  # txid -> wall send time

    @property
    def accepted(self) -> int:
        return self.statuses[200]

    @property
    def rejected(self) -> int:
        return sum(n for s, n in self.statuses.items() if s != 200)

    def record(self, status: int, body: bytes, latency: float, sent_wall: float) -> None:
        self.latencies.append(latency)
        self.statuses[status] += 1
        try:
            data = json.loads(body)
        except ValueError:
            data = {"error": "non-JSON", "message": body[:80].decode(errors="replace")}
        if status != 200:
            self.errors[f"{status} {data.get('error')}: {data.get('message')}"[:120]] += 1
        elif data.get("state") == "matched":
            self.trades += 1
            self.crossing_sent[int(data["txid"])] = sent_wall


async def post(session: aiohttp.ClientSession, url: str, body: bytes) -> tuple[int, bytes]:
    async with session.post(url, data=body, headers=JSON_HEADERS) as resp:
        return resp.status, await resp.read()


async def closed_loop(session: aiohttp.ClientSession, url: str,
                      people: list[Participant]) -> tuple[Tally, float]:
    """Every participant sends its bids back to back; (tally, elapsed seconds)."""
    tally = Tally()
    bids_url = url + "/api/v1/bids"

    async def run(p: Participant) -> None:
        for body in p.bodies:
            t0, wall = time.perf_counter(), time.time()
            status, data = await post(session, bids_url, body)
            tally.record(status, data, time.perf_counter() - t0, wall)

    start = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(run(p) for p in people)), PHASE_TIMEOUT_S)
    return tally, time.perf_counter() - start


@dataclass
class Arrival:
    wall: float  # when the client parsed the event
    bid: dict[str, Any]


async def listen(url: str, session: aiohttp.ClientSession, key: PrivateKey,
                 ready: asyncio.Event, arrivals: dict[int, Arrival]) -> None:
    """Record the first ``bid`` event with state matched for each of the key's bids (its
    private stream: a token from a signed request with nonce 1 first; the pre-signed bids
    start at nonce 2)."""
    exchange = (await (await session.get(url + "/api/v1/info")).json())["exchange"]
    token_body = sign_request(key, {"action": "events_token", "exchange": exchange,
                                    "nonce": 1})
    async with session.post(url + "/api/v1/events/token", json=token_body) as resp:
        token = (await resp.json())["token"]
    params = {"address": key.address, "token": token}
    async with session.get(url + "/api/v1/events", params=params) as resp:
        async for event in parse_sse(resp.content):
            if event.kind == "hello":
                ready.set()
            elif event.kind == "bid" and event.data.get("state") == "matched":
                arrivals.setdefault(int(event.data["id"]), Arrival(time.time(), event.data))


async def open_loop(session: aiohttp.ClientSession, url: str, people: list[Participant],
                    rate: float) -> tuple[Tally, float]:
    """Bid k (participant k mod n, its k // n-th bid) is due at start + k / rate. A
    participant never sends before its previous answer (nonce order), so a slow server
    shows up as latency measured from the due time. (tally, seconds of sending)."""
    tally = Tally()
    bids_url = url + "/api/v1/bids"
    loop = asyncio.get_running_loop()
    n = len(people)
    start = loop.time() + 0.2

    async def run(index: int, p: Participant) -> None:
        for j, body in enumerate(p.bodies):
            due = start + (j * n + index) / rate
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            wall = time.time()
            status, data = await post(session, bids_url, body)
            tally.record(status, data, loop.time() - due, wall)

    await asyncio.wait_for(asyncio.gather(*(run(i, p) for i, p in enumerate(people))),
                           PHASE_TIMEOUT_S)
    return tally, loop.time() - start


# -- the benchmark ------------------------------------------------------------------------------


@dataclass
class Results:
    pinned: bool = False
    participants: int = 0
    rate: float = 0.0
    throughput: Tally | None = None
    throughput_s: float = 0.0
    server_cpu_share: float | None = None  # of one core, during the throughput phase
    client_cpu_share: float | None = None
    other_cpu_share: float | None = None  # everything else on the machine (kernel included)
    server_wait_share: float | None = None  # runnable but not running: CPU 0 was shared
    latency_wait_share: float | None = None  # the same during the latency phase
    latency: Tally | None = None
    latency_s: float = 0.0
    buyer_event_ms: list[float] = field(default_factory=list)
    seller_event_ms: list[float] = field(default_factory=list)
    send_event_ms: list[float] = field(default_factory=list)
    events_expected: int = 0
    events_seen: int = 0
    verify: dict[str, float] = field(default_factory=dict)
    server_errors: str = ""


def find_py_spy() -> str | None:
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


@contextlib.contextmanager
def profiled(pid: int, out: Path | None) -> Iterator[None]:
    """Sample ``pid`` with py-spy (collapsed stacks in ``out``) for the block, if asked."""
    if out is None:
        yield
        return
    spy = find_py_spy()
    if spy is None:
        log("--profile-server: py-spy not found (pip install py-spy); not profiling")
        yield
        return
    cmd = pinned([spy, "record", "--pid", str(pid), "--rate", "250",
                  "--format", "raw", "-o", str(out)], CLIENT_CPU)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)  # let it attach
    try:
        yield
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        log(f"server profile (py-spy collapsed stacks): {out}")


async def _measure(server: Server, settings: Settings, res: Results,
                   bodies_out: list[dict[str, Any]], profile: Path | None = None) -> None:
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S, connect=10)
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    sse_connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session, \
            aiohttp.ClientSession(connector=sse_connector) as sse_session:
        info = await server.wait_ready(session)
        exchange = info["exchange"]
        operator = load_or_create_key(server.workdir / "operator.wif", NETWORK)
        if operator.address != info["operator"]:
            raise RuntimeError("operator.wif beside the db is not the server's operator")

        rng = random.Random(20240601)
        log("signing bids ...")
        s = settings
        warm = make_participants(s.warmup_participants, s.warmup_bids, WARMUP_ARTICLES,
                                 exchange, rng)
        bulk = make_participants(s.participants, s.bids_per_participant, THROUGHPUT_ARTICLES,
                                 exchange, rng)
        total_latency_bids = round(s.rate * s.latency_seconds)
        per = -(-total_latency_bids // s.latency_participants)
        listeners = make_participants(s.latency_participants, per, LATENCY_ARTICLES, exchange,
                                      rng)
        # Trim so exactly rate x seconds bids are due: bid k belongs to participant k mod n.
        for i, p in enumerate(listeners):
            p.bodies = p.bodies[: len(range(i, total_latency_bids, s.latency_participants))]
        per_person = 1 + s.verify_bodies // len(bulk)
        bodies_out.extend(json.loads(b) for p in bulk for b in p.bodies[:per_person])
        log("crediting buyers ...")
        await credit_buyers(server.url, operator, warm + bulk + listeners, session)

        log(f"warm-up: {sum(len(p.bodies) for p in warm)} bids")
        await closed_loop(session, server.url, warm)

        n_bulk = sum(len(p.bodies) for p in bulk)
        log(f"throughput: {n_bulk} bids, {len(bulk)} participants, closed loop")
        with profiled(server.pid, profile):
            cpu0, own0, t0 = cpu_seconds(server.pid), time.process_time(), time.perf_counter()
            all0, wait0 = machine_busy_seconds(), runqueue_wait_seconds(server.pid)
            res.throughput, res.throughput_s = await closed_loop(session, server.url, bulk)
            wall = time.perf_counter() - t0
            cpu1, all1 = cpu_seconds(server.pid), machine_busy_seconds()
            wait1 = runqueue_wait_seconds(server.pid)
            if wait0 is not None and wait1 is not None:
                res.server_wait_share = (wait1 - wait0) / wall
            own = time.process_time() - own0
        res.client_cpu_share = own / wall
        if cpu0 is not None and cpu1 is not None:
            res.server_cpu_share = (cpu1 - cpu0) / wall
            if all0 is not None and all1 is not None and profile is None:
                res.other_cpu_share = max(0.0, (all1 - all0 - (cpu1 - cpu0) - own) / wall)

        log(f"latency: {total_latency_bids} bids at {s.rate:.0f}/s, "
            f"{len(listeners)} participants listening on SSE")
        arrivals: dict[int, Arrival] = {}
        readies = [asyncio.Event() for _ in listeners]
        tasks = [asyncio.create_task(listen(server.url, sse_session, p.key, r, arrivals))
                 for p, r in zip(listeners, readies, strict=True)]
        try:
            await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)),
                                   READY_TIMEOUT_S)
            wait0 = runqueue_wait_seconds(server.pid)
            tally, res.latency_s = await open_loop(session, server.url, listeners, s.rate)
            wait1 = runqueue_wait_seconds(server.pid)
            if wait0 is not None and wait1 is not None and res.latency_s > 0:
                res.latency_wait_share = (wait1 - wait0) / res.latency_s
            res.latency = tally
            res.events_expected = 2 * tally.trades
            deadline = time.monotonic() + EVENT_DRAIN_S
            while len(arrivals) < res.events_expected and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        res.events_seen = len(arrivals)
        for a in arrivals.values():
            closed = a.bid.get("closed")
            if closed is not None:
                ms = (a.wall - float(closed)) * 1000
                (res.buyer_event_ms if a.bid["type"] == "buy" else res.seller_event_ms).append(ms)
            sent = tally.crossing_sent.get(int(a.bid.get("txid") or 0))
            if sent is not None:
                res.send_event_ms.append((a.wall - sent) * 1000)


def _verify_worker(path: Path, seconds: float) -> dict[str, float]:
    """Pure verification rates over the signed bodies in ``path`` (run pinned to CPU 0)."""
    bodies: list[dict[str, Any]] = json.loads(path.read_text())
    docs = [(str(b["address"]), str(b[SIGNATURE]), canonical_document(b)) for b in bodies]
    results: dict[str, float] = {}

    def rate(name: str, fn: Any, items: list[Any]) -> None:
        for item in items[:200]:  # warm-up
            fn(item)
        count, start, cpu = 0, time.perf_counter(), time.process_time()
        deadline = start + seconds
        while True:
            for item in items:
                fn(item)
            count += len(items)
            now = time.perf_counter()
            if now >= deadline or count >= 5_000_000:
                break
        results[name] = count / (now - start)
        results[name + ".cpu_share"] = (time.process_time() - cpu) / (now - start)

    def check_request(body: dict[str, Any]) -> None:
        verify_request(body)

    def check_message(doc: tuple[str, str, str]) -> None:
        if not verify_message(*doc):
            raise AssertionError("a pre-signed bid did not verify")

    def check_like_server(raw: bytes) -> None:
        # What service.api.read_signed does with a body besides its own field checks.
        body = json.loads(raw)
        verify_request(body)
        check_address(body["address"], NETWORK)
        canonical_document({k: v for k, v in body.items() if k != SIGNATURE})

    rate("verify_request", check_request, bodies)
    rate("verify_message", check_message, docs)
    rate("read_signed", check_like_server, [json.dumps(b).encode() for b in bodies])
    return results


def run_verify(workdir: Path, bodies: list[dict[str, Any]], seconds: float) -> dict[str, float]:
    path = workdir / "bodies.json"
    path.write_text(json.dumps(bodies))
    cmd = pinned([sys.executable, "-m", "bench.exchange", "--verify-worker", str(path),
                  "--seconds", str(seconds)], SERVER_CPU)
    out = subprocess.run(cmd, cwd=ROOT, env=_child_env(), capture_output=True, text=True,
                         timeout=60 + 4 * seconds, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"verification worker failed:\n{out.stderr[-2000:]}")
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def measure(settings: Settings, profile: Path | None = None,
            server_module: str = "service") -> Results:
    res = Results(pinned=can_pin(), participants=settings.participants, rate=settings.rate)
    if not res.pinned:
        log("fewer than 2 CPUs available: server and load generator are NOT pinned")
    bodies: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bitwrk-bench-") as tmp:
        workdir = Path(tmp)
        server = Server(workdir, server_module)
        try:
            server.start()
            with pin_self(CLIENT_CPU):
                asyncio.run(_measure(server, settings, res, bodies, profile))
        finally:
            server.stop()
            tail = [line for line in server.log_tail(200).splitlines()
                    if "Traceback" in line or "ERROR" in line or "unhandled" in line]
            res.server_errors = "\n".join(tail[-5:])
        log(f"pure verification on CPU {SERVER_CPU}, server stopped ...")
        res.verify = run_verify(workdir, bodies, settings.verify_seconds)
    return res


def rows(res: Results) -> list[Row]:
    out: list[Row] = []
    where = "" if res.pinned else ", UNPINNED"

    def add(metric: str, value: float | None, unit: str = "", target: str = "",
            ok: bool | None = None, note: str = "") -> None:
        out.append(Row(NAME, metric, value, unit, target, ok, note))

    t = res.throughput
    if t is not None:
        rate = t.accepted / res.throughput_s if res.throughput_s else 0.0
        add("accepted bids/s, closed loop", rate, "bids/s", f">= {TARGET_BIDS_PER_S:.0f}",
            rate >= TARGET_BIDS_PER_S,
            note=f"{t.accepted} bids, {res.participants} participants{where}")
        add("  bids matched on the throughput run", 200 * t.trades / max(1, t.accepted), "%",
            note=f"{t.trades} trades")
        add("  rejected bids (throughput)", t.rejected, "", "0", t.rejected == 0)
        add("  closed-loop latency p50", _ms(percentile(t.latencies, 50)), "ms")
        add("  closed-loop latency p99", _ms(percentile(t.latencies, 99)), "ms")
        if res.server_cpu_share is not None:
            add("  server CPU busy (CPU 0)", 100 * res.server_cpu_share, "%")
        if res.client_cpu_share is not None:
            add("  load generator CPU busy (CPU 1)", 100 * res.client_cpu_share, "%")
        if res.server_wait_share is not None:
            noisy = res.server_wait_share > WAIT_WARN
            add("  server waiting for CPU 0 held by others", 100 * res.server_wait_share, "%",
                note="DISTURBED: CPU 0 shared, figures low" if noisy else "")
        if res.other_cpu_share is not None:
            noisy = res.other_cpu_share > OTHER_LOAD_WARN
            add("  other CPU use on the machine", 100 * res.other_cpu_share, "%",
                note="DISTURBED: figures unreliable" if noisy else "kernel, other processes")
    lt = res.latency
    if lt is not None:
        offered = len(lt.latencies) / res.latency_s if res.latency_s else 0.0
        p50, p99 = _ms(percentile(lt.latencies, 50)), _ms(percentile(lt.latencies, 99))
        add("offered load, open loop", offered, "bids/s", note=f"{len(lt.latencies)} bids")
        add(f"latency p50 at {res.rate:.0f} bids/s", p50, "ms")
        add(f"latency p99 at {res.rate:.0f} bids/s", p99, "ms", f"< {TARGET_P99_MS:.0f} ms",
            p99 is not None and p99 < TARGET_P99_MS)
        add("  rejected bids (latency run)", lt.rejected, "", "0", lt.rejected == 0)
        if res.latency_wait_share is not None:
            noisy = res.latency_wait_share > WAIT_WARN
            add("  server waiting for CPU 0 held by others", 100 * res.latency_wait_share, "%",
                note="DISTURBED: CPU 0 shared, latencies high" if noisy else "latency run")
        add("  match events received", res.events_seen, "", f"= {res.events_expected}",
            res.events_seen == res.events_expected, note=f"{lt.trades} trades x 2 parties")
        for who, values in (("buyer", res.buyer_event_ms), ("seller", res.seller_event_ms)):
            b50, b99 = percentile(values, 50), percentile(values, 99)
            add(f"match -> event p50, {who}", b50, "ms")
            add(f"match -> event p99, {who}", b99, "ms", f"< {TARGET_EVENT_P99_MS:.0f} ms",
                b99 is not None and b99 < TARGET_EVENT_P99_MS)
        add("  crossing-bid send -> event p99", percentile(res.send_event_ms, 99), "ms",
            note="both parties")
    vr = res.verify.get("verify_request")
    for name, label in (("verify_request", "pure verify_request/s"),
                        ("verify_message", "pure verify_message/s"),
                        ("read_signed", "  JSON + verify + address + document/s")):
        share = res.verify.get(name + ".cpu_share", 1.0)
        add(f"{label} (CPU 0)", res.verify.get(name), "/s",
            note="" if share > 1 - WAIT_WARN else f"DISTURBED: got {100 * share:.0f}% of CPU 0")
    if t is not None and vr:
        rate = t.accepted / res.throughput_s if res.throughput_s else 0.0
        shares = [res.verify.get("verify_request.cpu_share", 1.0),
                  1 - (res.server_wait_share or 0.0)]
        add("accepted bids/s / verify_request/s", rate / vr, "x",
            note="DISTURBED" if min(shares) <= 1 - WAIT_WARN else "")
    return out


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


def collect(quick: bool = False, profile: Path | None = None,
            server_module: str = "service") -> list[Row]:
    """Run the benchmark and return its table rows (used by bench/run_all.py)."""
    res = measure(QUICK if quick else DEFAULT, profile, server_module)
    if res.throughput is not None and res.throughput.errors:
        for message, n in res.throughput.errors.most_common(3):
            log(f"rejections: {n} x {message}")
    if res.latency is not None and res.latency.errors:
        for message, n in res.latency.errors.most_common(3):
            log(f"rejections (latency run): {n} x {message}")
    if res.server_errors:
        log(f"server log errors:\n{res.server_errors}")
    return rows(res)


def main(argv: list[str] | None = None) -> int:
    p = arguments("bench.exchange", __doc__)
    p.add_argument("--profile-server", type=Path, metavar="FILE",
                   help="sample the server with py-spy during the throughput phase "
                        "(collapsed stacks to FILE; needs py-spy; sampling slows the server, "
                        "so that run's figures are not comparable)")
    p.add_argument("--server-module", default="service", metavar="MODULE",
                   help="module run as the server with python -m (default: service); for "
                        "A/B runs of a patched copy found on PYTHONPATH")
    p.add_argument("--verify-worker", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--seconds", type=float, default=2.0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.verify_worker is not None:
        print(json.dumps(_verify_worker(args.verify_worker, args.seconds)), flush=True)
        return 0
    table = collect(quick=args.quick, profile=args.profile_server,
                    server_module=args.server_module)
    print_table(table)
    return exit_status(table, args.strict)


if __name__ == "__main__":
    sys.exit(main())
