"""Render one job spec in a process that has the .blend open (runs under bpy).

Per docs/measured-facts.md R1: the rect is asked for with border fractions
``min((x + 0.5) / W, 1)`` plus crop, dither 0 (EXR is unaffected, but PNGs made from it
must not carry position-dependent noise). Per docs/measured-facts.md R2: a buyer who wants
a denoised frame gets tiles rendered with denoising **off** and the denoising passes
stored; the buyer denoises the stitched frame once. Adaptive sampling looks at
neighbouring pixels, so such tiles are rendered with overscan and cropped here.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

from ..render import compat, exr
from ..render.errors import JobSpecError, RenderError
from ..render.jobspec import JobSpec
from ..render.scene import find_scene
from ..render.tiling import Rect, border
from . import devices

# Render-result metadata Blender writes into the EXR header; the file path and the host
# name would tell the buyer about the seller's machine, the rest is of no use on a tile.
STAMP_METADATA = ("use_stamp_filename", "use_stamp_hostname", "use_stamp_date",
                  "use_stamp_time", "use_stamp_render_time", "use_stamp_memory",
                  "use_stamp_frame", "use_stamp_frame_range", "use_stamp_camera",
                  "use_stamp_lens", "use_stamp_scene", "use_stamp_marker",
                  "use_stamp_sequencer_strip", "use_stamp_note")


def check_external_files(bpy: Any, root: Path) -> None:
    """Refuse a file that reads anything outside the job (e.g. a texture at ~/.ssh/...)."""
    root_real = os.path.realpath(root)
    outside = []
    for path in bpy.utils.blend_paths(absolute=True, packed=False, local=False):
        real = os.path.realpath(path)
        if os.path.commonpath([real, root_real]) != root_real:
            outside.append(path)
    if outside:
        raise RenderError("the .blend refers to files outside the job",
                          paths=sorted(set(outside))[:20])


def select_layers(scene: Any, spec: JobSpec) -> None:
    names = {vl.name for vl in scene.view_layers}
    missing = [n for n in spec.view_layers if n not in names]
    if missing:
        raise JobSpecError(f"no view layer {missing[0]!r} in scene {scene.name!r}",
                           view_layers=sorted(names))
    for vl in scene.view_layers:
        use = vl.name in spec.view_layers
        compat.assign(vl, use=use)
        compat.assign(vl.cycles, denoising_store_passes=spec.denoise and use)


def configure(scene: Any, spec: JobSpec, threads: int) -> None:
    """Apply the spec to ``scene``: size, rect, sampling, passes, output, safety (only the
    settings that differ are written, :func:`~bitwrk.render.compat.assign`)."""
    r, cy = scene.render, scene.cycles
    compat.assign(r, engine="CYCLES")  # the device (CPU or GPU) is set by render(), devices.py
    compat.assign(cy, shading_system=False)  # OSL runs arbitrary shader code; never on a seller
    if (r.resolution_x * r.resolution_percentage // 100,
            r.resolution_y * r.resolution_percentage // 100) != (spec.width, spec.height):
        r.resolution_x, r.resolution_y, r.resolution_percentage = spec.width, spec.height, 100
    rendered = spec.render_rect
    x0, x1, y0, y1 = border(rendered, spec.width, spec.height)
    compat.assign(r, use_border=rendered != Rect(0, spec.width, 0, spec.height),
            use_crop_to_border=True, border_min_x=x0, border_max_x=x1, border_min_y=y0,
            border_max_y=y1)
    compat.assign(cy, samples=spec.samples, seed=spec.seed, max_bounces=spec.max_bounces,
            time_limit=0.0,  # a time limit makes the sample count depend on the machine
            use_denoising=False,
            use_layer_samples="IGNORE",  # the spec's sample count holds for every layer
            # Path guiding learns from the region rendered: a tile (or a buyer's check
            # patch) would differ from the same pixels of the whole frame (up to 0.23).
            use_guiding=False)
    compat.assign(r, use_single_layer=False)  # every layer the spec names, not just the active
    compat.assign(r, use_multiview=False)  # one view: the tile the buyer checks and stitches
    select_layers(scene, spec)
    compat.assign(r, dither_intensity=0.0,
            use_compositing=False,  # tiles carry raw passes; the buyer composites the frame
            use_sequencer=False,
            use_stamp=False)  # no burnt-in text on a tile
    for flag in STAMP_METADATA:  # nor metadata that names the seller (file path, host)
        if hasattr(r, flag):
            compat.assign(r, **{flag: False})
    compat.assign(r, use_persistent_data=True, threads_mode="FIXED" if threads else "AUTO")
    if threads:
        compat.assign(r, threads=threads)
    compat.set_output_format(r.image_settings, "OPEN_EXR_MULTILAYER", color_depth="32",
                             exr_codec="ZIP")


_STATS: list[str] = []  # Cycles' status lines of the render in progress


def _collect_stats(bpy: Any) -> list[str]:
    """Start collecting Cycles' status lines (a handler that survives loading files)."""
    if _stats_handler not in bpy.app.handlers.render_stats:
        bpy.app.handlers.persistent(_stats_handler)
        bpy.app.handlers.render_stats.append(_stats_handler)
    _STATS.clear()
    return _STATS


def _stats_handler(text: object, *_args: object) -> None:
    if len(_STATS) < 10_000:  # a long render reports every sample
        _STATS.append(str(text))


def render(bpy: Any, spec: JobSpec, out: Path, threads: int,
           gpu: devices.GpuSession | None = None, cold: bool = True) -> float:
    """Render ``spec`` in the open file and write its rect to ``out`` (multilayer EXR).

    ``gpu``: render on that GPU session's devices (else the CPU); ``cold``: the scene was
    just loaded, so the render syncs it to the device (a GPU must show in the stats).
    Returns the seconds of the render proper: Blender's render call plus saving the tile.
    """
    scene = find_scene(bpy, spec.scene)
    if scene.camera is None:
        raise RenderError(f"scene {scene.name!r} has no camera")
    configure(scene, spec, threads)
    if gpu is not None:
        gpu.setup(bpy, scene)
    else:
        devices.use_cpu(bpy, scene)
    if scene.frame_current != spec.frame:
        scene.frame_set(spec.frame)
    stats = _collect_stats(bpy)
    started = time.perf_counter()
    try:
        bpy.ops.render.render(scene=scene.name)
    except RuntimeError as exc:
        message = str(exc).strip()
        raise (gpu and gpu.failed(message)) or RenderError(f"render failed: {message}") from None
    if gpu is not None:
        gpu.rendered(list(stats), cold)
    result = bpy.data.images.get("Render Result")
    if result is None:
        raise RenderError("render produced no result")
    out.parent.mkdir(parents=True, exist_ok=True)
    rendered = spec.render_rect
    if rendered == spec.rect:
        result.save_render(filepath=str(out), scene=scene)
    else:
        fd, name = tempfile.mkstemp(suffix=".exr", dir=out.parent)
        os.close(fd)
        try:
            result.save_render(filepath=name, scene=scene)
            crop = Rect(spec.x0 - rendered.x0, spec.x1 - rendered.x0,
                        spec.y0 - rendered.y0, spec.y1 - rendered.y0)
            exr.write(out, exr.read(Path(name)).crop(crop))
        finally:
            os.unlink(name)
    if not out.is_file():
        raise RenderError(f"render did not write {out}")
    return time.perf_counter() - started
