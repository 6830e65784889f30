"""The "BitWrk" render engine, headless, through a real exchange and two sellers: tiles land
in the render result one by one, and the result equals a local Cycles render bit for bit."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bitwrk.render import exr
from tests.e2e.conftest import ServerProcess
from tests.extension.conftest import HAVE_BPY, HERE, ROOT, run_report, scratch_env

pytestmark = [pytest.mark.skipif(not HAVE_BPY, reason="the bpy module is not installed"),
              pytest.mark.slow]


def bpy_run(args: list[str], env: dict[str, str]) -> None:
    done = subprocess.run([sys.executable, *args], env={**env, "PYTHONPATH": str(ROOT)},
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The bundled scene and local reference renders (plain and denoised)."""
    base = tmp_path_factory.mktemp("scene")
    env = scratch_env(base)
    (base / "markers").mkdir()
    bpy_run([str(ROOT / "tests/data/scenes/make_scene.py"), str(base / "job"),
             "--evil", str(base / "markers")], env)
    bpy_run([str(ROOT / "tests/blender/reference_render.py"), str(base / "job/scene.blend"),
             str(base / "ref"), "plain:1:0:0", "denoised:1:1:0"], env)
    return {"blend": base / "job/scene.blend", "ref": base / "ref"}


@pytest.fixture
def exchange_with_sellers(tmp_path: Path) -> Iterator[str]:
    exchange = ServerProcess(tmp_path / "exchange", timeout_scale=0.5).start()
    procs = []
    for i in range(2):
        base = tmp_path / f"seller{i}"
        base.mkdir()
        env = {**scratch_env(base), "PYTHONPATH": str(ROOT)}
        log = open(base / "out.log", "w")  # noqa: SIM115 - closed below
        procs.append((subprocess.Popen(
            [sys.executable, "-m", "bitwrk.seller", "--exchange", exchange.url, "--cpus",
             str(i), "--min-price", str(10 + i), "--classes", "512M"], env=env, cwd=ROOT,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True), log, base))
    try:
        for _proc, _log, base in procs:
            wait_for(base / "out.log", r"seller \S+ on http")
        yield exchange.url
    finally:
        for proc, log, _base in procs:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
            log.close()
        exchange.close()


def wait_for(path: Path, pattern: str, timeout: float = 90) -> None:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if re.search(pattern, path.read_text()):
            return
        time.sleep(0.2)
    raise AssertionError(path.read_text()[-2000:])


def fund_buyer(exchange_url: str, db: Path, env: dict[str, str]) -> None:
    run = {**env, "PYTHONPATH": str(ROOT)}
    account = subprocess.run([sys.executable, "-m", "bitwrk", "account"], env=run, cwd=ROOT,
                             capture_output=True, text=True, timeout=60)
    address = re.search(r"address\s+(\S+)", account.stdout).group(1)  # type: ignore[union-attr]
    credit = subprocess.run([sys.executable, "-m", "service", "credit", address, "1000000",
                             "--exchange", exchange_url, "--db", str(db)], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert credit.returncode == 0, credit.stderr


def combined(path: Path) -> Any:
    return exr.read(path).part("ViewLayer.Combined").pixels


def png(path: Path) -> Any:
    io = exr.oiio()
    inp = io.ImageInput.open(str(path))
    data = inp.read_image(0, 0, 0, inp.spec().nchannels, "uint8")
    inp.close()
    return np.asarray(data).astype(np.int16)


@pytest.mark.parametrize("denoise", [False, True], ids=["plain", "denoised"])
def test_f12_on_bitwrk_equals_a_local_render(
        extension_zip: Path, scene: dict[str, Path], exchange_with_sellers: str,
        tmp_path: Path, denoise: bool) -> None:
    db = tmp_path / "exchange" / "exchange.sqlite3"
    buyer = tmp_path / "buyer"
    env = scratch_env(buyer)
    fund_buyer(exchange_with_sellers, db, env)
    stem = tmp_path / "result"
    report = run_report([str(HERE / "render_check.py"), str(extension_zip),
                         str(scene["blend"]), exchange_with_sellers, str(stem), "4",
                         "1" if denoise else "0"], env)
    assert report["result"] == ["FINISHED"], report
    tiles = [entry for entry in report["log"] if entry[5] == "tile"]
    assert len(tiles) == 4 and report["done"] == 4 and report["failed"] == 0
    assert len({tuple(t[1:5]) for t in tiles}) == 4  # each tile its own begin/end_result
    assert report["spent"] > 0 and report["stopped"]
    name = "denoised" if denoise else "plain"
    if denoise:
        assert report["log"][-1][5] == "denoised"  # one whole-frame write after the tiles
    assert np.abs(combined(stem.with_suffix(".exr"))
                  - combined(scene["ref"] / f"{name}.exr")).max() == 0.0
    assert np.abs(png(stem.with_suffix(".png")) - png(scene["ref"] / f"{name}.png")).max() == 0

