"""Blender's side of rendering and trading: the render engine, scene snapshots, the bridge
to the daemon thread, the wallet QR. Only ``render_engine`` imports bpy at module level."""

from __future__ import annotations


def register() -> None:
    from . import render_engine

    render_engine.register()


def unregister() -> None:
    from . import bridge, render_engine

    render_engine.unregister()
    bridge.shutdown(wait=bridge.QUIT_WAIT)  # returns within 2 s; the stop goes on behind
