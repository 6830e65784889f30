"""A pool of render worker processes for a seller (asyncio; never imports bpy).

Each slot owns a share of the offered CPUs and at most one worker process
(``bitwrk.seller.worker``), confined by default in the OS sandbox of
:mod:`bitwrk.seller.sandbox` (no home, no network, only the current job's files). A worker
starts with a whitelisted environment (nothing of the seller's keys or secrets), pinned to
its CPUs and under memory and file-size limits derived from the cost class. It keeps the
last .blend open, so the next tile of the same file costs only its render (``warm``). A
job for another .blend of the same ``owner`` (one buyer's next file: an artist's F12 after
an edit) opens it in that worker; another owner's job gets a fresh process, so a worker
never carries one buyer's scene into another's job. So does a worker that failed,
crashed, ran past the wall-time limit, or sat idle for ``idle_seconds``.

A fresh process pays ``import bpy`` (0.5-1 s; more for ``blender -b``). So that a new
job does not wait for it, a slot whose worker holds a file and has sat idle for
``prewarm_after`` seconds starts a **spare** beside it: a fresh worker with bpy imported
and no file open, which takes over when a job for another file comes or when the worker
is stopped for idling. A seller thus stays warm between buyers, as it is at start-up.
The wait is seconds, not less: a spare's start-up takes CPU, and a slot that idles only
between two units of one job would slow the next unit with it (docs/seller.md).

    async with WorkerPool(cpus={0, 1}, slots=1, cost_class="2G") as pool:
        outcome = await pool.render(Path("job/scene.blend"), spec, Path("job/tile-3.exr"))
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import platformdirs

from ..articles import COST_CLASSES
from ..render.errors import CostClassExceeded, JobSpecError, RenderError
from ..render.jobspec import JobSpec
from . import devices
from . import sandbox as sb
from .process import WorkerProcess, worker_env

PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the directory holding bitwrk/
# -I: ignore PYTHON* variables and the user site; the package root goes on sys.path.
BOOT = ("import sys; sys.path.insert(0, sys.argv[1]); "
        "from bitwrk.seller.worker import main; sys.exit(main(sys.argv[2:]))")
# Inside a Blender binary (``bpy.app.binary_path`` set) workers are ``blender -b`` processes:
# Blender keeps its own options in sys.argv and ignores everything after ``--``; its Python
# ignores PYTHON* variables and the user site unless told otherwise (as ``-I`` does).
BLENDER_BOOT = ("import sys; a = sys.argv[sys.argv.index('--') + 1:]; sys.path.insert(0, a[0]); "
                "from bitwrk.seller.worker import main; sys.exit(main(a[1:]))")
BLENDER_FLAGS = ("-b", "--factory-startup", "--python-exit-code", "1")
_ERRORS: dict[str, type[RenderError] | type[JobSpecError] | type[CostClassExceeded]] = {
    CostClassExceeded.code: CostClassExceeded, JobSpecError.code: JobSpecError,
    "invalid_request": JobSpecError, devices.DeviceError.code: devices.DeviceError,
    devices.CpuFallback.code: devices.CpuFallback,
    devices.DeviceOutOfMemory.code: devices.DeviceOutOfMemory,
}


@dataclass(frozen=True)
class RenderOutcome:
    """What one render produced, and what it cost."""

    out: Path
    seconds: float  # the render proper inside the worker: Blender's render call + saving
    wall: float  # from the call to the answer: waiting, start-up, loading included
    pid: int
    warm: bool  # the worker already had this .blend open
    cold_start: bool  # a new process was started for this job
    autoexec_blocked: bool  # the file has scripts or Python drivers that did not run


def blender_binary() -> str | None:
    """``bpy.app.binary_path`` when this process runs inside a Blender binary, else None.

    Looks at an already imported ``bpy`` only (this module never imports it): in ``bpy``
    module mode the path is empty and workers run under ``sys.executable``.
    """
    bpy = sys.modules.get("bpy")
    path = getattr(getattr(bpy, "app", None), "binary_path", "") if bpy is not None else ""
    return str(path) if path else None


def allowed_cpus() -> set[int]:
    if hasattr(os, "sched_getaffinity"):
        return set(os.sched_getaffinity(0))
    return set(range(os.cpu_count() or 1))


def _job_root(blend: Path, spec: JobSpec) -> Path:
    """``blend`` minus the spec's relative name: the folder the job may read from."""
    parts = tuple(spec.blend.split("/"))
    if blend.parts[-len(parts):] != parts:
        raise JobSpecError(f"{blend} does not end in the spec's blend {spec.blend!r}")
    return blend.parents[len(parts) - 1]


def _blend_key(blend: Path) -> tuple[str, int, int]:
    st = blend.stat()
    return str(blend), st.st_mtime_ns, st.st_size


class _Slot:
    """A CPU share holding at most one worker process."""

    def __init__(self, index: int, cpus: list[int]) -> None:
        self.index = index
        self.cpus = cpus
        self.worker: WorkerProcess | None = None
        self.busy = False
        self.idle_timer: asyncio.TimerHandle | None = None
        self.spare: asyncio.Task[WorkerProcess] | None = None  # starting or ready, no file
        self.spare_timer: asyncio.TimerHandle | None = None


class WorkerPool:
    """Render job specs in sandboxed, warm worker processes.

    ``cpus``: the CPU ids offered (default: all this process may use), split evenly over
    ``slots`` concurrent workers. ``cost_class`` (or ``max_budget``) is the largest ray
    budget a worker accepts; ``data_limit`` caps each worker's heap (RLIMIT_DATA, bytes;
    default by cost class), ``memory_limit`` its address space, ``output_limit`` any file it
    writes; ``timeout`` is the wall-time limit of one render (seconds); ``idle_seconds`` how
    long a worker may wait for its next tile before it is stopped; ``prewarm_after`` how
    long a slot whose worker holds a file must be idle before a spare worker starts beside
    it (None: never; see the module's doc). ``unsandboxed=True`` is
    the user's explicit opt-out of the OS sandbox; without it a platform that has none
    raises :class:`~bitwrk.seller.sandbox.SandboxUnavailable` here. ``device``: ``cpu``
    (default) or ``gpu[:BACKEND][:N]`` (:class:`~bitwrk.seller.devices.DeviceChoice`);
    a GPU pool's workers see that GPU's device nodes and render GPU units only.
    """

    def __init__(self, cpus: set[int] | None = None, slots: int = 1, *,
                 cost_class: str | None = None, max_budget: int | None = None,
                 memory_limit: int | None = None, data_limit: int | None = None,
                 output_limit: int = sb.OUTPUT_BYTES, timeout: float = 3600.0,
                 idle_seconds: float = 120.0, prewarm_after: float | None = 5.0,
                 start_timeout: float = 60.0,
                 python: str = sys.executable, blender: str | None = None,
                 unsandboxed: bool = False, sandbox: sb.Sandbox | None = None,
                 scratch_root: Path | None = None,
                 device: str | devices.DeviceChoice = "cpu") -> None:
        self.device = (device if isinstance(device, devices.DeviceChoice)
                       else devices.DeviceChoice.parse(device))
        self.sandbox = sandbox if sandbox is not None else sb.choose(unsandboxed)
        # Worker folders beside the daemon's job folders (its cache dir), so staging a
        # job is hard links, not a copy into a /tmp that may be RAM.
        self.scratch_root = scratch_root
        offered = sorted(cpus if cpus is not None else allowed_cpus())
        if slots < 1 or len(offered) < slots:
            raise ValueError(f"{slots} slots need at least as many CPUs, got {offered}")
        if cost_class is not None:
            if cost_class not in COST_CLASSES:
                raise JobSpecError(f"unknown cost class {cost_class!r}")
            max_budget = COST_CLASSES[cost_class]
        self.max_budget = max_budget
        self.memory_limit = memory_limit
        self.data_limit = data_limit if data_limit is not None else sb.memory_for(cost_class)
        if self.device.gpu and data_limit is None and self.data_limit is not None:
            self.data_limit += sb.GPU_DRIVER_DATA
        self.output_limit = output_limit
        self.timeout = timeout
        self.idle_seconds = idle_seconds
        self.prewarm_after = prewarm_after
        self.start_timeout = start_timeout
        self.python = python
        self.blender = blender  # a Blender binary: workers run as ``blender -b`` instead
        n = len(offered)
        self._slots = [_Slot(i, offered[i * n // slots:(i + 1) * n // slots])
                       for i in range(slots)]
        self._changed = asyncio.Condition()
        self._closing = False
        self._background: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> WorkerPool:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def argv(self, cpus: list[int]) -> list[str]:
        """The worker's command line as it runs (inside the sandbox when there is one)."""
        code = sb.CODE_MOUNT if self.sandbox.active else str(PACKAGE_ROOT)
        if self.blender:
            argv = [self.blender, *BLENDER_FLAGS, "-t", str(len(cpus)), "--python-expr",
                    BLENDER_BOOT, "--", code, "--cpus", ",".join(map(str, cpus))]
        else:
            argv = [self.python, "-I", "-c", BOOT, code, "--cpus", ",".join(map(str, cpus))]
        limits = {"--max-budget": self.max_budget, "--memory": self.memory_limit,
                  "--data": self.data_limit, "--output": self.output_limit,
                  "--device": str(self.device) if self.device.gpu else None}
        for flag, value in limits.items():
            if value is not None:
                argv += [flag, str(value)]
        return argv

    def command(self, inner: list[str], home: Path) -> tuple[list[str], dict[str, str]]:
        """``inner`` as this pool runs a worker: in its sandbox, with its environment."""
        env = worker_env(home, private=not self.sandbox.active)
        if devices.FAKE_ENV in os.environ:  # tests: the fake GPUs reach the worker
            env[devices.FAKE_ENV] = os.environ[devices.FAKE_ENV]
        if not self.sandbox.active:
            return inner, env
        runtime = sb.runtime_paths(self.python, self.blender)
        # env holds PATH, LANG ... only: the sandbox sets its own private dirs
        argv = self.sandbox.wrap(inner, home, env, runtime, sb.code_bind(PACKAGE_ROOT),
                                 self.device_nodes())
        return argv, env

    def device_nodes(self) -> list[str]:
        """The ``/dev`` nodes a worker needs: its GPU backend's (every GPU backend's when
        it is not named), none for the CPU."""
        if not self.device.gpu:
            return []
        backends = [self.device.backend] if self.device.backend else list(devices.BACKENDS)
        return sorted({n for b in backends for n in devices.device_nodes(b)})

    async def detect(self) -> dict[str, Any]:
        """Start the workers now and return the first one's ready line: the devices found,
        the ones it renders on (``chosen``); :class:`~bitwrk.seller.devices.DeviceError`
        when the chosen GPU is missing."""
        await self.start()
        worker = self._slots[0].worker
        assert worker is not None
        return dict(worker.ready)

    def pids(self) -> list[int]:
        """Process ids of the workers now running (for status pages and tests)."""
        return [s.worker.pid for s in self._slots if s.worker is not None]

    def inner_pids(self) -> list[int]:
        """The workers' own process ids (inside their sandboxes), for tests."""
        return [s.worker.inner_pid() for s in self._slots if s.worker is not None]

    def spare_pids(self) -> list[int]:
        """Process ids of the spares that are ready (fresh workers, no file open)."""
        return [s.spare.result().pid for s in self._slots
                if s.spare is not None and s.spare.done() and not s.spare.cancelled()
                and s.spare.exception() is None]

    async def start(self) -> None:
        """Start a worker in every empty slot now (bpy imported, no file open yet)."""
        await asyncio.gather(*(self._ensure(s) for s in self._slots if s.worker is None))

    async def render(self, blend: Path, spec: JobSpec, out: Path,
                     root: Path | None = None, owner: str | None = None) -> RenderOutcome:
        """Render ``spec`` from ``blend`` into ``out`` (float32 multilayer EXR).

        ``root`` is the job's directory (default: ``blend`` minus ``spec.blend``); the
        .blend may refer to files under it only. ``owner`` (the buyer) lets a worker that
        holds another file of the same owner open this one instead of a fresh process
        starting (None: another file always gets a fresh process). Raises
        :class:`CostClassExceeded`,
        :class:`JobSpecError`, :class:`RenderTimeout`, :class:`WorkerCrashed` or
        :class:`RenderError`; the pool stays usable after each.
        """
        began = time.perf_counter()
        blend = Path(blend).resolve()
        try:
            key = _blend_key(blend)
        except OSError:
            raise RenderError(f"no such .blend: {blend}", path=str(blend)) from None
        slot = await self._acquire(key, owner)
        try:
            if slot.worker is not None and not _reusable(slot.worker, key, owner):
                self._detach(slot)  # another buyer's file: this job gets a fresh process
            worker, cold = await self._ensure(slot)
            request = await self._request(worker, blend, spec, Path(out), root)
            try:
                answer = await worker.request(request, self.timeout)
            except RenderError:
                slot.worker = None  # request() killed it; the next job starts a new one
                raise
            except asyncio.CancelledError:  # its answer would reach the next job: kill it
                slot.worker = None
                self._spawn(worker.kill())
                raise
            outcome = self._outcome(slot, worker, key, owner, answer, began, cold)
            if worker.sandboxed:  # the tile lies in the sandbox's output folder
                Path(out).parent.mkdir(parents=True, exist_ok=True)
                shutil.move(worker.home / "out" / Path(request["out"]).name, out)
                outcome = dataclasses.replace(outcome, out=Path(out))
            return outcome
        finally:
            await self._release(slot)

    async def _request(self, worker: WorkerProcess, blend: Path, spec: JobSpec, out: Path,
                       root: Path | None) -> dict[str, Any]:
        """The request in the worker's own terms: sandbox paths, the job staged for it."""
        if root is None:
            root = _job_root(blend, spec)
        root = Path(root).resolve()
        # Absolute paths: the worker's working directory is its private temp dir.
        if not worker.sandboxed:
            return {"blend": str(blend), "spec": spec.to_json(), "root": str(root),
                    "out": str(out.resolve())}
        try:
            relative = blend.relative_to(root)
        except ValueError:
            raise JobSpecError(f"{blend} is not inside the job folder {root}") from None
        for old in (worker.home / "out").iterdir():  # what an earlier unit left behind
            old.unlink(missing_ok=True)
        key = await asyncio.to_thread(sb.stage_job, root, worker.home / "job")
        inner = f"{sb.JOB_MOUNT}/{key}"
        return {"blend": f"{inner}/{relative.as_posix()}", "spec": spec.to_json(),
                "root": inner, "out": f"{sb.OUT_MOUNT}/tile.exr"}

    def _outcome(self, slot: _Slot, worker: WorkerProcess, key: tuple[str, int, int],
                 owner: str | None, answer: dict[str, Any], began: float,
                 cold: bool) -> RenderOutcome:
        if not answer.get("ok"):
            if answer.get("recycle"):  # the worker's state is unknown after this error
                self._detach(slot)
            code = str(answer.get("code", RenderError.code))
            data = answer.get("data") if isinstance(answer.get("data"), dict) else {}
            raise _ERRORS.get(code, RenderError)(str(answer.get("error")), **(data or {}))
        worker.blend, worker.owner = key, owner  # what it holds open now, and whose
        return RenderOutcome(Path(answer["out"]), float(answer["seconds"]),
                             time.perf_counter() - began, worker.pid, bool(answer["warm"]),
                             cold, bool(answer.get("autoexec_blocked")))

    async def _ensure(self, slot: _Slot) -> tuple[WorkerProcess, bool]:
        """The slot's worker: its own, else its spare, else one started now (True)."""
        if slot.worker is not None and slot.worker.proc.returncode is None:
            return slot.worker, False
        if slot.worker is not None:  # died while idle: reap it, drop its private dir
            worker, slot.worker = slot.worker, None
            await worker.kill()
        spare = await self._take_spare(slot)
        if spare is not None:
            slot.worker = spare
            return spare, False
        slot.worker = await self._launch(slot)
        return slot.worker, True

    async def _launch(self, slot: _Slot) -> WorkerProcess:
        """A fresh worker for ``slot``'s CPUs: bpy imported, no file open."""
        home = Path(tempfile.mkdtemp(prefix="bitwrk-worker-", dir=self._scratch()))
        argv, env = self.command(self.argv(slot.cpus), home)
        try:
            worker = await WorkerProcess.start(argv, self.start_timeout, home, env)
        except BaseException:
            shutil.rmtree(home, ignore_errors=True)
            raise
        worker.sandboxed = self.sandbox.active
        if worker.ready.get("device_error"):  # the worker found no such GPU
            await worker.kill()
            raise devices.DeviceError(str(worker.ready["device_error"]),
                                      device=str(self.device))
        return worker

    async def _take_spare(self, slot: _Slot) -> WorkerProcess | None:
        """The slot's spare (waiting for it if it is still starting), or None when it has
        none or it failed: then the caller starts one as before."""
        task, slot.spare = slot.spare, None
        if task is None:
            return None
        try:
            spare = await asyncio.shield(task)
        except asyncio.CancelledError:
            if not task.done():  # our caller was cancelled, not the spare: keep it
                slot.spare = task
            raise
        except Exception:  # a spare that failed to start is no spare: start one now
            return None
        if spare.proc.returncode is not None:
            await spare.kill()
            return None
        return spare

    def _prewarm(self, slot: _Slot) -> None:
        """Start a spare for ``slot`` in the background, unless it has one or is in use."""
        slot.spare_timer = None
        if self._closing or slot.busy or slot.spare is not None:
            return
        slot.spare = asyncio.ensure_future(self._launch(slot))
        slot.spare.add_done_callback(_quiet)

    def _drop_spare(self, slot: _Slot, kill: bool = False) -> None:
        if slot.spare_timer is not None:
            slot.spare_timer.cancel()
            slot.spare_timer = None
        task, slot.spare = slot.spare, None
        if task is not None:
            self._spawn(_discard(task, kill))

    def _scratch(self) -> Path | None:
        """Where worker folders go: ``scratch_root``, else the daemon's cache work dir."""
        cache = Path(platformdirs.user_cache_dir("bitwrk", appauthor=False))  # daemon.paths
        root = self.scratch_root or cache / "work" / "workers"
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError:
            return None  # the system temp dir
        return root

    def _detach(self, slot: _Slot) -> None:
        """Take the slot's worker out of service at once; it exits in the background."""
        worker, slot.worker = slot.worker, None
        if worker is not None:
            self._spawn(worker.close())

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _acquire(self, key: tuple[str, int, int], owner: str | None) -> _Slot:
        """A free slot: one whose worker holds ``key``, else a fresh worker or one holding
        another file of ``owner``, else an empty slot, else one whose worker holds another
        buyer's file (it will be replaced)."""
        async with self._changed:
            while True:
                if self._closing:
                    raise RenderError("worker pool is closed")
                free = [s for s in self._slots if not s.busy]
                if free:
                    free.sort(key=lambda s: (_preference(s, key, owner), s.index))
                    slot = free[0]
                    slot.busy = True
                    if slot.idle_timer is not None:
                        slot.idle_timer.cancel()
                        slot.idle_timer = None
                    if slot.spare_timer is not None:  # busy again before it was needed
                        slot.spare_timer.cancel()
                        slot.spare_timer = None
                    return slot
                await self._changed.wait()

    async def _release(self, slot: _Slot) -> None:
        async with self._changed:
            slot.busy = False
            if slot.worker is not None and not self._closing:
                loop = asyncio.get_running_loop()
                slot.idle_timer = loop.call_later(self.idle_seconds, self._idle, slot)
                if (self.prewarm_after is not None and slot.worker.blend is not None
                        and slot.spare is None):
                    slot.spare_timer = loop.call_later(self.prewarm_after, self._prewarm,
                                                       slot)
            self._changed.notify_all()

    def _idle(self, slot: _Slot) -> None:
        """Stop a worker that idled (it holds a buyer's file); a spare stands in, warm."""
        slot.idle_timer = None
        if not slot.busy:
            held = slot.worker is not None and slot.worker.blend is not None
            self._detach(slot)
            if held and self.prewarm_after is not None:
                self._prewarm(slot)

    async def close(self, kill: bool = False) -> None:
        """Stop every worker; renders still running are killed. ``kill``: idle ones too, at
        once (a worker has nothing to save; its graceful exit is Blender's own teardown,
        ~0.1 s that a buyer leaving would only wait for)."""
        self._closing = True
        for slot in self._slots:
            if slot.idle_timer is not None:
                slot.idle_timer.cancel()
            self._drop_spare(slot, kill=True)
        async with self._changed:
            self._changed.notify_all()
        for slot in self._slots:
            if slot.worker is not None:
                worker, slot.worker = slot.worker, None
                await (worker.kill() if slot.busy or kill else worker.close())
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)


def _reusable(worker: WorkerProcess, key: tuple[str, int, int], owner: str | None) -> bool:
    """Whether ``worker`` may take a job for ``key`` of ``owner``: it holds that file, or
    none yet, or another file of the same (known) owner."""
    return (worker.blend in (None, key)
            or (owner is not None and worker.owner == owner))


def _preference(slot: _Slot, key: tuple[str, int, int], owner: str | None) -> int:
    if slot.worker is None:
        return 2
    if slot.worker.blend == key:
        return 0
    return 1 if _reusable(slot.worker, key, owner) else 3


def _quiet(task: asyncio.Task[WorkerProcess]) -> None:
    """A spare's failure surfaces when it is taken (a fresh start instead), not as an
    unretrieved-exception warning."""
    if not task.cancelled():
        task.exception()


async def _discard(task: asyncio.Task[WorkerProcess], kill: bool) -> None:
    """Stop a spare once it has started (it may still be importing bpy)."""
    with contextlib.suppress(Exception, asyncio.CancelledError):
        worker = await task
        await (worker.kill() if kill else worker.close())
