"""Blender operators (thin: poll -> snapshot -> call the bridge -> report) and the scene's
BitWrk properties. Importing this package imports bpy: only the extension root does."""

from __future__ import annotations

import bpy

from . import properties, render, timer, wallet

CLASSES: tuple[type, ...] = (*render.CLASSES, *wallet.CLASSES)


def register() -> None:
    properties.register()
    for cls in CLASSES:
        bpy.utils.register_class(cls)


def unregister() -> None:
    timer.remove()  # timers first: nothing may pump a daemon that is going away
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
    properties.unregister()
