"""A real Blender window: Debian trixie's Blender 4.3 (Python 3.13) under Xvfb in a chroot.

``make test-gui`` sets the chroot up (``tests/gui/setup_chroot.sh``, cached) and runs this.
The extension zip is installed through Blender's extension system; a ``blender -b`` seller
of the same Blender is started with docs/blender.md's ``--python-expr`` line; the window
presses F12 on the BitWrk engine (Blender's render thread), and the Render Result must
equal a local render of the same Blender bit for bit. The wallet panel's deposit QR is
decoded from a screenshot of the X screen; Blender must quit within seconds. Screenshots
and the timings go to ``artifacts/gui/``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bitwrk.render import exr
from tests.e2e.conftest import ServerProcess

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
CHROOT = Path(os.environ.get("BITWRK_GUI_CHROOT", "/var/cache/bitwrk-gui/trixie"))
ARTIFACTS = ROOT / "artifacts" / "gui"
DEPOSIT = "tb1qw508d6qejxtdg4y5r3zarvary0c5xw7kxpjzsx"
# s from the quit request to the process gone (Xvfb teardown included): a guard against a
# hang, not a benchmark (a quiet machine takes ~3.5 s, one at load 10 took 8.4 s); the
# measured figure goes to artifacts/gui/timings.json.
QUIT_LIMIT = 15.0
README_LINE = re.compile(r'^blender -b --python-expr "(.+)"$', re.M)
# `blender --python FILE -- ARGS` leaves Blender's own arguments in sys.argv
RUNPY = ("import sys, runpy; i = sys.argv.index('--'); sys.argv = sys.argv[i + 1:]; "
         "runpy.run_path(sys.argv[0], run_name='__main__')")

pytestmark = [
    # Its own target (`make test-gui`, which CI runs after `make test`): not twice per CI run.
    pytest.mark.skipif(os.environ.get("BITWRK_GUI") != "1", reason="run by `make test-gui`"),
    pytest.mark.skipif(not (CHROOT / ".bitwrk-ready").is_file() or os.geteuid() != 0,
                       reason="no GUI chroot (run `make test-gui` as root)"),
    pytest.mark.slow]


def inside(path: Path) -> str:
    """``path`` (under the chroot) as the chroot sees it."""
    return "/" + str(path.relative_to(CHROOT))


def chroot_cmd(env: dict[str, str], *argv: str) -> list[str]:
    pairs = [f"{k}={v}" for k, v in env.items()]
    return ["chroot", str(CHROOT), "env", "-i", "PATH=/usr/bin:/bin", "LANG=C.UTF-8",
            *pairs, *argv]


def blender_env(base: Path, name: str) -> dict[str, str]:
    home = base / name
    for sub in ("user", "cache", "data", "home"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    return {"HOME": inside(home / "home"), "BLENDER_USER_RESOURCES": inside(home / "user"),
            "XDG_CACHE_HOME": inside(home / "cache"), "XDG_DATA_HOME": inside(home / "data"),
            "BITWRK_SELL_HOST": "127.0.0.1"}  # tests stay on loopback


def run_in_chroot(env: dict[str, str], *argv: str, timeout: float = 600) -> str:
    done = subprocess.run(chroot_cmd(env, *argv), capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


@pytest.fixture(scope="module")
def run_dir() -> Iterator[Path]:
    base = CHROOT / "tmp" / f"bitwrk-gui-{os.getpid()}"
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    for script in (ROOT / "tests/data/scenes/make_scene.py",
                   ROOT / "tests/blender/reference_render.py", HERE / "gui_driver.py"):
        shutil.copy2(script, base / script.name)
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def prepared(run_dir: Path) -> dict[str, Path]:
    """The zip (cp311 + cp313 wheels), the scene and a local 4.3 reference render."""
    dist = run_dir / "dist"
    done = subprocess.run([sys.executable, str(ROOT / "tools/build_extension.py"),
                           "--platforms", "linux-x64", "--out", str(dist)],
                          capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    env = blender_env(run_dir, "prep")
    blender = ("blender", "-b", "--factory-startup", "--python-expr", RUNPY, "--")
    run_in_chroot(env, *blender, inside(run_dir / "make_scene.py"), inside(run_dir / "job"))
    run_in_chroot(env, *blender, inside(run_dir / "reference_render.py"),
                  inside(run_dir / "job/scene.blend"), inside(run_dir / "ref"), "plain:1:0:0")
    return {"zip": next(dist.glob("bitwrk-*.zip")), "blend": run_dir / "job/scene.blend",
            "ref": run_dir / "ref/plain.exr"}


@pytest.fixture
def exchange(tmp_path: Path) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path / "exchange", timeout_scale=0.5).start()
    try:
        yield server
    finally:
        server.stop()
        server.close()


def start_seller(run_dir: Path, zip_path: Path, url: str) -> subprocess.Popen[str]:
    """Install the zip for a headless Blender, then sell with docs/blender.md's own line."""
    env = blender_env(run_dir, "seller")
    run_in_chroot(env, "blender", "-b", "--factory-startup", "--python-expr",
                  "import bpy; bpy.ops.extensions.package_install_files(filepath="
                  f"{inside(zip_path)!r}, repo='user_default', enable_on_install=True)")
    expr = README_LINE.search((ROOT / "docs" / "blender.md").read_text())
    assert expr, "docs/blender.md has no `blender -b --python-expr` line"
    code = expr.group(1).replace("http://EXCHANGE:8480", url).replace("cores=4", "cores=1")
    # The kernel never lets a chrooted process create a user namespace, so bubblewrap cannot
    # sandbox workers in this test's chroot: this seller opts out, as the docs allow where
    # no sandbox exists (the sandbox itself is tested in tests/sandbox on the host).
    code = code.replace("min_price=10)", "min_price=10, unsandboxed=True)")
    assert "unsandboxed=True" in code, code
    log = open(run_dir / "seller.log", "w")  # noqa: SIM115 - the process owns it
    proc = subprocess.Popen(chroot_cmd(env, "blender", "-b", "--python-expr", code),
                            stdout=log, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    deadline = time.monotonic() + 120
    while "seller " not in (run_dir / "seller.log").read_text():
        assert proc.poll() is None and time.monotonic() < deadline, \
            (run_dir / "seller.log").read_text()[-3000:]
        time.sleep(0.5)
    return proc


def fund(run_dir: Path, exchange: ServerProcess) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT),
           "XDG_DATA_HOME": str(run_dir / "buyer" / "data")}
    (run_dir / "buyer" / "data").mkdir(parents=True, exist_ok=True)
    account = subprocess.run([sys.executable, "-m", "bitwrk", "account"], env=env, cwd=ROOT,
                             capture_output=True, text=True, timeout=60)
    address = re.search(r"address\s+(\S+)", account.stdout)
    assert address, account.stdout + account.stderr
    credit = subprocess.run([sys.executable, "-m", "service", "credit", address.group(1),
                             "1000000", "--exchange", exchange.url, "--db",
                             str(exchange.db_path)], cwd=ROOT, capture_output=True, text=True,
                            timeout=60)
    assert credit.returncode == 0, credit.stderr


def run_window(run_dir: Path, config: dict[str, Any]) -> tuple[dict[str, Any], float]:
    """Blender in Xvfb with the driver; (its report, seconds from quit request to exit)."""
    (run_dir / "out").mkdir(exist_ok=True)
    config = {**config, "out": inside(run_dir / "out")}
    (run_dir / "config.json").write_text(json.dumps(config))
    env = blender_env(run_dir, "buyer")
    argv = ["xvfb-run", "-a", "-s", "-screen 0 1600x1000x24", "blender", "--factory-startup",
            "--online-mode", "--python", inside(run_dir / "gui_driver.py"), "--",
            inside(run_dir / "config.json")]
    with open(run_dir / "gui.log", "w") as log:
        proc = subprocess.Popen(chroot_cmd(env, *argv), stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            proc.wait(900)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, 9)
        ended = time.monotonic()
    report_path = run_dir / "out" / "REPORT.json"
    assert report_path.is_file(), (run_dir / "gui.log").read_text()[-4000:]
    report: dict[str, Any] = json.loads(report_path.read_text())
    # the report's clock is Blender's monotonic one; the host's differs: use the log mtime
    quit_at = (run_dir / "out" / "REPORT.json").stat().st_mtime
    return report, max(0.0, time.time() - quit_at - (time.monotonic() - ended))


def journal_state(run_dir: Path, job_id: str) -> str:
    import sqlite3

    journal = run_dir / "buyer" / "data" / "bitwrk" / "journal.sqlite3"
    with sqlite3.connect(f"file:{journal}?mode=ro", uri=True) as db:
        row = db.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
    return str(row[0]) if row else "missing"


def decode_qr(png: Path) -> list[str]:
    zxingcpp = pytest.importorskip("zxingcpp")
    io = exr.oiio()
    inp = io.ImageInput.open(str(png))
    spec = inp.spec()
    data = np.asarray(inp.read_image(0, 0, 0, spec.nchannels, "uint8"))
    inp.close()
    gray = np.ascontiguousarray(data.reshape(spec.height, spec.width, -1)[:, :, 0])
    return [r.text for r in zxingcpp.read_barcodes(gray)]


def test_f12_in_a_real_window_equals_a_local_render(
        run_dir: Path, prepared: dict[str, Path], exchange: ServerProcess) -> None:
    seller = start_seller(run_dir, prepared["zip"], exchange.url)
    try:
        fund(run_dir, exchange)
        report, quit_seconds = run_window(run_dir, {
            "zip": inside(prepared["zip"]), "blend": inside(prepared["blend"]),
            "exchange": exchange.url, "deposit_address": DEPOSIT, "slow_samples": 1500,
            "anim_out": inside(run_dir / "anim")})
    finally:
        os.killpg(seller.pid, 15)
        seller.wait(60)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for name in ("render.png", "wallet.png", "REPORT.json", "result.exr"):
        if (run_dir / "out" / name).is_file():
            shutil.copy2(run_dir / "out" / name, ARTIFACTS / name)
    shutil.copy2(run_dir / "gui.log", ARTIFACTS / "gui.log")
    shutil.copy2(run_dir / "seller.log", ARTIFACTS / "seller.log")
    steps = {s["step"]: s for s in report["steps"]}
    assert "error" not in steps and "timeout" not in steps, report
    assert report["blender"].startswith("4.3") and report["online_access"]
    assert steps["installed"]["enabled"]
    rendered = steps["rendered"]
    assert rendered["done"] == 4 and rendered["failed"] == 0 and rendered["spent"] > 0
    got = exr.read(run_dir / "out" / "result.exr").part("ViewLayer.Combined").pixels
    ref = exr.read(prepared["ref"]).part("ViewLayer.Combined").pixels
    assert np.abs(got - ref).max() == 0.0
    assert decode_qr(run_dir / "out" / "wallet.png") == [f"bitcoin:{DEPOSIT}"]
    # Cancel mid-render: tiles not yet started are refunded, nothing stays blocked, and
    # what was spent is exactly what the balance lost.
    cancelled = steps["cancelled"]
    assert 1 <= cancelled["done"] < cancelled["total"] == 8, cancelled
    assert cancelled["after"]["blocked"] == 0
    assert cancelled["before"]["available"] - cancelled["after"]["available"] \
        == cancelled["spent"] > 0
    # Opening another file mid-animation cancels its job: nothing resumes it later.
    opened, over = steps["opened"], steps["animation_over"]
    assert over["stage"] == "cancelled" and over["done"] < over["total"], over
    state = journal_state(run_dir, opened["job_id"])
    assert state == "cancelled", state
    # Quitting while trades are in flight: Blender is gone within seconds and the job is
    # marked cancelled, so the next start does not resume it.
    quit_job = steps["quit_mid_job"]
    assert quit_job["in_flight"] >= 1
    assert journal_state(run_dir, quit_job["job_id"]) == "cancelled"
    timings = {"render_s": rendered["seconds"], "quit_s": round(quit_seconds, 2),
               "cancel_stop_s": cancelled["stop_s"], "window_s": steps["quit"]["t"]}
    (ARTIFACTS / "timings.json").write_text(json.dumps(timings, indent=1))
    assert quit_seconds < QUIT_LIMIT, timings
