"""Render on BitWrk: still, animation, cancel, connect, estimate (thin: snapshot → call)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import bpy

from ..bitwrk.render import compat
from ..bitwrk.render.scene import describe
from ..bitwrk.render.tiling import auto_count
from ..blender import animation as animation_job
from ..blender import bridge, render_engine, snapshot
from ..blender.session import FEE_ROOM, parse_workers
from . import animation_runs, background, timer


class BITWRK_OT_connect(bpy.types.Operator):  # type: ignore[misc]
    """Connect to the exchange (starts the BitWrk daemon thread)"""

    bl_idname = "bitwrk.connect"
    bl_label = "Connect"

    def invoke(self, context: Any, event: Any) -> set[str]:
        settings = context.scene.bitwrk
        url, workers = settings.exchange_url, parse_workers(settings.lan_workers)
        host = settings.lan_host

        def work() -> tuple[str, None]:
            b = bridge.get()
            b.connect(url)
            b.account.refresh()
            if workers:  # the hub's URL shows in the panel before any render, for JoinLan
                b.lan.start(workers, host=bridge.reachable(host))
            return f"connected to {url}", None

        return background.start(self, "connect", work)

    def execute(self, context: Any) -> set[str]:
        if background.refuse_offline(self):
            return {"CANCELLED"}
        try:
            bridge.get().connect(context.scene.bitwrk.exchange_url)
        except Exception as exc:
            self.report({"ERROR"}, f"BitWrk: cannot connect: {exc}")
            return {"CANCELLED"}
        timer.ensure()
        bridge.get().account.refresh()
        workers = parse_workers(context.scene.bitwrk.lan_workers)
        if workers:  # the hub's URL shows in the panel before any render, for JoinLan
            try:
                bridge.get().lan.start(
                    workers, host=bridge.reachable(context.scene.bitwrk.lan_host))
            except Exception as exc:
                self.report({"ERROR"}, f"BitWrk: cannot start the LAN hub: {exc}")
                return {"CANCELLED"}
        return {"FINISHED"}


class BITWRK_OT_render(bpy.types.Operator):  # type: ignore[misc]
    """Render the current frame, or every frame of the range at once, on BitWrk"""

    bl_idname = "bitwrk.render"
    bl_label = "Render on BitWrk"
    animation: bpy.props.BoolProperty(name="Animation")  # type: ignore[valid-type]

    def _prepare(self, context: Any) -> None:
        context.scene.render.engine = render_engine.ENGINE_ID

    def invoke(self, context: Any, event: Any) -> set[str]:
        if background.refuse_offline(self):
            return {"CANCELLED"}
        timer.ensure()
        if not self.animation:
            self._prepare(context)
            # F12's own job runs the render; this operator is done once it is started
            started = bpy.ops.render.render("INVOKE_DEFAULT")
            return {"FINISHED"} if started & {"RUNNING_MODAL", "FINISHED"} else {"CANCELLED"}
        # The snapshot here (main thread); packing, hashing and buying in the background,
        # polled by the pump (not modal: Blender skips autosave while a modal runs).
        request, workdir = self._snapshot_animation(context)
        if request is None:
            return {"CANCELLED"}
        animation_runs.start(animation_job.AnimationJob(bridge.get(), request, workdir))
        self.report({"INFO"}, f"BitWrk: buying {len(request.outputs)} frames in the "
                              "background (progress and Cancel in the BitWrk panel)")
        return {"FINISHED"}

    def execute(self, context: Any) -> set[str]:
        """Blocking: for scripts and headless use (timers never fire there)."""
        if not self.animation:
            self._prepare(context)
            return set(bpy.ops.render.render(write_still=True))
        job = self._start_animation(context)
        if job is None:
            return {"CANCELLED"}
        try:
            job.run(cancelled=render_engine.CANCEL.is_set)
        except KeyboardInterrupt:
            job.cancel()
            job.run()
        return self._end_animation(job)

    def _snapshot_animation(self, context: Any) -> tuple[Any, Path]:
        """(request, workdir) from the scene on the main thread; (None, ...) reported."""
        render_engine.CANCEL.clear()
        workdir = Path(tempfile.mkdtemp(prefix="bitwrk-animation-"))
        try:
            return snapshot.take_animation(bpy, context.scene, workdir), workdir
        except Exception as exc:
            shutil.rmtree(workdir, ignore_errors=True)
            self.report({"ERROR"}, f"BitWrk: {exc}")
            return None, workdir

    def _start_animation(self, context: Any) -> animation_job.AnimationJob | None:
        if background.refuse_offline(self):
            return None
        render_engine.CANCEL.clear()
        workdir = Path(tempfile.mkdtemp(prefix="bitwrk-animation-"))
        job = None
        try:
            request = snapshot.take_animation(bpy, context.scene, workdir)
            job = animation_job.AnimationJob(bridge.get(), request, workdir)
            job.start()
        except Exception as exc:  # farm-ready check, connection: nothing was bought
            if job is not None:
                job.close()
            else:
                shutil.rmtree(workdir, ignore_errors=True)
            self.report({"ERROR"}, f"BitWrk: {exc}")
            return None
        self.report({"INFO"}, f"BitWrk: buying {job.total} units for "
                              f"{len(request.outputs)} frames")
        return job

    def _end_animation(self, job: animation_job.AnimationJob) -> set[str]:
        job.close()
        level = "INFO" if job.ok else ("WARNING" if job.cancelled and not job.error
                                       else "ERROR")  # a cancel is the user's choice
        self.report({level}, f"BitWrk: {job.summary()}")
        return {"FINISHED"} if job.ok else {"CANCELLED"}


def cancel_all(wait: float = 0.0) -> None:
    """Stop buying for every running job: stills (the engine polls CANCEL) and the
    animation. On file open and quit, and from the cancel operator; ``wait`` at quit."""
    render_engine.CANCEL.set()
    animation_runs.cancel_all(wait)
    if animation_job.ACTIVE is not None:
        animation_job.ACTIVE.cancel(wait)


@bpy.app.handlers.persistent  # type: ignore[untyped-decorator]
def _on_load_pre(*_args: Any) -> None:
    cancel_all()


def register_handlers() -> None:
    if _on_load_pre not in bpy.app.handlers.load_pre:
        bpy.app.handlers.load_pre.append(_on_load_pre)


def unregister_handlers() -> None:
    if _on_load_pre in bpy.app.handlers.load_pre:
        bpy.app.handlers.load_pre.remove(_on_load_pre)


class BITWRK_OT_cancel(bpy.types.Operator):  # type: ignore[misc]
    """Stop buying: no new bids; trades in flight finish or are refunded"""

    bl_idname = "bitwrk.cancel"
    bl_label = "Cancel BitWrk render"

    def execute(self, context: Any) -> set[str]:
        cancel_all()
        return {"FINISHED"}


class BITWRK_OT_estimate(bpy.types.Operator):  # type: ignore[misc]
    """Estimate units and the most it can cost before starting"""

    bl_idname = "bitwrk.estimate"
    bl_label = "Estimate"

    def execute(self, context: Any) -> set[str]:
        scene, settings = context.scene, context.scene.bitwrk
        units, cost = estimate(scene, settings)
        status = bridge.get().status
        status.estimate = (units, cost)
        self.report({"INFO"}, f"{units} units, at most {cost} sat")
        return {"FINISHED"}


def estimate(scene: Any, settings: Any) -> tuple[int, int]:
    """(units, most satoshi) for the current frame or the frame range."""
    from ..bitwrk.buy import frame_spec

    info = describe(scene)
    spec = frame_spec(info, "scene.blend", scene.frame_current,
                      compat.blender_line(bpy.app.version))
    per_frame = settings.tiles or auto_count(spec, settings.cost_class)
    frames = 1
    if settings.mode == "ANIMATION":
        frames = len(range(scene.frame_start, scene.frame_end + 1, max(1, scene.frame_step)))
    units = per_frame * frames
    return units, int(units * settings.max_price_sat() * FEE_ROOM)


class BITWRK_OT_quote(bpy.types.Operator):  # type: ignore[misc]
    """Render one small sample tile in the background and ask the market: the job's time
    and price, before anything is bought"""

    bl_idname = "bitwrk.quote"
    bl_label = "Quote"

    def invoke(self, context: Any, event: Any) -> set[str]:
        work = self._work(context)
        return background.start(self, "quote", work) if work else {"CANCELLED"}

    def execute(self, context: Any) -> set[str]:
        """Blocking: for scripts and headless use."""
        work = self._work(context)
        if work is None:
            return {"CANCELLED"}
        message, _quote = work()
        bridge.get().status.notice = message  # as the pump shows a background outcome
        self.report({"INFO"}, message)
        return {"FINISHED"}

    def _work(self, context: Any) -> Any:
        """Snapshot the scene here (Blender's thread); the rest runs anywhere."""
        from ..blender import quote

        scene = context.scene
        frames = [scene.frame_current]
        if scene.bitwrk.mode == "ANIMATION":
            frames = list(range(scene.frame_start, scene.frame_end + 1,
                                max(1, scene.frame_step)))
        workdir = Path(tempfile.mkdtemp(prefix="bitwrk-quote-"))
        try:
            request = snapshot.take(bpy, scene, workdir)
        except Exception as exc:
            shutil.rmtree(workdir, ignore_errors=True)
            self.report({"ERROR"}, f"BitWrk: {exc}")
            return None
        binary = bpy.app.binary_path or None

        def work() -> tuple[str, Any]:
            try:
                q = quote.quote(bridge.get(), request, frames, workdir, binary)
            finally:
                shutil.rmtree(workdir, ignore_errors=True)
            return quote.headline(q), q

        return work


CLASSES = (BITWRK_OT_connect, BITWRK_OT_render, BITWRK_OT_cancel, BITWRK_OT_estimate,
           BITWRK_OT_quote)
