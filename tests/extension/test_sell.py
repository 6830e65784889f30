"""Selling from Blender: workers started through a Blender binary (a stand-in here: no
Blender binary on this machine), and the documented one-liner in ``bpy`` module mode —
it sells, renders a unit bought by ``python -m bitwrk.buy`` through a real exchange, and
stops cleanly on SIGINT and SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from bitwrk.client import ExchangeClient
from bitwrk.render.jobspec import JobSpec
from bitwrk.seller import pool as pool_module
from bitwrk.seller.devices import FAKE_ENV
from bitwrk.seller.pool import BLENDER_BOOT, PACKAGE_ROOT, WorkerPool, blender_binary
from bitwrk.seller.sandbox import CODE_MOUNT
from bitwrk.wire import Bid
from tests.e2e.conftest import ServerProcess
from tests.extension.conftest import HAVE_BPY, HERE, ROOT, bpy_run, fund_buyer, scratch_env

pytestmark = [pytest.mark.skipif(not HAVE_BPY, reason="the bpy module is not installed"),
              pytest.mark.slow]
MODULE = "bl_ext.user_default.bitwrk"
ONE_LINER = ("import bpy, addon_utils; "
             f"addon_utils.enable('{MODULE}', default_set=True); "
             f"import {MODULE} as bitwrk; "
             "bitwrk.sell('{url}', cores=1, min_price=10)")


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("sell-scene")
    (base / "markers").mkdir()
    bpy_run([str(ROOT / "tests/data/scenes/make_scene.py"), str(base / "job"),
             "--evil", str(base / "markers")], scratch_env(base))
    return base / "job/scene.blend"


def fake_blender(tmp_path: Path) -> tuple[Path, Path]:
    """An executable that behaves as a Blender binary on the command line; its call log."""
    log = tmp_path / "blender-calls.log"
    exe = tmp_path / "blender"
    exe.write_text(f"#!/bin/sh\nFAKE_BLENDER_ARGV0=\"$0\" FAKE_BLENDER_LOG={log} "
                   f"exec {sys.executable} {HERE / 'fake_blender.py'} \"$@\"\n")
    exe.chmod(0o755)
    return exe, log


def test_blender_binary_is_read_from_an_imported_bpy_only(monkeypatch: Any) -> None:
    monkeypatch.setitem(sys.modules, "bpy", SimpleNamespace(app=SimpleNamespace(
        binary_path="/opt/blender/blender")))
    assert blender_binary() == "/opt/blender/blender"
    monkeypatch.setitem(sys.modules, "bpy", SimpleNamespace(app=SimpleNamespace(binary_path="")))
    assert blender_binary() is None  # bpy module mode
    monkeypatch.delitem(sys.modules, "bpy")
    assert blender_binary() is None


def test_worker_argv_in_a_blender_binary_and_in_module_mode() -> None:
    module = WorkerPool({0}, 1, cost_class="512M").argv([0])
    assert module[:4] == [sys.executable, "-I", "-c", pool_module.BOOT]  # unchanged
    assert module[4:7] == [CODE_MOUNT, "--cpus", "0"]  # the package as the sandbox shows it
    unsandboxed = WorkerPool({0}, 1, cost_class="512M", unsandboxed=True).argv([0])
    assert unsandboxed[4:7] == [str(PACKAGE_ROOT), "--cpus", "0"]
    binary = WorkerPool({0}, 1, cost_class="512M", blender="/b/blender").argv([0])
    assert binary[:2] == ["/b/blender", "-b"] and "--factory-startup" in binary
    i = binary.index("--python-expr")
    assert binary[i + 1] == BLENDER_BOOT and binary[i + 2] == "--"
    assert binary[i + 3:i + 6] == [CODE_MOUNT, "--cpus", "0"]
    assert "--max-budget" in binary[i + 3:]


async def test_pool_renders_through_a_blender_binary(scene: Path, tmp_path: Path) -> None:
    exe, log = fake_blender(tmp_path)
    spec = JobSpec(blend="scene.blend", scene="Shot", view_layers=("ViewLayer",), frame=1,
                   width=96, height=64, x0=0, x1=48, y0=0, y1=32, samples=16, seed=0,
                   max_bounces=6)
    # The stand-in is a script that runs this repo's Python on a file outside its folder;
    # a real Blender is one self-contained folder, which is all its sandbox shows.
    async with WorkerPool({0}, 1, cost_class="512M", blender=str(exe),
                          unsandboxed=True) as pool:
        first = await pool.render(scene, spec, tmp_path / "a.exr")
        second = await pool.render(scene, spec.with_rect(spec.rect), tmp_path / "b.exr")
    assert first.cold_start and second.warm and second.pid == first.pid
    assert (tmp_path / "a.exr").stat().st_size > 0
    calls = log.read_text().splitlines()
    assert len(calls) == 1 and "'--python-expr'" in calls[0]  # one warm blender -b worker


def extension_module(name: str) -> Any:
    """A module of the extension from the source tree (its root imported as a package)."""
    import importlib
    import importlib.util

    if "bitwrk_ext" not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            "bitwrk_ext", ROOT / "__init__.py", submodule_search_locations=[str(ROOT)])
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["bitwrk_ext"] = module
        spec.loader.exec_module(module)
    return importlib.import_module(f"bitwrk_ext.{name}")


async def test_frame_writer_runs_through_a_blender_binary_too(scene: Path,
                                                              tmp_path: Path) -> None:
    """Render Animation's writer: ``blender -b --python write_frames.py -- ...`` writes the
    same file as the ``bpy`` module's writer."""
    import json

    from bitwrk.render.tiling import Rect
    from tests.extension.test_animation import pixels

    animation = extension_module("blender.animation")
    exe, _log = fake_blender(tmp_path)
    spec = JobSpec(blend="scene.blend", scene="Shot", view_layers=("ViewLayer",), frame=1,
                   width=96, height=64, x0=0, x1=96, y0=0, y1=64, samples=16, seed=0,
                   max_bounces=6)
    tiles = []
    async with WorkerPool({0}, 1, cost_class="512M") as pool:
        for i, rect in enumerate((Rect(0, 48, 0, 64), Rect(48, 96, 0, 64))):
            await pool.render(scene, spec.with_rect(rect), tmp_path / f"t{i}.exr")
            tiles.append({"path": str(tmp_path / f"t{i}.exr"),
                          "spec": spec.with_rect(rect).to_json()})
    written = {}
    for name, binary in (("module", None), ("binary", str(exe))):
        out = tmp_path / name / "shot_0001.png"
        request = json.dumps({"frame": 1, "path": str(out), "tiles": tiles}) + "\n"
        done = subprocess.run(animation.writer_argv(binary, scene, "Shot"), input=request,
                              capture_output=True, text=True, timeout=120,
                              env=scratch_env(tmp_path / f"{name}-home"))
        answers = [json.loads(ln) for ln in done.stdout.splitlines() if ln.startswith("{")]
        assert done.returncode == 0 and answers[-1]["ok"], done.stdout + done.stderr[-2000:]
        written[name] = pixels(out)
    assert written["module"][0] == written["binary"][0]
    assert (written["module"][1] == written["binary"][1]).all()


def start_seller(url: str, env: dict[str, str], log: Path,
                 device: str = "cpu") -> subprocess.Popen[bytes]:
    line = ONE_LINER.replace("{url}", url).replace("min_price=10)",
                                                   f"min_price=10, device={device!r})")
    with open(log, "wb") as out:
        return subprocess.Popen([sys.executable, "-c", line],
                                env=env, cwd=log.parent, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


def wait_for_text(log: Path, pattern: str, proc: subprocess.Popen[bytes],
                  timeout: float = 120) -> re.Match[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = re.search(pattern, log.read_text(errors="replace"))
        if found:
            return found
        assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
        time.sleep(0.2)
    raise AssertionError(log.read_text(errors="replace")[-3000:])


def processes_using(path: Path) -> list[int]:
    """Live processes whose command line mentions ``path`` (the installed extension)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
                state = (entry / "stat").read_text().split()[2]
            except OSError:
                continue
            if str(path).encode() in cmdline and state != "Z":
                found.append(int(entry.name))
    return found


def worker_commands(path: Path) -> list[list[str]]:
    """Command lines of the processes that show ``path`` to a worker (its sandbox)."""
    return [Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
            for pid in processes_using(path)
            if b"bitwrk.seller.worker" in Path(f"/proc/{pid}/cmdline").read_bytes()]


def open_bids(url: str, address: str) -> list[Bid]:
    async def read() -> list[Bid]:
        async with ExchangeClient(url) as client:
            return await client.bids(address, state="placed")

    return asyncio.run(read())


def test_sell_one_liner_in_module_mode_sells_and_stops_cleanly(
        extension_zip: Path, scene: Path, tmp_path: Path) -> None:
    exchange = ServerProcess(tmp_path / "exchange", timeout_scale=0.5).start()
    try:
        seller_home = tmp_path / "seller"
        seller_home.mkdir()
        env = scratch_env(seller_home)
        subprocess.run([sys.executable, "-c", "import bpy; print(bpy.ops.extensions."
                        f"package_install_files(filepath={str(extension_zip)!r}, "
                        "repo='user_default', enable_on_install=True))"],
                       env=env, check=True, capture_output=True, timeout=300)
        installed = seller_home / "blender-user" / "extensions" / "user_default" / "bitwrk"
        assert (installed / "blender_manifest.toml").is_file()

        log = seller_home / "sell-1.log"
        proc = start_seller(exchange.url, env, log)
        wait_for_text(log, r"seller \S+ on http", proc)
        buyer = tmp_path / "buyer"
        buyer_env = {**scratch_env(buyer), "PYTHONPATH": str(ROOT)}
        fund_buyer(exchange.url, tmp_path / "exchange" / "exchange.sqlite3", buyer_env)
        bought = subprocess.run(
            [sys.executable, "-m", "bitwrk.buy", str(scene), "--exchange", exchange.url,
             "--max-price", "100", "--tiles", "1", "--frames", "1", "--out",
             str(tmp_path / "bought"), "--timeout", "240", "--allow-local-sellers"],
            env=buyer_env, cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert bought.returncode == 0, bought.stdout[-2000:] + bought.stderr[-3000:]
        assert (tmp_path / "bought" / "Shot_0001.png").is_file(), bought.stdout
        earned = wait_for_text(log, r"earned ([1-9]\d*) sat", proc)
        assert int(earned.group(1)) >= 10
        assert processes_using(installed), "the seller's worker runs from the extension"
        assert all(Path(cmd[0]).name == "bwrap" for cmd in worker_commands(installed)), \
            "sell() runs its workers in the sandbox by default"
        os.kill(proc.pid, signal.SIGINT)
        assert proc.wait(60) == 0, log.read_text()[-3000:]
        assert "seller stopped" in log.read_text()

        # the second time it sells a (fake) GPU: its bids are for the ~gpu article
        log = seller_home / "sell-2.log"
        fake = [{"backend": "OPTIX", "name": "Fake RTX 6000", "id": "OPTIX_fake0"}]
        proc = start_seller(exchange.url, {**env, FAKE_ENV: json.dumps(fake)}, log, "gpu")
        address = wait_for_text(log, r"seller (\S+) on http.*device gpu", proc).group(1)
        deadline = time.monotonic() + 60
        while not (bids := open_bids(exchange.url, address)) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert bids and all(b.article.endswith("/512M~gpu") for b in bids), bids
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(60) == 0, log.read_text()[-3000:]
        assert "seller stopped" in log.read_text()
        deadline = time.monotonic() + 10
        while processes_using(installed) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not processes_using(installed), "no worker outlives the seller"
    finally:
        exchange.close()
