"""Blender operators (thin: poll -> snapshot -> call the bridge -> report) and the scene's
BitWrk properties. Importing this package imports bpy: only the extension root does."""

from __future__ import annotations

import atexit

import bpy

from . import background, properties, render, timer, wallet

__all__ = ["background", "properties", "render", "timer", "wallet"]
QUIT_CANCEL_WAIT = 0.4  # s for the journal to mark jobs cancelled; + the bridge's 1.5 s


def _at_exit() -> None:
    """Blender quitting without disabling add-ons: cancel jobs, stop the daemon (bounded)."""
    from ..blender import bridge

    render.cancel_all(QUIT_CANCEL_WAIT)
    bridge.shutdown(wait=bridge.QUIT_WAIT)


CLASSES: tuple[type, ...] = (*render.CLASSES, *wallet.CLASSES)


def register() -> None:
    properties.register()
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    render.register_handlers()
    # The pump runs whenever the GUI does (F12 alone connects through the engine, and the
    # wallet's QR must follow the address); it does nothing until a daemon exists, and
    # timers never fire in blender -b or the bpy module.
    timer.ensure()
    atexit.register(_at_exit)


def unregister() -> None:
    timer.remove()  # timers first: nothing may pump a daemon that is going away
    atexit.unregister(_at_exit)
    render.unregister_handlers()
    render.cancel_all(QUIT_CANCEL_WAIT)  # no job keeps buying for a Blender that is gone
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
    properties.unregister()
