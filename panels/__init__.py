"""Blender panels (draw only, never I/O): Render Properties → BitWrk, and the wallet in the
3D Viewport sidebar. Everything drawn comes from ``scene.bitwrk`` or the bridge's status."""

from __future__ import annotations

import bpy

from . import render, wallet

CLASSES: tuple[type, ...] = (*render.CLASSES, *wallet.CLASSES)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)


def unregister() -> None:
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
