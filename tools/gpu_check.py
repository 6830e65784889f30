"""The GPU check: list Cycles' devices, render the bench tile on OptiX, CUDA and the CPU,
and print times and how far the GPU's pixels are from the CPU's.

Needs only a Python with ``bpy`` importable (e.g. via ``PYTHONPATH``) and numpy, plus this
repository's ``bitwrk`` package (found next to this file). No sandbox: it drives bpy
directly, one child process per device, so a backend that hangs (a driver compiling
kernels for a GPU Blender ships no binary for) cannot stop the rest. Every step reports
what failed and carries on; the whole run stays under ``--budget`` seconds (170).

    PYTHONPATH=/path/to/site-packages-with-bpy python tools/gpu_check.py [--units 5]

What it measures, per device:

- the bench tile (``bench/render.py``: 48x32 px of the 96x64 test scene, 16 spp): the
  first unit (device initialised, kernels loaded) and ``--units`` more on the same warm
  process, so the warm-worker overhead is first - median(warm);
- one large unit (the same scene at ``--scale`` times the size, 64 spp), where the GPU's
  speed shows;
- GPU against CPU pixels of the same unit: max and mean absolute difference, PSNR, and
  the share of pixels outside the result check's CPU and GPU tolerances
  (``bitwrk.render.verify``) — the figures that calibrate the GPU tolerance;
- the Cycles status lines seen on the GPU but never on the CPU (evidence that the GPU
  rendered), and that the CPU-fallback check refuses a GPU render left at backend NONE.

``BITWRK_FAKE_GPUS`` (see ``bitwrk.seller.devices``) makes a dry run: the fake devices get
rows, rendered on the CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

BENCH_TILE = {"width": 96, "height": 64, "x0": 0, "x1": 48, "y0": 0, "y1": 32,
              "samples": 16, "seed": 0, "max_bounces": 6}
GPU_BACKENDS = ("OPTIX", "CUDA", "HIP", "ONEAPI", "METAL")
DEFAULT_BUDGET = 170.0


def log(message: str) -> None:
    print(f"[gpu-check {time.strftime('%H:%M:%S')}] {message}", flush=True)


# --- child side: runs under bpy ---------------------------------------------------------


def child_env(work: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env.setdefault("BLENDER_USER_RESOURCES", str(work / "blender"))
    env.setdefault("XDG_CACHE_HOME", str(work / "cache"))
    # CUDA's JIT cache: large enough for Cycles' kernel, so a second run reuses it.
    env.setdefault("CUDA_CACHE_MAXSIZE", str(4 << 30))
    env.setdefault("CUDA_CACHE_PATH", str(work / "nv-cache"))
    driver = "/usr/local/nvidia/lib64"  # containers often mount the driver here
    if os.path.isdir(driver) and driver not in env.get("LD_LIBRARY_PATH", ""):
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            p for p in (env.get("LD_LIBRARY_PATH"), driver) if p)
    return env


def build_scene_inline(bpy: Any, out: Path) -> None:
    """A stand-in for tests/data/scenes/make_scene.py when the repo's tests are absent."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.name = "Shot"
    scene.view_layers[0].name = "ViewLayer"
    r = scene.render
    r.engine = "CYCLES"
    r.resolution_x, r.resolution_y, r.resolution_percentage = 96, 64, 100
    scene.cycles.samples, scene.cycles.use_adaptive_sampling = 16, False
    scene.cycles.use_denoising = False
    bpy.ops.mesh.primitive_plane_add(size=8)
    bpy.ops.mesh.primitive_cube_add(size=1.2, location=(-1.0, 0.0, 0.6))
    bpy.ops.mesh.primitive_uv_sphere_add(radius=0.6, location=(1.2, 0.6, 0.6))
    bpy.ops.object.light_add(type="SUN")
    bpy.ops.object.camera_add(location=(0.0, -6.0, 3.2), rotation=(1.134, 0, 0))
    scene.camera = bpy.context.object
    out.mkdir(parents=True, exist_ok=True)
    bpy.ops.wm.save_as_mainfile(filepath=str(out / "scene.blend"))


def child_list(_args: argparse.Namespace) -> dict[str, Any]:
    import bpy

    info: dict[str, Any] = {"blender": bpy.app.version_string}
    try:
        import importlib

        info["device_types"] = repr(importlib.import_module("_cycles").get_device_types())
    except Exception as exc:
        info["device_types_error"] = repr(exc)
    try:
        from bitwrk.seller import devices

        info["devices"] = [d.to_json() for d in devices.list_devices(bpy)]
    except Exception:
        info["bitwrk_error"] = traceback.format_exc(limit=3)
        prefs = bpy.context.preferences.addons["cycles"].preferences
        prefs.refresh_devices()
        info["devices"] = [{"backend": b, "name": e.name, "id": e.id, "memory": None}
                           for b in GPU_BACKENDS for e in prefs.get_devices_for_type(b)
                           if e.type == b]
    return info


def configure(bpy: Any, scene: Any, spec: dict[str, Any]) -> str:
    """Apply the unit through the seller's own code (inline if bitwrk fails); returns how."""
    try:
        from bitwrk.render.jobspec import JobSpec
        from bitwrk.seller import tile

        job = JobSpec(blend="scene.blend", scene=scene.name, view_layers=("ViewLayer",),
                      frame=1, **spec)
        tile.configure(scene, job, 0)
        how = "bitwrk.seller.tile.configure"
    except Exception as exc:
        r, cy = scene.render, scene.cycles
        r.resolution_x, r.resolution_y, r.resolution_percentage = (spec["width"],
                                                                  spec["height"], 100)
        w, h = spec["width"], spec["height"]
        r.use_border = (spec["x0"], spec["x1"], spec["y0"], spec["y1"]) != (0, w, 0, h)
        r.use_crop_to_border = True
        r.border_min_x, r.border_max_x = (spec["x0"] + 0.5) / w if spec["x0"] else 0.0, min(
            (spec["x1"] + 0.5) / w, 1.0)
        r.border_min_y, r.border_max_y = (spec["y0"] + 0.5) / h if spec["y0"] else 0.0, min(
            (spec["y1"] + 0.5) / h, 1.0)
        cy.samples, cy.seed, cy.max_bounces = spec["samples"], spec["seed"], spec["max_bounces"]
        cy.use_denoising, cy.use_adaptive_sampling, cy.time_limit = False, False, 0.0
        r.dither_intensity = 0.0
        r.use_persistent_data = True
        how = f"inline ({type(exc).__name__}: {exc})"
    ims = scene.render.image_settings
    wanted = {"media_type": "IMAGE", "file_format": "OPEN_EXR", "color_mode": "RGBA",
              "color_depth": "32"}  # in this order: 5.0's media type gates the format
    for name, value in wanted.items():
        if hasattr(ims, name) and getattr(ims, name) != value:
            setattr(ims, name, value)
    return how


def reselect(bpy: Any, scene: Any, chosen: list[Any]) -> None:
    """What the worker does before every unit: the device set again (unchanged values are
    not written, so a warm scene stays warm)."""
    from bitwrk.seller import devices

    if chosen:
        devices.use_gpu(bpy, scene, chosen)
    else:
        devices.use_cpu(bpy, scene)


def select_device(bpy: Any, scene: Any, backend: str) -> dict[str, Any]:
    """Pick ``backend`` (every device of it) the way the seller does; report the checks."""
    report: dict[str, Any] = {}
    if backend == "CPU":
        scene.cycles.device = "CPU"
        return report
    from bitwrk.seller import devices

    prefs = devices.cycles_prefs(bpy)
    try:  # a scene set to GPU with the backend left at NONE must be refused
        scene.cycles.device = "GPU"
        devices.check_selection(backend, [(e.type, e.id, bool(e.use)) for e in prefs.devices],
                                prefs.compute_device_type, "GPU", {"x"})
        report["fallback_check"] = "NOT caught"
    except devices.CpuFallback as exc:
        report["fallback_check"] = f"caught ({exc.message[:60]})"
    chosen = devices.pick(devices.list_devices(bpy), devices.DeviceChoice(True, backend))
    if devices.fake_devices() is not None:  # a dry run of this script: the CPU renders
        devices.use_cpu(bpy, scene)
        report.update(devices=[f"{d.describe()} (fake: rendered on the CPU)" for d in chosen],
                      used=["CPU"])
        return report
    devices.use_gpu(bpy, scene, chosen)
    report["chosen"] = chosen
    report["devices"] = [d.describe() for d in chosen]
    report["used"] = [f"{e.type}:{e.name}" for e in prefs.devices if e.use]
    return report


def render_once(bpy: Any, scene: Any, out: Path, stats: list[str]) -> tuple[float, Any]:
    import numpy as np

    stats.clear()
    started = time.perf_counter()
    bpy.ops.render.render(scene=scene.name)
    result = bpy.data.images["Render Result"]
    result.save_render(filepath=str(out), scene=scene)
    seconds = time.perf_counter() - started
    image = bpy.data.images.load(str(out))
    w, h = image.size
    pixels = np.empty(w * h * 4, dtype=np.float32)
    image.pixels.foreach_get(pixels)
    bpy.data.images.remove(image)
    return seconds, pixels.reshape(h, w, 4)


def child_render(args: argparse.Namespace) -> dict[str, Any]:
    import bpy
    import numpy as np

    work, backend = Path(args.work), args.backend
    bpy.ops.wm.open_mainfile(filepath=str(work / "job" / "scene.blend"), load_ui=False,
                             use_scripts=False)
    scene = bpy.data.scenes.get("Shot") or bpy.context.scene
    stats: list[str] = []
    bpy.app.handlers.render_stats.append(lambda text, *_a: stats.append(str(text)))
    report: dict[str, Any] = {"backend": backend, "configure": configure(bpy, scene,
                                                                          BENCH_TILE)}
    report.update(select_device(bpy, scene, backend))
    chosen = report.pop("chosen", [])
    seen: set[str] = set()
    times, first = [], []
    for i in range(args.units + 1):
        if i:  # as the worker does for every unit: the spec, then the device, again
            configure(bpy, scene, BENCH_TILE)
            reselect(bpy, scene, chosen)
        seconds, pixels = render_once(bpy, scene, work / f"{backend}-tile.exr", stats)
        seen.update(s.split("|")[-1].strip() for s in stats)
        times.append(seconds)
        if i == 0:
            first = list(stats)
            np.save(work / f"{backend}-tile.npy", pixels)
            report["first_stats"] = sorted({s.split("|")[-1].strip()[:70] for s in stats})
    report["tile_first"], report["tile_warm"] = times[0], times[1:]
    try:
        from bitwrk.seller import devices

        report["oom_or_error"] = ""
        if backend != "CPU":
            report["gpu_evidence"] = devices.check_render_stats(first, backend)
        devices.check_render_stats(stats, backend)  # OOM or errors on a warm unit
    except Exception as exc:
        report["oom_or_error"] = repr(exc)[:200]
    large = dict(BENCH_TILE, width=96 * args.scale, height=64 * args.scale, x0=0,
                 x1=96 * args.scale, y0=0, y1=64 * args.scale, samples=64)
    configure(bpy, scene, large)
    reselect(bpy, scene, chosen)
    seconds, pixels = render_once(bpy, scene, work / f"{backend}-large.exr", stats)
    np.save(work / f"{backend}-large.npy", pixels)
    report["large"], report["large_size"] = seconds, [large["width"], large["height"]]
    report["statuses"] = sorted(seen)[:200]
    return report


def child_build(args: argparse.Namespace) -> dict[str, Any]:
    out = Path(args.work) / "job"
    maker = ROOT / "tests" / "data" / "scenes" / "make_scene.py"
    if maker.is_file():
        done = subprocess.run([sys.executable, str(maker), str(out)], capture_output=True,
                              text=True, timeout=120)
        if done.returncode == 0:
            return {"scene": str(out / "scene.blend"), "how": "tests/data/scenes/make_scene.py"}
    import bpy

    build_scene_inline(bpy, out)
    return {"scene": str(out / "scene.blend"), "how": "inline stand-in"}


def child_main(args: argparse.Namespace) -> int:
    sys.stdout.flush()
    real = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # Blender's own prints go to stderr; stdout carries our JSON
    try:
        result = {"list": child_list, "render": child_render, "build": child_build}[
            args.child](args)
        result["ok"] = True
    except Exception:
        result = {"ok": False, "error": traceback.format_exc(limit=6)}
    real.write("\nJSON " + json.dumps(result) + "\n")
    real.flush()
    return 0


# --- parent side: orchestrates, never imports bpy ---------------------------------------


class Runner:
    def __init__(self, work: Path, budget: float) -> None:
        self.work, self.deadline = work, time.monotonic() + budget

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def child(self, step: str, *extra: str, timeout: float) -> dict[str, Any]:
        timeout = min(timeout, self.left() - 3)
        if timeout < 5:
            return {"ok": False, "error": "skipped: the time budget is spent"}
        argv = [sys.executable, str(Path(__file__).resolve()), "--child", step, "--work",
                str(self.work), *extra]
        log(f"{step} {' '.join(extra)} (timeout {timeout:.0f} s)")
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                                  env=child_env(self.work))
        except subprocess.TimeoutExpired:
            return {"ok": False, "error": f"timed out after {timeout:.0f} s"}
        except OSError as exc:
            return {"ok": False, "error": f"cannot start: {exc}"}
        for line in reversed(done.stdout.splitlines()):
            if line.startswith("JSON "):
                result: dict[str, Any] = json.loads(line[5:])
                return result
        tail = (done.stderr or done.stdout)[-600:]
        return {"ok": False, "error": f"exit {done.returncode}, no result: {tail}"}


def nvidia_smi() -> str:
    if shutil.which("nvidia-smi") is None:
        return "nvidia-smi not found"
    try:
        return subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version",
                               "--format=csv,noheader"], capture_output=True, text=True,
                              timeout=20).stdout.strip() or "nvidia-smi printed nothing"
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"nvidia-smi failed: {exc}"


def difference(work: Path, backend: str, unit: str) -> dict[str, Any]:
    """GPU against CPU pixels of one unit, and the result check's verdict on them."""
    import numpy as np

    try:
        gpu = np.load(work / f"{backend}-{unit}.npy").astype(np.float64)
        cpu = np.load(work / f"CPU-{unit}.npy").astype(np.float64)
    except OSError as exc:
        return {"error": f"no pixels: {exc}"}
    if gpu.shape != cpu.shape:
        return {"error": f"shapes differ: {gpu.shape} vs {cpu.shape}"}
    diff = np.abs(gpu - cpu)
    mse = float(np.mean(diff[..., :3] ** 2))
    peak = max(1.0, float(cpu[..., :3].max()))
    out: dict[str, Any] = {"max_abs": float(diff.max()), "mean_abs": float(diff.mean()),
                           "psnr": float("inf") if mse == 0 else 10 * np.log10(peak**2 / mse)}
    try:
        from bitwrk.render import verify

        for name, tol in (("cpu_tol", verify.CPU_TOLERANCE), ("gpu_tol", verify.GPU_TOLERANCE)):
            outside = (diff > tol.atol + tol.rtol * np.abs(cpu)).any(axis=2)
            out[name] = float(outside.mean())
        out["gpu_limit"] = verify.GPU_TOLERANCE.max_outliers
    except Exception as exc:
        out["tol_error"] = repr(exc)[:120]
    for rtol in (1e-3, 1e-2, 5e-2):
        out[f"outside_{rtol:g}"] = float((diff > 1e-4 + rtol * np.abs(cpu)).any(axis=2).mean())
    return out


def parent_main(args: argparse.Namespace) -> int:
    log(f"python {sys.version.split()[0]} at {sys.executable}; repo {ROOT}")
    log(f"nvidia-smi: {nvidia_smi()}")
    keep = Path(args.keep) if args.keep else None
    work = keep or Path(tempfile.mkdtemp(prefix="bitwrk-gpu-check-"))
    work.mkdir(parents=True, exist_ok=True)
    runner = Runner(work, args.budget)
    rows: dict[str, dict[str, Any]] = {}
    try:
        built = runner.child("build", timeout=60)
        log(f"scene: {built}")
        listed = runner.child("list", timeout=60)
        log(f"devices: {json.dumps(listed)}")
        found = {d["backend"] for d in listed.get("devices", [])}
        backends = ["CPU", *(b for b in GPU_BACKENDS if b in found)]
        if not found:
            log("no GPU: Cycles finds no GPU device here; CPU rows only")
        per = {"CPU": 70.0}
        for backend in backends:
            rows[backend] = runner.child("render", "--backend", backend, "--units",
                                         str(args.units), "--scale", str(args.scale),
                                         timeout=per.get(backend, 80.0))
            log(f"{backend}: {json.dumps(rows[backend])[:400]}")
        summary(work, rows, listed)
    except Exception:
        log(f"the check itself failed:\n{traceback.format_exc()}")
    finally:
        if keep is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


def _ms(value: object) -> str:
    return f"{value * 1000:.0f}" if isinstance(value, float) else "-"


def summary(work: Path, rows: dict[str, dict[str, Any]], listed: dict[str, Any]) -> None:
    import statistics

    print("\n=== GPU check summary ===")
    print(f"Blender {listed.get('blender', '?')}; devices: "
          + (", ".join(f"{d['backend']} {d['name']}" + (f" {d['memory'] / 2**30:.0f} GiB"
                                                       if d.get("memory") else "")
                       for d in listed.get("devices", [])) or "no GPU"))
    head = (f"{'device':8} {'first ms':>9} {'warm ms':>8} {'init ms':>8} {'large ms':>9} "
            f"{'max abs':>9} {'mean abs':>9} {'PSNR dB':>8} {'>cpu tol':>8} {'>gpu tol':>8}"
            "  notes")
    print(head)
    print("-" * len(head))
    cpu_statuses = set(rows.get("CPU", {}).get("statuses", []))
    for backend, row in rows.items():
        if not row.get("ok"):
            print(f"{backend:8} FAILED: {str(row.get('error', '?')).strip()[-300:]}")
            continue
        warm = statistics.median(row["tile_warm"]) if row.get("tile_warm") else None
        first = row.get("tile_first")
        init = first - warm if isinstance(first, float) and warm is not None else None
        cols = (f"{backend:8} {_ms(first):>9} {_ms(warm):>8} {_ms(init):>8}"
                f" {_ms(row.get('large')):>9}")
        notes = []
        if backend != "CPU":
            tile, large = difference(work, backend, "tile"), difference(work, backend, "large")
            if "error" in tile:
                notes.append(tile["error"])
            else:
                cols += (f" {tile['max_abs']:9.2e} {tile['mean_abs']:9.2e} {tile['psnr']:8.1f}"
                         f" {tile.get('cpu_tol', float('nan')):8.1%}"
                         f" {tile.get('gpu_tol', float('nan')):8.1%}")
            notes.append(f"large unit vs CPU: {json.dumps(large)}")
            shares = {k: v for k, v in tile.items() if k.startswith("outside")}
            notes.append(f"tile, share outside rtol: {json.dumps(shares)}")
            notes.append(f"fallback check: {row.get('fallback_check')}")
            notes.append(f"used: {row.get('used')}; GPU seen in the stats (worker's"
                         f" check): {row.get('gpu_evidence')}")
            gpu_only = sorted(set(row.get("statuses", [])) - cpu_statuses)
            notes.append(f"status lines only on GPU: {gpu_only[:12]}")
        else:
            cols += f" {'(reference)':>9}"
        if row.get("oom_or_error"):
            notes.append(f"stats check: {row['oom_or_error']}")
        print(cols + ("  " + notes[0] if notes else ""))
        for note in notes[1:]:
            print(f"{'':8} {note}")
    print("columns: first = first tile unit of a fresh process (device init, kernel load),"
          " warm = median later unit, init = first - warm (paid once per warm worker),"
          " large = one big unit; differences are GPU vs CPU on the same tile; >tol = share"
          " of pixels outside the result check's tolerance")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python tools/gpu_check.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--units", type=int, default=5, help="warm tile units per device")
    parser.add_argument("--scale", type=int, default=6,
                        help="the large unit is the scene at SCALE times 96x64 px, 64 spp")
    parser.add_argument("--budget", type=float, default=DEFAULT_BUDGET,
                        help="seconds for the whole check")
    parser.add_argument("--keep", help="work in this folder and keep it (EXRs, .npy)")
    parser.add_argument("--child", choices=("list", "render", "build"), help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    parser.add_argument("--backend", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return child_main(args) if args.child else parent_main(args)


if __name__ == "__main__":
    sys.exit(main())
