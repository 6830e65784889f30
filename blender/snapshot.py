"""Blender's side of a render: read the scene into plain data (main thread, bpy)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..bitwrk.errors import BitwrkError
from ..bitwrk.render import compat
from ..bitwrk.render.scene import describe
from .animation import AnimationRequest
from .session import RenderRequest, parse_workers

OFFLINE = ("Blender's online access is off (Preferences > System > Network > Allow Online "
           "Access): BitWrk makes no network connection until it is on")


def online_refusal(bpy: Any) -> str:
    """Why no network may be used now ("" when it may).

    Extensions must honour ``bpy.app.online_access``. In the GUI it is the user's choice;
    in ``blender -b`` and the ``bpy`` module Blender leaves it off unless ``--online-mode``
    is given, and there a script that calls BitWrk is itself the user's request.
    """
    if bpy.app.background or getattr(bpy.app, "online_access", True):
        return ""
    return OFFLINE


def blend_for(bpy: Any, workdir: Path) -> Path:
    """A .blend holding the scene as it is now: the open file when saved and clean, else
    a copy saved into ``workdir`` (relative paths remapped, so dependencies still resolve)."""
    if bpy.data.filepath and not bpy.data.is_dirty:
        return Path(bpy.data.filepath)
    name = Path(bpy.data.filepath).name if bpy.data.filepath else "untitled.blend"
    path = workdir / "snapshot" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    bpy.ops.wm.save_as_mainfile(filepath=str(path), copy=True, relative_remap=True,
                                check_existing=False)
    return path


def take(bpy: Any, scene: Any, workdir: Path) -> RenderRequest:
    """The render request for ``scene``'s current frame, from its BitWrk settings."""
    settings = scene.bitwrk
    info = describe(scene)
    info["blender"] = compat.blender_line(bpy.app.version)
    return RenderRequest(
        blend=blend_for(bpy, workdir), info=info, frame=scene.frame_current,
        exchange_url=settings.exchange_url, max_price=settings.max_price_sat(),
        budget=settings.budget_sat(), tiles=settings.tiles, cost_class=settings.cost_class,
        concurrency=settings.concurrency, allow_missing=settings.allow_missing,
        trusted_only=settings.trusted_only, lan_workers=parse_workers(settings.lan_workers),
        allow_local_sellers=settings.allow_local_sellers, lan_host=settings.lan_host,
        min_seller_finished=settings.min_seller_finished,
        exclude_sellers=parse_workers(settings.exclude_sellers),
        gpu=settings.accept_gpu)


def take_animation(bpy: Any, scene: Any, workdir: Path) -> AnimationRequest:
    """The request for the scene's frame range: each frame's file is where Blender's own
    Render Animation would write it (``frame_path``), in the scene's output format."""
    r, settings = scene.render, scene.bitwrk
    if r.is_movie_format:
        raise BitwrkError("BitWrk writes image sequences: choose an image output format "
                          "(PNG, OpenEXR, ...) in Output Properties")
    frames = range(scene.frame_start, scene.frame_end + 1, max(1, scene.frame_step))
    outputs = {f: str(r.frame_path(frame=f)) for f in frames}
    if not r.use_overwrite:  # as Blender does: frames already on disk are skipped
        outputs = {f: path for f, path in outputs.items() if not os.path.exists(path)}
    info = describe(scene)
    info["blender"] = compat.blender_line(bpy.app.version)
    return AnimationRequest(
        blend=blend_for(bpy, workdir), info=info, outputs=outputs,
        exchange_url=settings.exchange_url, max_price=settings.max_price_sat(),
        budget=settings.budget_sat(), tiles=settings.tiles, cost_class=settings.cost_class,
        concurrency=settings.concurrency, allow_missing=settings.allow_missing,
        blender_binary=bpy.app.binary_path or None, trusted_only=settings.trusted_only,
        lan_workers=parse_workers(settings.lan_workers), lan_host=settings.lan_host,
        allow_local_sellers=settings.allow_local_sellers,
        min_seller_finished=settings.min_seller_finished,
        exclude_sellers=parse_workers(settings.exclude_sellers),
        gpu=settings.accept_gpu)
