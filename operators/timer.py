"""The GUI's event pump: a persistent ``bpy.app.timers`` callback (never fires headless)."""

from __future__ import annotations

import bpy

from ..engine import bridge

INTERVAL = 0.1  # s between pumps
BUDGET = 0.005  # s of Blender's thread per pump


def _tick() -> float:
    bridge.get().pump(BUDGET)
    return INTERVAL


def ensure() -> None:
    if not bpy.app.timers.is_registered(_tick):
        bpy.app.timers.register(_tick, first_interval=INTERVAL, persistent=True)


def remove() -> None:
    if bpy.app.timers.is_registered(_tick):
        bpy.app.timers.unregister(_tick)


def registered() -> bool:
    return bool(bpy.app.timers.is_registered(_tick))
