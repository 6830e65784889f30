"""The main job end to end: ``python -m demo.run`` (what ``make demo`` runs) with real processes.

It must exit 0, write EXR + PNG for the tiled still and for every animation frame, print
its summary, and leave nothing behind: no process it started (render workers included),
no listening port. Interrupted with Ctrl-C it must stop everything as well.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import pid_alive

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("bpy") is None, reason="needs the bpy module"),
]
EXR_MAGIC, PNG_MAGIC = b"\x76\x2f\x31\x01", b"\x89PNG\r\n\x1a\n"


def demo(work: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "demo.run", "--quick", "--work", str(work),
            "--out", str(out)]


def ours(pid: int, work: Path, needle: bytes) -> bool:
    """Whether ``pid`` belongs to the demo run: its marker in the environment, or working
    inside the work dir (render workers get a clean environment of their own)."""
    with contextlib.suppress(OSError):
        if needle in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
            return True
    with contextlib.suppress(OSError):
        return Path(os.readlink(f"/proc/{pid}/cwd")).is_relative_to(work)
    return False


def listeners(port: int) -> set[int]:
    """Pids holding a listening TCP socket on ``port`` (any address)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(fields[9])
    pids = set()
    for name in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{name}/fd"):
                with contextlib.suppress(OSError):
                    target = os.readlink(f"/proc/{name}/fd/{fd}")
                    if target.startswith("socket:[") and target[8:-1] in inodes:
                        pids.add(int(name))
    return pids


def assert_nothing_left(work: Path) -> None:
    record = json.loads((work / "processes.json").read_text())
    assert record["pids"], record
    deadline = time.monotonic() + 5
    while (alive := [p for p in record["pids"] if pid_alive(p)]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive, f"processes left behind: {alive}"
    needle = f"{record['marker']}={record['run']}".encode()
    # the exchange's and both sellers' ports: closed, or taken since by someone else's process
    assert len(record["ports"]) >= 3, record
    held = {port: [p for p in listeners(port) if ours(p, work, needle)]
            for port in record["ports"]}
    assert not any(held.values()), f"ports still held by the demo's processes: {held}"
    # nothing else of the run is alive (render workers lead their own sessions)
    inside = [int(n) for n in os.listdir("/proc") if n.isdigit() and int(n) != os.getpid()
              and pid_alive(int(n)) and ours(int(n), work, needle)]
    assert not inside, f"processes of the demo still running: {inside}"


def test_make_demo_target_runs_the_demo_after_the_test_install() -> None:
    text = (ROOT / "Makefile").read_text()
    assert "\ndemo: $(STAMP)\n\t$(BIN)/python -m demo.run $(DEMO_ARGS)\n" in text


def test_demo_renders_still_and_animation_and_cleans_up(tmp_path: Path) -> None:
    work, out = tmp_path / "work", tmp_path / "out"
    # seller A sells through the exchange's relay, as one behind NAT would (make demo
    # DEMO_ARGS=--via-relay)
    done = subprocess.run([*demo(work, out), "--via-relay"], cwd=ROOT, capture_output=True,
                          text=True, timeout=900)
    text = done.stdout
    assert done.returncode == 0, text[-3000:] + done.stderr[-3000:]
    for folder, frames in (("still", [3]), ("animation", [1, 2, 3])):
        for frame in frames:
            stem = out / folder / f"Demo_{frame:04d}"
            assert Path(f"{stem}.exr").read_bytes()[:4] == EXR_MAGIC
            assert Path(f"{stem}.png").read_bytes()[:8] == PNG_MAGIC
    assert (out / "scene" / "demo.blend").is_file()
    assert (out / "scene" / "textures" / "tiles.png").is_file()
    # units land one by one on a progress bar, from both sellers
    assert "still     [########################]  4/4" in text
    assert "animation [########################]  3/3" in text
    summary = text[text.index("BitWrk demo: summary"):]
    for needle in ("units       7 bought and delivered (4 tiles + 3 frames), 7 trades settled",
                   "exactness   4 of 4 bought frames have the very pixels of the local render",
                   "seller A (CPU 0", "seller B (CPU 1", "wall time, through the exchange",
                   "relay       seller A sold via the relay at", "asks 1200 sat, direct)",
                   "local, one bpy process, one core", "parallel efficiency",
                   "buyer spent", "sellers earned", "exchange fees", "ledger         balanced",
                   "demo total"):
        assert needle in summary, summary
    assert "warning" not in text, text
    assert_nothing_left(work)


def test_ctrl_c_stops_everything(tmp_path: Path) -> None:
    work, out = tmp_path / "work", tmp_path / "out"
    proc = subprocess.Popen(demo(work, out), cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # interrupt once the first unit has landed
            if "still     [" in line:
                break
        else:
            raise AssertionError(f"no progress line: {proc.stderr.read()[-3000:]}")  # type: ignore[union-attr]
        os.kill(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, err[-3000:]
    assert "interrupted: stopping everything" in err
    assert_nothing_left(work)
