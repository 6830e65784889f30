"""Render benchmark: what a work unit costs beyond its render, warm worker vs cold process.

One bundled test scene (``tests/data/scenes/make_scene.py``, 96x64 px, 16 spp) is built
in a temp dir; every unit is the same 48x32 tile, so the render itself is tiny and the
per-unit overhead dominates — the worst case for a marketplace of small tiles.

- bare render: the worker's own timing of Blender's render call + saving the EXR (warm);
- warm unit: ``WorkerPool.render`` on a worker that has the .blend open; overhead =
  wall - bare render (JSON over a pipe, the asyncio hop, parsing and checking the spec,
  the file identity check, applying the spec to the scene);
- cold unit: a fresh worker process per unit (start, ``import bpy``, open, render, exit),
  the one-process-per-tile design (docs/measured-facts.md R3: ~0.55 s per process);
- sandbox: every figure above is for sandboxed workers (the default); the same warm units
  and worker starts without the sandbox give its overhead per warm unit and per new
  worker, and ``bwrap ... /bin/true`` alone what building the sandbox costs;
- GPU path: the same warm units on a GPU worker with a fake device list (it renders on the
  CPU): what selecting the device and checking Cycles' status add per unit, against the
  CPU worker (target: the same within 10 ms). The GPU itself is measured by
  ``tools/gpu_check.py`` (``make gpu-check``) on a machine that has one.

``python -m bench.render [--quick] [--strict]``; progress on stderr, the table on stdout.
Needs the ``bpy`` module.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.cli import arguments, exit_status
from bench.table import Row, print_table
from bitwrk.render.jobspec import JobSpec
from bitwrk.seller.devices import FAKE_ENV
from bitwrk.seller.pool import WorkerPool

ROOT = Path(__file__).resolve().parents[1]

NAME = "render"
TARGET_WARM_OVERHEAD_MS = 50.0
TARGET_SANDBOX_WARM_MS = 20.0  # issue 9: sandbox overhead per warm unit
TARGET_SANDBOX_START_MS = 150.0  # issue 9: per new sandboxed worker
TARGET_GPU_PATH_MS = 10.0  # issue 16: a GPU unit's selling overhead as a CPU unit's
FAKE_GPU = '[{"backend": "OPTIX", "name": "bench fake", "id": "OPTIX_bench"}]'
SPEC = JobSpec(blend="scene.blend", scene="Shot", view_layers=("ViewLayer",), frame=1,
               width=96, height=64, x0=0, x1=48, y0=0, y1=32, samples=16, seed=0,
               max_bounces=6)


def log(message: str) -> None:
    print(f"[bench render] {message}", file=sys.stderr, flush=True)


def build_scene(work: Path) -> Path:
    env = dict(os.environ, BLENDER_USER_RESOURCES=str(work / "blender"),
               XDG_CACHE_HOME=str(work / "cache"))
    subprocess.run([sys.executable, str(ROOT / "tests/data/scenes/make_scene.py"),
                    str(work / "job")], env=env, check=True, capture_output=True, timeout=120)
    return work / "job" / "scene.blend"


def import_seconds(work: Path) -> float:
    env = dict(os.environ, BLENDER_USER_RESOURCES=str(work / "blender"),
               XDG_CACHE_HOME=str(work / "cache"))
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import bpy"], env=env, check=True,
                   capture_output=True, timeout=60)
    return time.perf_counter() - started


async def warm_units(blend: Path, out: Path, count: int, unsandboxed: bool = False,
                     device: str = "cpu") -> list[tuple[float, float]]:
    """(wall, render) per unit on one warm worker (first, cold unit not counted)."""
    spec = dataclasses.replace(SPEC, device="GPU" if device != "cpu" else "CPU")
    async with WorkerPool(slots=1, idle_seconds=600, unsandboxed=unsandboxed,
                          device=device) as pool:
        await pool.render(blend, spec, out / "first.exr")
        runs = []
        for i in range(count):
            outcome = await pool.render(blend, spec, out / f"warm-{i}.exr")
            assert outcome.warm and not outcome.cold_start
            runs.append((outcome.wall, outcome.seconds))
    return runs


async def cold_units(blend: Path, out: Path, count: int) -> list[tuple[float, float]]:
    """(wall, render) per unit, each in a fresh worker process (exit included)."""
    runs = []
    for i in range(count):
        started = time.perf_counter()
        pool = WorkerPool(slots=1)
        outcome = await pool.render(blend, SPEC, out / f"cold-{i}.exr")
        await pool.close()
        runs.append((time.perf_counter() - started, outcome.seconds))
    return runs


async def worker_starts(count: int) -> tuple[list[float], list[float]]:
    """Seconds to start a worker (bpy imported), sandboxed and not, interleaved."""
    times: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(count):
        for unsandboxed in (False, True):
            pool = WorkerPool(slots=1, unsandboxed=unsandboxed)
            started = time.perf_counter()
            await pool.start()
            times[unsandboxed].append(time.perf_counter() - started)
            await pool.close()
    return times[False], times[True]


def interpreter_starts(count: int) -> tuple[float, float, float]:
    """Median seconds of ``python -I -c pass`` in the worker's sandbox and outside it,
    interleaved, and of ``bwrap <the same sandbox> /bin/true``.

    The worker's own start (``import bpy``, ~1.5 s) is the same work in and out of the
    sandbox and varies by hundreds of ms on a loaded machine; an interpreter start shows
    what the sandbox adds (namespaces, mounts, a loader reading through bind mounts).
    """
    pool = WorkerPool(slots=1)
    runs: dict[str, list[float]] = {"boxed": [], "open": [], "bare": []}
    with tempfile.TemporaryDirectory(prefix="bitwrk-bench-sandbox-") as home:
        inner = [sys.executable, "-I", "-c", "pass"]
        boxed, env = pool.command(inner, Path(home))
        bare, _env = pool.command(["/bin/true"], Path(home))
        for _ in range(count):
            for name, argv in (("boxed", boxed), ("open", inner), ("bare", bare)):
                started = time.perf_counter()
                subprocess.run(argv, env=env, check=True, timeout=30)
                runs[name].append(time.perf_counter() - started)
    return (statistics.median(runs["boxed"]), statistics.median(runs["open"]),
            statistics.median(runs["bare"]))


def sandbox_rows(warm: list[tuple[float, float]], open_warm: list[tuple[float, float]],
                 starts: tuple[list[float], list[float]],
                 interpreters: tuple[float, float, float]) -> list[Row]:
    warm_cost = (statistics.median(w - r for w, r in warm)
                 - statistics.median(w - r for w, r in open_warm)) * 1000
    start_cost = (interpreters[0] - interpreters[1]) * 1000
    return [
        Row(NAME, "sandbox overhead per warm unit (sandboxed - not)", warm_cost, "ms",
            f"<= {TARGET_SANDBOX_WARM_MS:.0f} ms", warm_cost <= TARGET_SANDBOX_WARM_MS),
        Row(NAME, "sandbox overhead per new worker (python start, sandboxed - not)",
            start_cost, "ms", f"<= {TARGET_SANDBOX_START_MS:.0f} ms",
            start_cost <= TARGET_SANDBOX_START_MS),
        Row(NAME, "bwrap sandbox around /bin/true alone", interpreters[2] * 1000, "ms"),
        Row(NAME, "new worker ready (bpy imported), sandboxed",
            statistics.median(starts[0]) * 1000, "ms"),
        Row(NAME, "new worker ready (bpy imported), not sandboxed",
            statistics.median(starts[1]) * 1000, "ms"),
    ]


def collect(quick: bool = False) -> list[Row]:
    warm_n, cold_n = (8, 3) if quick else (40, 8)
    with tempfile.TemporaryDirectory(prefix="bitwrk-bench-render-") as tmp:
        work = Path(tmp)
        os.environ.setdefault("BLENDER_USER_RESOURCES", str(work / "blender"))
        os.environ.setdefault("XDG_CACHE_HOME", str(work / "cache"))
        log("building the scene")
        blend = build_scene(work)
        bare_import = statistics.median(import_seconds(work) for _ in range(3))
        log(f"{warm_n} warm units")
        warm = asyncio.run(warm_units(blend, work, warm_n))
        log(f"{cold_n} cold units")
        cold = asyncio.run(cold_units(blend, work, cold_n))
        log(f"{warm_n} warm units without the sandbox, {cold_n} worker starts each way")
        open_warm = asyncio.run(warm_units(blend, work, warm_n, unsandboxed=True))
        log(f"{warm_n} warm units on a fake GPU (the GPU code path, rendered on the CPU)")
        os.environ[FAKE_ENV] = FAKE_GPU
        try:
            gpu_warm = asyncio.run(warm_units(blend, work, warm_n, device="gpu"))
        finally:
            del os.environ[FAKE_ENV]
        starts = asyncio.run(worker_starts(cold_n))
        interpreters = interpreter_starts(5 if quick else 15)
    render_ms = statistics.median(r for _w, r in warm) * 1000
    warm_ms = statistics.median(w - r for w, r in warm) * 1000
    warm_p90 = sorted(w - r for w, r in warm)[int(0.9 * (len(warm) - 1))] * 1000
    cold_ms = statistics.median(w - r for w, r in cold) * 1000
    cold_wall = statistics.median(w for w, _r in cold) * 1000
    warm_wall = statistics.median(w for w, _r in warm) * 1000
    gpu_ms = statistics.median(w - r for w, r in gpu_warm) * 1000
    tile = f"{SPEC.rect.width}x{SPEC.rect.height} px, {SPEC.samples} spp"
    return [
        Row(NAME, f"bare render of the tile ({tile})", render_ms, "ms"),
        Row(NAME, "warm unit: overhead beyond its render (median)", warm_ms, "ms",
            f"<= {TARGET_WARM_OVERHEAD_MS:.0f} ms", warm_ms <= TARGET_WARM_OVERHEAD_MS),
        Row(NAME, "warm unit: overhead beyond its render (p90)", warm_p90, "ms"),
        Row(NAME, "cold process per unit: overhead beyond its render", cold_ms, "ms"),
        Row(NAME, "python -c 'import bpy' alone", bare_import * 1000, "ms"),
        Row(NAME, "unit wall time, cold / warm", cold_wall / warm_wall, "x"),
        Row(NAME, "GPU code path: warm overhead - CPU's (fake device)", gpu_ms - warm_ms,
            "ms", f"<= {TARGET_GPU_PATH_MS:.0f} ms", gpu_ms - warm_ms <= TARGET_GPU_PATH_MS),
        *sandbox_rows(warm, open_warm, starts, interpreters),
    ]


def main(argv: list[str] | None = None) -> int:
    args = arguments("bench.render", __doc__).parse_args(argv)
    rows = collect(quick=args.quick)
    print_table(rows)
    return exit_status(rows, args.strict)


if __name__ == "__main__":
    sys.exit(main())
