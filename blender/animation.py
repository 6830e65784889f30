"""Render Animation on BitWrk: every frame of the range bought as ONE job (no bpy here).

The units are the frames, each split into tiles when it exceeds the cost class (see
docs/architecture.md), all traded in parallel by one ``BuyJob``. As soon as every tile of a
frame has landed the frame goes to a writer process (``write_frames.py`` under ``bpy``, or
``blender -b`` inside a Blender binary), which stitches, denoises and saves it where
``scene.render.frame_path`` says, in the scene's output format. Blender's thread only calls
:meth:`AnimationJob.poll` (from a modal timer in the GUI, or in a blocking loop headless),
which never blocks long.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ..bitwrk.buy import Plan, check_scripts, manifests, pack_files, plan
from ..bitwrk.daemon.events import Crashed, Event, JobDone, UnitDone, UnitFailed
from ..bitwrk.errors import BitwrkError
from .bridge import Bridge
from .session import start_job

ROOT = Path(__file__).resolve().parents[1]  # the directory holding bitwrk/
WRITER = Path(__file__).resolve().with_name("write_frames.py")
ACTIVE: AnimationJob | None = None  # the job now running (the cancel operator's target)


@dataclass(frozen=True)
class AnimationRequest:
    """Plain data snapshotted from the scene on Blender's thread."""

    blend: Path  # a saved .blend holding the scene as it is now
    info: dict[str, Any]  # bitwrk.render.scene.describe() + "blender"
    outputs: dict[int, str]  # frame -> file, from scene.render.frame_path(frame=f)
    exchange_url: str
    max_price: int  # satoshi per unit
    budget: int  # satoshi for the job; 0: units x max price + fee room
    tiles: int  # per frame; 0: by the cost class
    cost_class: str = "512M"
    concurrency: int = 4
    allow_missing: bool = False
    timeout: float = 6 * 3600.0
    blender_binary: str | None = None  # set inside a Blender binary (bpy.app.binary_path)
    trusted_only: bool = False  # buy the ``~trusted`` article: operator-trusted sellers only
    allow_local_sellers: bool = False  # loopback/private seller endpoints (tests, a LAN)
    lan_workers: tuple[str, ...] = ()  # trusted LAN worker addresses, served first
    lan_host: str = ""  # the interface the LAN hub listens on ("": the LAN address)
    min_seller_finished: int = 0  # sellers with fewer finished trades are never matched
    exclude_sellers: tuple[str, ...] = ()  # addresses never matched with this job's bids
    gpu: bool = False  # GPU results acceptable: buy the ``~gpu`` article

    @property
    def frames(self) -> list[int]:
        return sorted(self.outputs)


def writer_argv(blender_binary: str | None, blend: Path, scene: str) -> list[str]:
    """How to start the frame writer: under this Python (bpy module) or ``blender -b``."""
    args = [str(ROOT), str(blend), scene]
    if blender_binary:
        return [blender_binary, "-b", "--factory-startup", "--python-exit-code", "1",
                "--python", str(WRITER), "--", *args]
    return [sys.executable, "-I", str(WRITER), *args]


class AnimationJob:
    """Buy every frame of a range at once, write each frame as soon as it is complete."""

    def __init__(self, bridge: Bridge, request: AnimationRequest, workdir: Path) -> None:
        self.bridge = bridge
        self.request = request
        self.workdir = workdir
        self.plan: Plan | None = None
        self.job_id = ""
        self.results: dict[str, Path] = {}
        self.failed: list[str] = []  # final unit failures and frames that could not be written
        self.written: dict[int, str] = {}  # frame -> file
        self.spent = 0
        self.cancelled = False
        self.error = ""  # why the job stopped early (daemon crash, writer death, timeout)
        self.finished = False
        self._job_done = False
        self._sent: set[int] = set()
        self._answered: set[int] = set()
        self._writer: subprocess.Popen[bytes] | None = None
        self._answers: queue.SimpleQueue[dict[str, Any] | None] = queue.SimpleQueue()
        self._events: queue.SimpleQueue[Event] = queue.SimpleQueue()
        self._deadline = time.monotonic() + request.timeout
        self._by_frame: dict[int, list[str]] = {}

    # -- Blender's thread -----------------------------------------------------------------

    @property
    def total(self) -> int:
        return len(self.plan.units) if self.plan else 0

    def start(self) -> None:
        """Farm-ready check, plan, submit; the writer starts first (Blender's start-up
        overlaps packing). Raises :class:`BitwrkError` before anything is bought."""
        global ACTIVE
        r = self.request
        if not r.outputs:
            raise BitwrkError("no frames to render (all exist and overwriting is off?)")
        self._progress(stage="packing")
        check_scripts(r.info, r.allow_missing)
        # the writer pays for starting Blender while this thread packs and connects
        self._start_writer(r.blend, str(r.info["scene"]))
        name, files = pack_files(r.blend, self.workdir, r.allow_missing)
        self.plan = plan(r.info, name, r.frames, str(r.tiles) if r.tiles else "auto",
                         r.cost_class, r.gpu)
        for uid, spec in self.plan.units:
            self._by_frame.setdefault(spec.frame, []).append(uid)
        daemon = self.bridge.connect(r.exchange_url, allow_local_sellers=r.allow_local_sellers)
        units = manifests(self.plan, files, daemon.store)
        job = start_job(self.bridge, r, self.plan, units, self.workdir)
        self.job_id = job.job_id
        self._events = self.bridge.listen(job.job_id, len(units))
        self._progress(stage="buying", frames=len(r.outputs))
        daemon.submit(job)
        ACTIVE = self

    def cancel(self, wait: float = 0.0) -> None:
        """No new bids; trades in flight finish or are refunded. Frames complete by then
        are still written (they are paid for). ``wait``: see ``Bridge.cancel``."""
        if not self.cancelled and self.job_id and not self._job_done:
            self.cancelled = True
            with contextlib.suppress(Exception):  # a daemon that died cannot be told
                self.bridge.cancel(self.job_id, wait)
            self._progress(stage="cancelling")

    def poll(self, budget: float = 0.005) -> bool:
        """Handle what happened since the last call; True once the job is over."""
        if self.finished:
            return True
        self.bridge.pump(budget)
        while True:
            try:
                self._on_event(self._events.get_nowait())
            except queue.Empty:
                break
        while True:
            try:
                answer = self._answers.get_nowait()
            except queue.Empty:
                break
            self._on_answer(answer)
        if not self.error and time.monotonic() > self._deadline:
            self.error = f"the job did not finish in {self.request.timeout:.0f} s"
            self.cancel()
        if self.error and not self.cancelled:  # a crash or a dead writer: stop buying
            self.cancel()
        if self._job_done or self.error:
            self._close_writer_input()
            if self._answered >= self._sent or self.error:
                self._finish()
        return self.finished

    def run(self, cancelled: Callable[[], bool] = lambda: False, interval: float = 0.05) -> None:
        """Blocking: poll until the job is over (headless and scripts; timers never fire)."""
        while not self.poll(0.02):
            if cancelled():
                self.cancel()
            time.sleep(interval)

    def summary(self) -> str:
        frames = len(self.request.outputs)
        text = f"{len(self.written)}/{frames} frames written, spent {self.spent} sat"
        if self.cancelled:
            text = "cancelled; " + text
        if self.error:
            text += f"; {self.error}"
        if self.failed:
            text += "; failed: " + "; ".join(self.failed[:5])
        return text

    @property
    def ok(self) -> bool:
        return (self.finished and not self.error and not self.failed and not self.cancelled
                and len(self.written) == len(self.request.outputs))

    def close(self) -> None:
        """Stop the writer if it still runs; drop the job's files (frames stay)."""
        global ACTIVE
        if not self.finished and self.job_id and not self._job_done:
            self.cancel()
        self._kill_writer(grace=2.0)
        self.bridge.forget(self.job_id)
        if ACTIVE is self:
            ACTIVE = None
        shutil.rmtree(self.workdir, ignore_errors=True)

    # -- events ---------------------------------------------------------------------------

    def _on_event(self, event: Event) -> None:
        assert self.plan is not None
        if isinstance(event, UnitDone):
            self.results[event.unit_id] = Path(event.result)
            frame = dict(self.plan.units)[event.unit_id].frame
            if all(uid in self.results for uid in self._by_frame[frame]):
                self._send(frame)
        elif isinstance(event, UnitFailed) and event.final:
            self.failed.append(f"{event.unit_id}: {event.reason}")
        elif isinstance(event, Crashed):
            self.error = f"daemon error in {event.where}: {event.error}"
        elif isinstance(event, JobDone):
            self._job_done, self.spent = True, event.spent
            self._progress(stage="writing frames")

    def _on_answer(self, answer: dict[str, Any] | None) -> None:
        if answer is None:  # the writer's stdout closed
            if self._answered < self._sent and not self.error:
                self.error = f"the frame writer stopped: {self._writer_log()}"
            return
        if answer.get("ready"):
            return
        frame = answer.get("frame")
        if isinstance(frame, int):
            self._answered.add(frame)
        if answer.get("ok") and isinstance(frame, int):
            self.written[frame] = str(answer["path"])
            self._progress(frames_written=len(self.written))
        else:
            self.failed.append(f"frame {frame}: {answer.get('error')}")

    def _progress(self, **changes: Any) -> None:
        p = self.bridge.status.progress
        for key, value in changes.items():
            setattr(p, key, value)

    def _finish(self) -> None:
        self.finished = True
        self._close_writer_input()  # it exits on end of input; close() reaps it
        self._progress(stage="cancelled" if self.cancelled else
                       ("failed" if self.error or self.failed else "done"),
                       finished=True, spent=self.spent or self.bridge.status.progress.spent)

    # -- the writer process ---------------------------------------------------------------

    def _start_writer(self, blend: Path, scene: str) -> None:
        scratch = self.workdir / "writer"
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        env.update({"BLENDER_USER_RESOURCES": str(scratch / "blender"),
                    "XDG_CACHE_HOME": str(scratch / "cache")})
        scratch.mkdir(parents=True, exist_ok=True)
        self._log_path = scratch / "stderr.log"
        with open(self._log_path, "wb") as log:
            self._writer = subprocess.Popen(
                writer_argv(self.request.blender_binary, blend, scene), stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=log, env=env, cwd=scratch,
                start_new_session=True)
        assert self._writer.stdout is not None
        threading.Thread(target=self._read_answers, args=(self._writer.stdout,),
                         name="bitwrk-frame-writer", daemon=True).start()

    def _read_answers(self, stdout: IO[bytes]) -> None:
        for line in stdout:
            if line.lstrip().startswith(b"{"):  # a Blender binary's banner is not ours
                try:
                    self._answers.put(json.loads(line))
                except ValueError:
                    continue
        self._answers.put(None)

    def _send(self, frame: int) -> None:
        assert self.plan is not None
        if frame in self._sent or self._writer is None or self._writer.stdin is None:
            return
        specs = dict(self.plan.units)
        request = {"frame": frame, "path": self.request.outputs[frame],
                   "tiles": [{"path": str(self.results[uid]), "spec": specs[uid].to_json()}
                             for uid in self._by_frame[frame]]}
        try:
            self._writer.stdin.write(json.dumps(request).encode() + b"\n")
            self._writer.stdin.flush()
        except (BrokenPipeError, OSError):
            self.error = f"the frame writer stopped: {self._writer_log()}"
            return
        self._sent.add(frame)

    def _close_writer_input(self) -> None:
        if self._writer is not None and self._writer.stdin is not None \
                and not self._writer.stdin.closed:
            with contextlib.suppress(OSError):
                self._writer.stdin.close()

    def _kill_writer(self, grace: float = 0.0) -> None:
        writer = self._writer
        if writer is None:
            return
        self._close_writer_input()
        try:
            writer.wait(grace)
        except subprocess.TimeoutExpired:
            writer.kill()
            writer.wait()

    def _writer_log(self) -> str:
        try:
            return self._log_path.read_text(errors="replace")[-800:].strip()
        except OSError:
            return "(no log)"


__all__ = ["ACTIVE", "AnimationJob", "AnimationRequest", "writer_argv"]
