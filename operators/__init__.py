"""Blender operators (thin: poll -> snapshot -> call the bridge -> report) and the scene's
BitWrk properties. Importing this package imports bpy: only the extension root does."""

from __future__ import annotations

import bpy

from . import background, properties, render, timer, wallet

__all__ = ["background", "properties", "render", "timer", "wallet"]
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


def unregister() -> None:
    timer.remove()  # timers first: nothing may pump a daemon that is going away
    render.unregister_handlers()
    render.cancel_all()  # quit / disable: no job keeps buying for a Blender that is gone
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
    properties.unregister()
