"""The whole engine with real processes: an exchange, headless sellers rendering with
Cycles, and the headless buyer — stitched frames compared with a local render."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.blender.conftest import needs_bpy, run_bpy
from tests.blender.test_render_exact import assert_identical
from tests.e2e.conftest import ServerProcess

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [needs_bpy, pytest.mark.slow]


class Node:
    """One participant's process environment: its own identity, caches and Blender dirs."""

    def __init__(self, base: Path) -> None:
        self.base = base
        base.mkdir(parents=True, exist_ok=True)
        self.env = dict(os.environ)
        self.env.update({
            "XDG_DATA_HOME": str(base / "data"), "XDG_CACHE_HOME": str(base / "cache"),
            "BLENDER_USER_RESOURCES": str(base / "blender-user"), "PYTHONPATH": str(ROOT),
        })
        self.proc: subprocess.Popen[str] | None = None

    def run(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", *args], env=self.env, cwd=ROOT,
                              capture_output=True, text=True, timeout=timeout)

    def start(self, *args: str) -> subprocess.Popen[str]:
        self.log = open(self.base / "out.log", "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([sys.executable, "-m", *args], env=self.env, cwd=ROOT,
                                     stdout=self.log, stderr=subprocess.STDOUT, text=True,
                                     start_new_session=True)
        return self.proc

    def output(self) -> str:
        return (self.base / "out.log").read_text()

    def wait_for(self, pattern: str, timeout: float = 60) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.search(pattern, self.output())
            if found:
                return found
            assert self.proc is not None and self.proc.poll() is None, self.output()
            time.sleep(0.1)
        raise AssertionError(f"no {pattern!r} in: {self.output()[-2000:]}")

    def address(self) -> str:
        result = self.run("bitwrk", "account")
        return re.search(r"address\s+(\S+)", result.stdout).group(1)  # type: ignore[union-attr]

    def stop(self, sig: int = signal.SIGINT, timeout: float = 60) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        os.killpg(self.proc.pid, sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:  # stuck: its threads' stacks into the log first
            os.kill(self.proc.pid, signal.SIGUSR1)
            time.sleep(2)
            os.killpg(self.proc.pid, signal.SIGKILL)
            return self.proc.wait(10)
        finally:
            self.log.close()


def credit(exchange: ServerProcess, address: str, amount: int) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "service", "credit", address, str(amount), "--exchange",
         exchange.url, "--db", str(exchange.db_path)], cwd=ROOT, capture_output=True,
        text=True, timeout=60)
    assert result.returncode == 0, result.stderr


@pytest.fixture
def swarm(tmp_path: Path) -> Iterator[dict[str, Any]]:
    exchange = ServerProcess(tmp_path / "exchange", timeout_scale=0.5).start()
    sellers = [Node(tmp_path / f"seller{i}") for i in range(2)]
    for i, seller in enumerate(sellers):
        seller.start("bitwrk.seller", "--exchange", exchange.url, "--cpus", str(i),
                     "--min-price", str(10 + i), "--classes", "512M")
    for seller in sellers:
        seller.wait_for(r"seller \S+ on http")
    buyer = Node(tmp_path / "buyer")
    credit(exchange, buyer.address(), 1_000_000)
    try:
        yield {"exchange": exchange, "sellers": sellers, "buyer": buyer}
    finally:
        alive = [s for s in sellers if s.proc is not None and s.proc.poll() is None]
        codes = [seller.stop() for seller in alive]  # Ctrl-C: a clean stop, exit 0
        exchange.close()
    assert codes == [0] * len(alive), [s.output()[-6000:] for s in alive]


def buy(swarm: dict[str, Any], scene: Path, out: Path, *extra: str) -> str:
    exchange: ServerProcess = swarm["exchange"]
    result = swarm["buyer"].run("bitwrk.buy", str(scene), "--exchange", exchange.url,
                                "--max-price", "100", "--out", str(out),
                                "--allow-local-sellers", *extra)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def test_still_in_tiles_equals_a_local_render(swarm: dict[str, Any], scene_dir: Path,
                                              references: Path, tmp_path: Path) -> None:
    out = buy(swarm, scene_dir / "scene.blend", tmp_path / "out", "--tiles", "4")
    assert "done: 4 units" in out
    assert_identical(tmp_path / "out" / "Shot_0001", references, "plain")
    # both sellers worked, each on its own core, and each was paid
    lines = [s.output() for s in swarm["sellers"]]
    assert all("rendered" in line for line in lines), lines
    # kill -USR1: every thread's stack in the log, and the seller goes on (then stops cleanly)
    seller: Node = swarm["sellers"][0]
    assert seller.proc is not None
    os.kill(seller.proc.pid, signal.SIGUSR1)
    seller.wait_for(r"(?s)Thread 0x.*most recent call first.*_serve", 10)
    assert seller.proc.poll() is None


def test_animation_frames_and_denoised_still(swarm: dict[str, Any], scene_dir: Path,
                                             references: Path, tmp_path: Path) -> None:
    out = buy(swarm, scene_dir / "scene.blend", tmp_path / "anim", "--frames", "1-3",
              "--tiles", "1")
    assert "done: 3 units" in out
    assert_identical(tmp_path / "anim" / "Shot_0001", references, "plain")
    assert_identical(tmp_path / "anim" / "Shot_0003", references, "frame3")
    denoised = scene_dir / "scene_denoised.blend"
    run_bpy(["-c", "import bpy,sys; bpy.ops.wm.open_mainfile(filepath=sys.argv[1],"
             " load_ui=False, use_scripts=False); bpy.context.scene.cycles.use_denoising=True;"
             " bpy.ops.wm.save_as_mainfile(filepath=sys.argv[2])",
             str(scene_dir / "scene.blend"), str(denoised)], tmp_path)
    buy(swarm, denoised, tmp_path / "dn", "--tiles", "4")
    assert_identical(tmp_path / "dn" / "Shot_0001", references, "denoised")


def test_a_seller_killed_mid_unit_is_replaced_and_never_paid(
    swarm: dict[str, Any], scene_dir: Path, references: Path, tmp_path: Path
) -> None:
    exchange: ServerProcess = swarm["exchange"]
    victim, survivor = swarm["sellers"]
    buyer: Node = swarm["buyer"]
    proc = buyer.start("bitwrk.buy", str(scene_dir / "scene.blend"), "--exchange",
                       exchange.url, "--max-price", "100", "--out", str(tmp_path / "out"),
                       "--tiles", "6", "--concurrency", "2", "--allow-local-sellers")
    victim.wait_for(r"tx \d+ started", 120)
    os.killpg(victim.proc.pid, signal.SIGKILL)
    assert proc.wait(300) == 0, buyer.output()
    assert "done: 6 units" in buyer.output()
    assert_identical(tmp_path / "out" / "Shot_0001", references, "plain")
    totals = get(exchange, "/api/v1/info")["totals"]
    assert totals["available"] + totals["blocked"] + totals["fees"] == totals["deposits"]
    assert survivor.proc is not None and survivor.proc.poll() is None
    # paid only for delivered units: one FINISHED trade per unit, none with the dead seller
    bids = get(exchange, f"/api/v1/accounts/{buyer.address()}/bids?limit=200")
    txs = [get(exchange, f"/api/v1/transactions/{b['txid']}") for b in bids if b["txid"]]
    finished = [t for t in txs if t["phase"] == "FINISHED"]
    assert len(finished) == 6
    assert victim.address() not in {t["seller"] for t in finished}
    assert any(t["seller"] == victim.address() for t in txs)  # it did take a unit


def get(exchange: ServerProcess, path: str) -> Any:
    with urllib.request.urlopen(exchange.url + path, timeout=10) as resp:
        return json.loads(resp.read())



WORKER_MARK = "from bitwrk.seller.worker import main"


def worker_pids(root: int) -> set[int]:
    """The render worker processes below ``root`` (a seller), bwrap's own left out."""
    parent, argv = {}, {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            argv[int(entry.name)] = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        parent[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])

    def below(pid: int) -> bool:
        while pid > 1:
            pid = parent.get(pid, 0)
            if pid == root:
                return True
        return False

    return {pid for pid, args in argv.items() if below(pid) and args[0]
            and not args[0].endswith(b"bwrap") and any(WORKER_MARK.encode() in a for a in args)}


def test_one_buyers_next_file_opens_in_its_worker_another_buyer_gets_a_new_one(
        scene_dir: Path, references: Path, tmp_path: Path) -> None:
    """A seller's worker that rendered buyer A's file opens A's next file itself (an
    artist's F12 after an edit sends a new .blend), but buyer B's job gets a fresh process:
    a worker never carries one buyer's scene into another's job."""
    job = tmp_path / "job"
    shutil.copytree(scene_dir, job)
    shutil.copy(job / "scene.blend", job / "edited.blend")  # another file, the same scene
    exchange = ServerProcess(tmp_path / "exchange", timeout_scale=0.5).start()
    seller = Node(tmp_path / "seller")
    seller.start("bitwrk.seller", "--exchange", exchange.url, "--cpus", "0",
                 "--min-price", "10", "--classes", "512M", "--spare-after", "0")
    try:
        seller.wait_for(r"seller \S+ on http")
        assert seller.proc is not None
        buyers = {name: Node(tmp_path / name) for name in ("a", "b")}
        for node in buyers.values():
            credit(exchange, node.address(), 100_000)

        def bought(name: str, blend: str) -> set[int]:
            out = tmp_path / f"out-{name}-{blend}"
            result = buyers[name].run("bitwrk.buy", str(job / blend), "--exchange",
                                      exchange.url, "--max-price", "100", "--out", str(out),
                                      "--tiles", "1", "--allow-local-sellers")
            assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
            assert_identical(out / "Shot_0001", references, "plain")
            assert seller.proc is not None
            return worker_pids(seller.proc.pid)

        first = bought("a", "scene.blend")
        assert len(first) == 1, first
        assert bought("a", "edited.blend") == first  # A's next file: the same process
        deadline = time.monotonic() + 10
        other = bought("b", "scene.blend")
        while other & first and time.monotonic() < deadline:  # A's worker exits meanwhile
            time.sleep(0.1)
            other = worker_pids(seller.proc.pid)
        assert len(other) == 1 and not other & first, (first, other)
    finally:
        code = seller.stop()
        exchange.close()
    assert code == 0, seller.output()[-3000:]


def test_a_corrupt_blend_is_refused_before_anything_is_bought(tmp_path: Path) -> None:
    exchange = ServerProcess(tmp_path / "exchange").start()
    try:
        buyer = Node(tmp_path / "buyer")
        credit(exchange, buyer.address(), 10_000)
        corrupt = tmp_path / "corrupt.blend"
        corrupt.write_bytes(b"BLENDER-v500" + os.urandom(4000))
        result = buyer.run("bitwrk.buy", str(corrupt), "--exchange", exchange.url,
                           "--max-price", "100", "--out", str(tmp_path / "out"))
        assert result.returncode == 1
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith("error: cannot read") and "corrupt.blend" in last
        assert get(exchange, f"/api/v1/accounts/{buyer.address()}/bids") == []
        assert not (tmp_path / "out").exists()
    finally:
        exchange.close()


def test_a_buyer_without_money_is_told_before_bidding(scene_dir: Path, tmp_path: Path) -> None:
    exchange = ServerProcess(tmp_path / "exchange").start()
    try:
        buyer = Node(tmp_path / "buyer")
        result = buyer.run("bitwrk.buy", str(scene_dir / "scene.blend"), "--exchange",
                           exchange.url, "--max-price", "100", "--out", str(tmp_path / "out"))
        assert result.returncode == 1
        assert "error: not enough money on the exchange: 0 sat available" in result.stderr
        assert get(exchange, f"/api/v1/accounts/{buyer.address()}/bids") == []
    finally:
        exchange.close()


def test_python_drivers_are_reported_before_anything_is_bought(
    scene_dir: Path, tmp_path: Path
) -> None:
    exchange = ServerProcess(tmp_path / "exchange").start()
    try:
        buyer = Node(tmp_path / "buyer")
        credit(exchange, buyer.address(), 10_000)
        result = buyer.run("bitwrk.buy", str(scene_dir / "evil.blend"), "--exchange",
                           exchange.url, "--max-price", "100", "--out", str(tmp_path / "out"))
        assert result.returncode == 1
        assert "not farm-ready: these drivers need Python" in result.stderr
        assert get(exchange, f"/api/v1/accounts/{buyer.address()}/bids") == []
    finally:
        exchange.close()
