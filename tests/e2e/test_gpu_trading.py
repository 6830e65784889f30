"""GPU time on the market, through real processes on loopback: a CPU seller and a GPU
seller (a fake device list; its sandboxed workers render on the CPU) sell side by side;
a buyer who accepts GPU results buys the ``~gpu`` article and only the GPU seller renders
for it, a buyer who does not gets the CPU seller."""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from bitwrk.client import ExchangeClient
from bitwrk.seller.devices import FAKE_ENV
from tests.blender.conftest import BLENDER_LINE, needs_bpy, scene_dir  # noqa: F401 - fixture
from tests.e2e.conftest import REPO, ServerProcess
from tools.processes import Proc

pytestmark = [pytest.mark.slow, needs_bpy]
FAKES = [{"backend": "OPTIX", "name": "Fake RTX 6000", "id": "OPTIX_fake0"}]


def _env(base: Path) -> dict[str, str]:
    return {"XDG_DATA_HOME": str(base / "data"), "XDG_CACHE_HOME": str(base / "cache"),
            "BLENDER_USER_RESOURCES": str(base / "user"), "PYTHONPATH": str(REPO),
            "PATH": "/usr/bin:/bin", "TMPDIR": str(base)}


def _seller(name: str, server: ServerProcess, base: Path, cpu: int, *extra: str,
            env: dict[str, str] | None = None) -> Proc:
    (base / name).mkdir()
    return Proc(name, [sys.executable, "-m", "bitwrk.seller", "--exchange", server.url,
                       "--min-price", "10", "--cpus", str(cpu), "--status-port", "-1", *extra],
                {**_env(base / name), **(env or {})}, base / f"{name}.log")


def _buy(scene: Path, server: ServerProcess, base: Path, tag: str, *extra: str
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bitwrk.buy", str(scene), "--exchange", server.url,
         "--max-price", "100", "--tiles", "2", "--out", str(base / f"out-{tag}"),
         "--timeout", "240", "--allow-local-sellers", *extra],
        cwd=REPO, env=_env(base / "buyer"), capture_output=True, text=True, timeout=300)


def test_gpu_units_go_to_gpu_sellers_and_cpu_units_to_cpu_sellers(
    scene_dir: Path, server: ServerProcess, tmp_path: Path  # noqa: F811
) -> None:
    (tmp_path / "buyer").mkdir()
    account = subprocess.run([sys.executable, "-m", "bitwrk", "account"], cwd=REPO,
                             env=_env(tmp_path / "buyer"), capture_output=True, text=True,
                             timeout=60)
    address = account.stdout.split("address", 1)[1].split()[0]

    async def fund() -> None:
        async with ExchangeClient(server.url, server.operator_key) as op:
            await op.deposit(address, 100_000, kind="play", uid="t-" + secrets.token_hex(8))

    asyncio.run(fund())
    cpu = _seller("cpu-seller", server, tmp_path, 0)
    gpu = _seller("gpu-seller", server, tmp_path, 1, "--device", "gpu",
                  env={FAKE_ENV: json.dumps(FAKES)})
    try:
        cpu.wait_for(r"seller \S+ on http", 120)
        started = gpu.wait_for(r"seller \S+ on http.*", 120).group(0)
        assert "device OPTIX Fake RTX 6000" in started
        on_gpu = _buy(scene_dir / "scene.blend", server, tmp_path, "gpu", "--gpu")
        assert on_gpu.returncode == 0, on_gpu.stdout + on_gpu.stderr
        assert f"units of net.bitwrk/blender/{BLENDER_LINE}/512M~gpu" in on_gpu.stdout
        assert len(re.findall(r"rendered for", gpu.output())) == 2, gpu.output()
        assert "rendered for" not in cpu.output()
        on_cpu = _buy(scene_dir / "scene.blend", server, tmp_path, "cpu")
        assert on_cpu.returncode == 0, on_cpu.stdout + on_cpu.stderr
        assert f"units of net.bitwrk/blender/{BLENDER_LINE}/512M " in on_cpu.stdout
        assert len(re.findall(r"rendered for", cpu.output())) == 2, cpu.output()
        assert len(re.findall(r"rendered for", gpu.output())) == 2
        for log in (cpu.output(), gpu.output(), on_gpu.stderr, on_cpu.stderr):
            assert "Traceback" not in log, log
        assert sorted(p.name for p in (tmp_path / "out-gpu").iterdir()) == sorted(
            p.name for p in (tmp_path / "out-cpu").iterdir())
    finally:
        cpu.stop()
        gpu.stop()
