"""Render on BitWrk: still, animation, cancel, connect, estimate (thin: snapshot → call)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import bpy

from ..bitwrk.money import format_amount
from ..bitwrk.render import compat
from ..bitwrk.render.scene import describe
from ..bitwrk.render.tiling import auto_count
from ..engine import animation as animation_job
from ..engine import bridge, render_engine, snapshot
from ..engine.session import FEE_ROOM, parse_workers
from . import timer

MODAL_INTERVAL = 0.1  # s between polls of an animation job in the GUI


class BITWRK_OT_connect(bpy.types.Operator):  # type: ignore[misc]
    """Connect to the exchange (starts the BitWrk daemon thread)"""

    bl_idname = "bitwrk.connect"
    bl_label = "Connect"

    def execute(self, context: Any) -> set[str]:
        try:
            bridge.get().connect(context.scene.bitwrk.exchange_url)
        except Exception as exc:
            self.report({"ERROR"}, f"BitWrk: cannot connect: {exc}")
            return {"CANCELLED"}
        timer.ensure()
        bridge.get().refresh_wallet()
        workers = parse_workers(context.scene.bitwrk.lan_workers)
        if workers:  # the hub's URL shows in the panel before any render, for JoinLan
            try:
                bridge.get().start_lan_hub(workers)
            except Exception as exc:
                self.report({"ERROR"}, f"BitWrk: cannot start the LAN hub: {exc}")
                return {"CANCELLED"}
        return {"FINISHED"}


class BITWRK_OT_render(bpy.types.Operator):  # type: ignore[misc]
    """Render the current frame, or every frame of the range at once, on BitWrk"""

    bl_idname = "bitwrk.render"
    bl_label = "Render on BitWrk"
    animation: bpy.props.BoolProperty(name="Animation")  # type: ignore[valid-type]

    # Plain attributes, no annotations: Blender reads an operator's annotations as properties.
    _job = None  # the animation job of a modal run
    _timer = None

    def _prepare(self, context: Any) -> None:
        context.scene.render.engine = render_engine.ENGINE_ID

    def invoke(self, context: Any, event: Any) -> set[str]:
        timer.ensure()
        if not self.animation:
            self._prepare(context)
            return set(bpy.ops.render.render("INVOKE_DEFAULT"))
        # Modal: the frames are bought and written while Blender stays responsive.
        job = self._start_animation(context)
        if job is None:
            return {"CANCELLED"}
        self._job = job
        wm = context.window_manager
        self._timer = wm.event_timer_add(MODAL_INTERVAL, window=context.window)
        wm.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def modal(self, context: Any, event: Any) -> set[str]:
        job = self._job
        if job is None:
            return {"CANCELLED"}
        if event.type == "ESC" and event.value == "PRESS":
            job.cancel()  # CancelJob: no new bids; frames complete by now are still written
            return {"RUNNING_MODAL"}
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        finished = job.poll(0.005)
        _show_progress(context, bridge.get().status.progress)
        if not finished:
            return {"PASS_THROUGH"}
        context.window_manager.event_timer_remove(self._timer)
        if context.workspace is not None:
            context.workspace.status_text_set(None)
        return self._end_animation(job)

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

    def _start_animation(self, context: Any) -> animation_job.AnimationJob | None:
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


def _show_progress(context: Any, p: Any) -> None:
    """The status bar and every Properties editor (the BitWrk panel draws the counts)."""
    text = (f"BitWrk {p.stage}: {p.done}/{p.total} units, {p.in_flight} in flight, "
            f"{p.failed} failed, {p.frames_written}/{p.frames} frames written, "
            f"spent {format_amount(p.spent)}  (Esc: cancel)")
    if context.workspace is not None:
        context.workspace.status_text_set(text)
    screen = getattr(context, "screen", None)
    for area in getattr(screen, "areas", ()):
        if area.type in {"PROPERTIES", "STATUSBAR"}:
            area.tag_redraw()


class BITWRK_OT_cancel(bpy.types.Operator):  # type: ignore[misc]
    """Stop buying: no new bids; trades in flight finish or are refunded"""

    bl_idname = "bitwrk.cancel"
    bl_label = "Cancel BitWrk render"

    def execute(self, context: Any) -> set[str]:
        render_engine.CANCEL.set()
        if animation_job.ACTIVE is not None:
            animation_job.ACTIVE.cancel()
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


CLASSES = (BITWRK_OT_connect, BITWRK_OT_render, BITWRK_OT_cancel, BITWRK_OT_estimate)
