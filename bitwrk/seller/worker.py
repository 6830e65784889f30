"""The render worker: a long-lived process under ``bpy`` that renders job specs.

``python -m bitwrk.seller.worker [--max-budget N] [--cpus 0,1] [--memory BYTES]
[--data BYTES] [--output BYTES] [--device cpu|gpu[:BACKEND][:N]]`` reads
one JSON request per line on stdin::

    {"blend": "/jobs/abc/scene.blend", "spec": {...JobSpec...}, "out": "/jobs/abc/t3.exr"}

renders exactly the spec's rect (plus overscan, cropped away again) into a float32
multilayer EXR and answers one JSON line: ``{"ok": true, "out": ..., "seconds": ...}`` or
``{"ok": false, "code": ..., "error": ...}``. The first line it writes is
``{"ready": true, ...}`` once bpy is imported, with (for a GPU worker) the Cycles devices
it found and the ones it renders on; a GPU worker whose device is
missing says why in ``device_error`` and exits. A GPU worker renders only units whose
spec asks for a GPU, a CPU worker only CPU units (:mod:`bitwrk.seller.devices`). The
scene stays loaded (persistent data), so the next tile of the same .blend costs only its
render.

Safety (docs/measured-facts.md R4): files open with ``load_ui=False,
use_scripts=False`` and the auto-exec preference off, so no text block, driver or handler
of the file runs; OSL is off; every external file the .blend refers to must lie inside
the job's directory, and so must every path the scene reads while evaluated
(:mod:`bitwrk.seller.pathscan`). CPU affinity and the resource limits (address space, data
segment, file size, no core dumps) and a seccomp filter (:mod:`bitwrk.seller.seccomp`) are
applied by the process itself before ``import bpy`` (thread-safe, unlike a ``preexec_fn``
in a threaded parent). The pool normally runs this
process inside the OS sandbox of :mod:`bitwrk.seller.sandbox`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from ..errors import BitwrkError
from ..render.bpyprocess import isolate_user_dirs, private_stdout
from ..render.errors import CostClassExceeded, JobSpecError, RenderError
from ..render.jobspec import JobSpec
from ..render.scene import open_safely
from . import devices, pathscan, seccomp, tile


@dataclass
class Loaded:
    """The .blend a worker holds open: path plus the file identity it was read from."""

    path: str
    identity: tuple[int, int, int]


def file_identity(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return st.st_ino, st.st_mtime_ns, st.st_size


def job_root(blend: Path, spec: JobSpec, root: str | None) -> Path:
    """The job's directory: given, or ``blend`` minus the spec's relative name."""
    if root is not None:
        return Path(root).resolve()
    depth = len(spec.blend.split("/"))
    if blend.parts[-depth:] != tuple(spec.blend.split("/")):
        raise JobSpecError(f"{blend} does not end in the spec's blend {spec.blend!r}")
    return blend.parents[depth - 1].resolve()


def apply_limits(cpus: set[int] | None, memory: int | None, data: int | None = None,
                 output: int | None = None) -> None:
    """Pin to ``cpus``; cap address space, data segment (heap) and file size; no core
    dumps. Must run before ``import bpy``. A render that needs more memory fails its
    allocation (the unit is refused); a larger file ends the process with SIGXFSZ."""
    if cpus and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, cpus)
    if not hasattr(os, "fork"):  # Windows: no resource module
        return
    import resource
    import signal

    # Python ignores SIGXFSZ, so a write past the limit would just fail and leave a
    # truncated tile that looks rendered; the default action ends the process instead.
    signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    for limit, value in ((resource.RLIMIT_AS, memory), (resource.RLIMIT_DATA, data),
                         (resource.RLIMIT_FSIZE, output)):
        if value:
            resource.setrlimit(limit, (value, value))


class Worker:
    """Holds bpy and the loaded file; :meth:`handle` serves one request."""

    def __init__(self, bpy: Any, max_budget: int | None,
                 gpu: devices.GpuSession | None = None) -> None:
        self.bpy = bpy
        self.max_budget = max_budget
        self.gpu = gpu
        self.loaded: Loaded | None = None
        self.threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 0

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        """Serve one request; ``seconds`` is the render proper, ``total`` all of it."""
        started = time.perf_counter()
        spec = JobSpec.from_json(request.get("spec"))
        blend, out = Path(str(request.get("blend"))), Path(str(request.get("out")))
        self.check(spec)
        warm = self.load(blend, spec, request.get("root"))
        loaded = time.perf_counter()
        seconds = tile.render(self.bpy, spec, out, self.threads, self.gpu, cold=not warm)
        return {"ok": True, "out": str(out), "seconds": seconds,
                "device": self.gpu.backend if self.gpu else "CPU",
                "gpu_evidence": self.gpu.evidence if self.gpu else None,
                "load_seconds": loaded - started, "total": time.perf_counter() - started,
                "warm": warm, "pid": os.getpid(),
                "autoexec_blocked": bool(self.bpy.app.autoexec_fail)}

    def check(self, spec: JobSpec) -> None:
        version = "{}.{}".format(*self.bpy.app.version[:2])
        if spec.blender != version:
            raise JobSpecError(f"this worker runs Blender {version}, job wants {spec.blender}")
        if self.gpu is None and spec.device != "CPU":
            raise JobSpecError(f"this worker renders on the CPU, job wants {spec.device}")
        if self.gpu is not None and spec.device not in ("GPU", self.gpu.backend):
            # a CPU unit's result must equal the buyer's CPU render exactly: never on a GPU
            raise JobSpecError(f"this worker renders on {self.gpu.backend}, job wants "
                               f"{spec.device}")
        budget = spec.ray_budget()
        if self.max_budget is not None and budget > self.max_budget:
            raise CostClassExceeded(
                f"ray budget {budget} is above this worker's limit {self.max_budget}",
                ray_budget=budget, limit=self.max_budget)

    def load(self, blend: Path, spec: JobSpec, root: str | None) -> bool:
        """Open ``blend`` unless it is already open; True when it was (warm)."""
        blend = blend.resolve()
        identity = file_identity(blend) if blend.is_file() else (0, 0, 0)
        if self.loaded == Loaded(str(blend), identity):
            return True
        self.loaded = None
        root_dir = job_root(blend, spec, root)
        open_safely(blend)
        tile.check_external_files(self.bpy, root_dir)
        pathscan.check_evaluated_paths(self.bpy, root_dir)
        self.loaded = Loaded(str(blend), identity)
        return False


def answer(worker: Worker, line: str) -> dict[str, Any]:
    try:
        request = json.loads(line)
        if not isinstance(request, dict):
            raise JobSpecError("request must be a JSON object")
        return worker.handle(request)
    except json.JSONDecodeError as exc:
        return {"ok": False, "code": "invalid_request", "error": f"bad JSON: {exc}"}
    except (JobSpecError, CostClassExceeded) as exc:
        return {"ok": False, "code": exc.code, "error": exc.message, "data": exc.data}
    except BitwrkError as exc:  # the open file is in an unknown state: start afresh
        worker.loaded = None
        return {"ok": False, "code": exc.code, "error": exc.message, "data": exc.data,
                "recycle": True}
    except Exception as exc:  # a Blender error we did not foresee; report, never swallow
        worker.loaded = None
        return {"ok": False, "code": RenderError.code, "recycle": True,
                "error": f"{type(exc).__name__}: {exc}"}


def serve(worker: Worker, requests: TextIO, replies: TextIO) -> None:
    for line in requests:
        if line.strip():
            replies.write(json.dumps(answer(worker, line)) + "\n")
            replies.flush()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bitwrk.seller.worker")
    parser.add_argument("--max-budget", type=int, help="largest ray budget accepted")
    parser.add_argument("--cpus", help="comma-separated CPU ids to run on")
    parser.add_argument("--memory", type=int, help="address-space limit in bytes")
    parser.add_argument("--data", type=int, help="data-segment (heap) limit in bytes")
    parser.add_argument("--output", type=int, help="largest file the worker may write")
    parser.add_argument("--device", default="cpu", help="cpu, gpu, gpu:N, gpu:BACKEND[:N]")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cpus = {int(c) for c in args.cpus.split(",")} if args.cpus else None
    apply_limits(cpus, args.memory, args.data, args.output)
    try:
        filtered = seccomp.install()
    except OSError as exc:  # defence in depth: the OS sandbox still holds
        print(f"bitwrk worker: no seccomp filter: {exc}", file=sys.stderr, flush=True)
        filtered = False
    isolate_user_dirs()
    replies = private_stdout()
    import bpy

    bpy.context.preferences.filepaths.use_scripts_auto_execute = False
    ready: dict[str, Any] = {"ready": True, "pid": os.getpid(),
                             "blender": bpy.app.version_string, "seccomp": filtered}
    try:
        gpu, found = devices.open_session(bpy, devices.DeviceChoice.parse(args.device))
    except devices.DeviceError as exc:  # no such GPU here: say so, render nothing
        replies.write(json.dumps({**ready, "device_error": exc.message}) + "\n")
        replies.flush()
        return 0
    worker = Worker(bpy, args.max_budget, gpu)
    ready.update(threads=worker.threads, devices=[d.to_json() for d in found],
                 device=gpu.backend if gpu else "CPU",
                 chosen=[d.to_json() for d in gpu.chosen] if gpu else [],
                 fake_devices=bool(gpu and gpu.fake))
    replies.write(json.dumps(ready) + "\n")
    replies.flush()
    serve(worker, sys.stdin, replies)
    return 0


if __name__ == "__main__":
    sys.exit(main())
