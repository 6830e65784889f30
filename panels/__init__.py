"""Blender panels (draw only, never I/O). Filled by the extension issue."""

from __future__ import annotations

CLASSES: tuple[type, ...] = ()


def register() -> None:
    import bpy

    for cls in CLASSES:
        bpy.utils.register_class(cls)


def unregister() -> None:
    import bpy

    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
