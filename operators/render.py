"""Render on BitWrk: still, animation, cancel, connect, estimate (thin: snapshot → call)."""

from __future__ import annotations

from typing import Any

import bpy

from ..bitwrk.render.scene import describe
from ..bitwrk.render.tiling import auto_count
from ..engine import bridge, render_engine
from ..engine.session import FEE_ROOM
from . import timer


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
        return {"FINISHED"}


class BITWRK_OT_render(bpy.types.Operator):  # type: ignore[misc]
    """Render the current frame (or the animation) on BitWrk"""

    bl_idname = "bitwrk.render"
    bl_label = "Render on BitWrk"
    animation: bpy.props.BoolProperty(name="Animation")  # type: ignore[valid-type]

    def _prepare(self, context: Any) -> None:
        context.scene.render.engine = render_engine.ENGINE_ID

    def invoke(self, context: Any, event: Any) -> set[str]:
        self._prepare(context)
        timer.ensure()
        return set(bpy.ops.render.render("INVOKE_DEFAULT", animation=self.animation))

    def execute(self, context: Any) -> set[str]:
        """Blocking: for scripts and headless use (timers never fire there)."""
        self._prepare(context)
        return set(bpy.ops.render.render(animation=self.animation,
                                         write_still=not self.animation))


class BITWRK_OT_cancel(bpy.types.Operator):  # type: ignore[misc]
    """Stop buying: no new bids; trades in flight finish or are refunded"""

    bl_idname = "bitwrk.cancel"
    bl_label = "Cancel BitWrk render"

    def execute(self, context: Any) -> set[str]:
        render_engine.CANCEL.set()
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
                      "{}.{}".format(*bpy.app.version[:2]))
    per_frame = settings.tiles or auto_count(spec, settings.cost_class)
    frames = 1
    if settings.mode == "ANIMATION":
        frames = len(range(scene.frame_start, scene.frame_end + 1, max(1, scene.frame_step)))
    units = per_frame * frames
    return units, int(units * settings.max_price_sat() * FEE_ROOM)


CLASSES = (BITWRK_OT_connect, BITWRK_OT_render, BITWRK_OT_cancel, BITWRK_OT_estimate)
