"""GPU selling through real processes, without a GPU: sandboxed workers on a fake device
list (``BITWRK_FAKE_GPUS``; they render on the CPU), the sandbox's device nodes, real
bpy refusing a GPU it cannot use, the seller's ``--list-devices`` and the GPU check."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bitwrk.render import exr
from bitwrk.render.errors import JobSpecError
from bitwrk.seller import devices
from bitwrk.seller.pool import WorkerPool
from tests.blender.conftest import ROOT, bpy_env, needs_bpy, run_bpy

pytestmark = [needs_bpy, pytest.mark.slow]
TILE = {"x0": 0, "x1": 48, "y0": 0, "y1": 32}
FAKES = [{"backend": "OPTIX", "name": "Fake RTX 6000", "id": "OPTIX_fake0",
          "memory": 48 << 30},
         {"backend": "CUDA", "name": "Fake RTX 6000", "id": "CUDA_fake0"}]
REAL_GPU = any(os.path.exists(p) for p in ("/dev/nvidia0", "/dev/kfd"))


@pytest.fixture
def fake_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(devices.FAKE_ENV, json.dumps(FAKES))


async def test_a_fake_gpu_worker_takes_gpu_units_only(scene_dir: Path, tmp_path: Path,
                                                      frame_spec: Any, fake_gpus: None) -> None:
    async with WorkerPool(slots=1, device="gpu") as pool:
        ready = await pool.detect()
        assert [d["name"] for d in ready["devices"]] == ["Fake RTX 6000"] * 2
        assert ready["device"] == "OPTIX" and ready["fake_devices"]
        assert [d["id"] for d in ready["chosen"]] == ["OPTIX_fake0"]
        done = await pool.render(scene_dir / "scene.blend", frame_spec(device="GPU", **TILE),
                                 tmp_path / "gpu.exr")
        again = await pool.render(scene_dir / "scene.blend",
                                  frame_spec(device="OPTIX", **TILE), tmp_path / "optix.exr")
        assert again.warm and again.pid == done.pid  # the device stays set up: a warm unit
        for wrong in ("CPU", "CUDA"):  # a CPU unit must equal a CPU render: never on a GPU
            with pytest.raises(JobSpecError, match=f"renders on OPTIX, job wants {wrong}"):
                await pool.render(scene_dir / "scene.blend", frame_spec(device=wrong, **TILE),
                                  tmp_path / "cpu.exr")
    async with WorkerPool(slots=1) as cpu_pool:
        with pytest.raises(JobSpecError, match="renders on the CPU, job wants GPU"):
            await cpu_pool.render(scene_dir / "scene.blend", frame_spec(device="GPU", **TILE),
                                  tmp_path / "refused.exr")
        cpu = await cpu_pool.render(scene_dir / "scene.blend", frame_spec(**TILE),
                                    tmp_path / "cpu.exr")
    ours, theirs = exr.read(cpu.out), exr.read(done.out)
    assert [p.name for p in ours.parts] == [p.name for p in theirs.parts]
    for a, b in zip(ours.parts, theirs.parts, strict=True):
        assert np.array_equal(a.pixels, b.pixels)  # fakes render on the CPU, same pixels


@pytest.mark.skipif(REAL_GPU, reason="this machine has a GPU")
async def test_no_gpu_here_means_a_clear_refusal_at_start(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    monkeypatch.delenv(devices.FAKE_ENV, raising=False)
    async with WorkerPool(slots=1, device="gpu:cuda") as pool:
        with pytest.raises(devices.DeviceError, match="no GPU for gpu:cuda"):
            await pool.detect()
        assert pool.pids() == []  # the worker that found nothing is gone
    monkeypatch.setenv(devices.FAKE_ENV, json.dumps(FAKES))
    async with WorkerPool(slots=1, device="gpu:cuda:1") as pool:
        with pytest.raises(devices.DeviceError, match="no CUDA device 1"):
            await pool.detect()


def _sandbox_dev(pool: WorkerPool, tmp_path: Path) -> list[str]:
    home = tmp_path / f"home-{len(list(tmp_path.iterdir()))}"
    home.mkdir()
    argv, env = pool.command(["/bin/ls", "/dev"], home)
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


@pytest.mark.skipif(not os.path.exists("/dev/fuse"), reason="needs a /dev node to stand in")
def test_the_sandbox_shows_gpu_nodes_to_gpu_workers_only(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """/dev/fuse stands in for a GPU's node (the real /dev/nvidia* exist only with a GPU):
    a GPU worker's sandbox has it, a CPU worker's does not, nor any other host node."""
    monkeypatch.setitem(devices.NODE_PREFIXES, "CUDA", ("fuse",))
    cpu = _sandbox_dev(WorkerPool(slots=1), tmp_path)
    gpu = _sandbox_dev(WorkerPool(slots=1, device="gpu:cuda"), tmp_path)
    assert "fuse" not in cpu and "fuse" in gpu
    assert set(gpu) - set(cpu) == {"fuse"}
    assert not {"kmsg", "kvm", "loop0", "nvidiactl"} & set(gpu)


def test_real_blender_refuses_a_gpu_it_cannot_use(tmp_path: Path, scene_dir: Path) -> None:
    """In a fresh Blender the backend is NONE: a scene set to GPU renders on the CPU. The
    worker's selection check reads Cycles' own preferences back and refuses both ways."""
    script = tmp_path / "check.py"
    script.write_text(f"""
import json, bpy
from bitwrk.seller import devices
bpy.ops.wm.open_mainfile(filepath={str(scene_dir / "scene.blend")!r}, load_ui=False,
                         use_scripts=False)
scene, prefs, out = bpy.context.scene, devices.cycles_prefs(bpy), {{}}
scene.cycles.device = "GPU"
try:
    devices.check_selection("CUDA", [(e.type, e.id, bool(e.use)) for e in prefs.devices],
                            prefs.compute_device_type, scene.cycles.device, {{"CUDA_x"}})
except devices.CpuFallback as exc:
    out["backend_none"] = exc.message
try:
    devices.use_gpu(bpy, scene, [devices.Device("CUDA", "Ghost", "CUDA_ghost")])
except devices.CpuFallback as exc:
    out["missing_device"] = exc.message
out["found"] = [d.to_json() for d in devices.list_devices(bpy)]
print("RESULT " + json.dumps(out))
""")
    result = run_bpy([str(script)], tmp_path)
    out = json.loads(result.stdout.split("RESULT ", 1)[1])
    assert "would render on the CPU" in out["backend_none"]
    assert "CUDA_ghost" in out["missing_device"]
    if not REAL_GPU:
        assert out["found"] == []


def test_the_seller_lists_devices(tmp_path: Path) -> None:
    env = bpy_env(tmp_path)
    env[devices.FAKE_ENV] = json.dumps(FAKES)
    done = subprocess.run([sys.executable, "-m", "bitwrk.seller", "--list-devices"], env=env,
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["0: OPTIX Fake RTX 6000, 48.0 GiB  (fake)",
                                        "1: CUDA Fake RTX 6000  (fake)"]


@pytest.mark.skipif(REAL_GPU, reason="this machine has a GPU")
def test_the_gpu_check_says_no_gpu_and_still_renders_on_the_cpu(tmp_path: Path) -> None:
    env = bpy_env(tmp_path)
    env.pop(devices.FAKE_ENV, None)
    done = subprocess.run([sys.executable, str(ROOT / "tools/gpu_check.py"), "--units", "1",
                           "--scale", "1", "--budget", "150"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=200)
    assert done.returncode == 0, done.stderr
    assert "no GPU" in done.stdout
    summary = done.stdout.split("=== GPU check summary ===", 1)[1]
    cpu_row = next(line for line in summary.splitlines() if line.startswith("CPU "))
    assert "(reference)" in cpu_row and "FAILED" not in cpu_row
    first_ms = int(cpu_row.split()[1])
    assert first_ms > 0


def test_the_gpu_check_dry_run_on_fake_devices(tmp_path: Path) -> None:
    """The GPU rows of the check (selection, warm units, differences, the table) run on
    fake devices, rendered on the CPU: identical pixels, the fallback check catching a
    backend left at NONE, and no OptiX line in a CPU render's status."""
    env = bpy_env(tmp_path)
    env[devices.FAKE_ENV] = json.dumps(FAKES)
    done = subprocess.run([sys.executable, str(ROOT / "tools/gpu_check.py"), "--units", "1",
                           "--scale", "1", "--budget", "150"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=200)
    assert done.returncode == 0, done.stderr
    summary = done.stdout.split("=== GPU check summary ===", 1)[1]
    rows = {line.split()[0]: line for line in summary.splitlines()
            if line.split() and line.split()[0] in ("CPU", "OPTIX", "CUDA")}
    assert set(rows) == {"CPU", "OPTIX", "CUDA"}, summary
    for backend in ("OPTIX", "CUDA"):
        cols = rows[backend].split()
        assert cols[5:8] == ["0.00e+00", "0.00e+00", "inf"], rows[backend]
    assert summary.count("fallback check: caught") == 2
    assert "GPU seen in the stats (worker's check): False" in summary  # OptiX, on the CPU
