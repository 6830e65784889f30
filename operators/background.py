"""What every GUI operator does before it talks to the network: honour Blender's online
access setting, then hand the request to a background task (``blender/tasks.py``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import bpy

from ..blender import bridge, snapshot
from . import timer


def online_refusal() -> str:
    return snapshot.online_refusal(bpy)


def refuse_offline(op: Any) -> bool:
    """Report and return True when the network is off limits."""
    why = online_refusal()
    if why:
        op.report({"ERROR"}, f"BitWrk: {why}")
        bridge.get().status.error = why
    return bool(why)


def start(op: Any, name: str, work: Callable[[], tuple[str, Any]],
          then: Callable[[Any], None] | None = None) -> set[str]:
    """``invoke()``'s body: run ``work`` off the UI thread; the panel shows it meanwhile."""
    if refuse_offline(op):
        return {"CANCELLED"}
    timer.ensure()  # the pump applies the outcome
    if not bridge.get().background(name, work, then):
        op.report({"WARNING"}, f"BitWrk: {name} is still running")
        return {"CANCELLED"}
    redraw()
    return {"FINISHED"}


def redraw() -> None:
    """Panels show the new state at once (busy, outcome), not at the next mouse move."""
    wm = getattr(bpy.context, "window_manager", None)
    for window in getattr(wm, "windows", ()):
        for area in window.screen.areas:
            if area.type in {"PROPERTIES", "VIEW_3D", "STATUSBAR"}:
                area.tag_redraw()
