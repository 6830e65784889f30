"""Lazy and hostile results, made the way a cheating seller would make them (test only).

:func:`lazy_result` renders with a real :class:`WorkerPool` and then cheats; the cheating
seller (``python -m tests.blender.cheating_seller MODE ...``) and the detection tests use
the same code. Modes: ``black``, ``other_tile``, ``fewer_samples`` (half), ``most_samples``
(15 of 16: saves 6 %), ``lower_res`` (half resolution, upscaled), ``wrong_frame``, ``junk``
(EXR magic + random bytes), ``bomb`` (a valid EXR of 16384 x 16384 zeros, ~0.6 MB),
``wrong_size`` (one column short).
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path

import numpy as np

from bitwrk.render import exr
from bitwrk.render.exrheader import MAGIC
from bitwrk.render.jobspec import JobSpec
from bitwrk.render.tiling import Rect
from bitwrk.seller.pool import WorkerPool

RENDERED = ("black", "other_tile", "fewer_samples", "most_samples", "lower_res",
            "wrong_frame", "wrong_size")
FORGED = ("junk", "bomb")
MODES = RENDERED + FORGED
BOMB_SIZE = 16384


async def lazy_result(mode: str, pool: WorkerPool, blend: Path, spec: JobSpec,
                      root: Path | None = None) -> bytes:
    if mode == "junk":
        return MAGIC + os.urandom(4000)
    if mode == "bomb":
        return bomb()
    with tempfile.TemporaryDirectory(prefix="cheat-") as tmp:
        out = Path(tmp) / "tile.exr"
        if mode == "lower_res":
            return await _lower_res(pool, blend, spec, root, out)
        await pool.render(blend, _cheap_spec(mode, spec), out, root=root)
        if mode == "black":
            image = exr.read(out)
            for part in image.parts:
                part.pixels[...] = 0.0
            exr.write(out, image)
        return out.read_bytes()


def _cheap_spec(mode: str, spec: JobSpec) -> JobSpec:
    r = spec.rect
    if mode == "other_tile":
        return spec.with_rect(_other_rect(spec))
    if mode == "fewer_samples":
        return dataclasses.replace(spec, samples=max(1, spec.samples // 2))
    if mode == "most_samples":
        return dataclasses.replace(spec, samples=max(1, spec.samples * 15 // 16))
    if mode == "wrong_frame":
        return dataclasses.replace(spec, frame=spec.frame + 2)
    if mode == "wrong_size":
        return spec.with_rect(Rect(r.x0, r.x1 - 1, r.y0, r.y1))
    return spec  # black: rendered honestly, then blanked


def _other_rect(spec: JobSpec) -> Rect:
    """A rect of the same size elsewhere in the frame."""
    r = spec.rect
    for dx, dy in ((r.width, 0), (-r.width, 0), (0, r.height), (0, -r.height)):
        moved = Rect(r.x0 + dx, r.x1 + dx, r.y0 + dy, r.y1 + dy)
        if moved.inside(spec.width, spec.height):
            return moved
    raise ValueError("a full-frame unit has no other tile")


async def _lower_res(pool: WorkerPool, blend: Path, spec: JobSpec, root: Path | None,
                     out: Path) -> bytes:
    """Half the resolution (a quarter of the work), each pixel doubled back up."""
    r = spec.rect
    half = dataclasses.replace(spec, width=spec.width // 2, height=spec.height // 2,
                               x0=r.x0 // 2, x1=-(-r.x1 // 2), y0=r.y0 // 2, y1=-(-r.y1 // 2))
    await pool.render(blend, half, out, root=root)
    small = exr.read(out)
    for part in small.parts:
        big = part.pixels.repeat(2, axis=0).repeat(2, axis=1)
        oy, ox = r.y0 - 2 * half.y0, r.x0 - 2 * half.x0
        part.pixels = np.ascontiguousarray(big[oy:oy + r.height, ox:ox + r.width])
    exr.write(out, exr.MultiLayer(r.width, r.height, small.parts, small.attributes))
    return out.read_bytes()


def bomb(size: int = BOMB_SIZE) -> bytes:
    """A valid, ZIP-compressed EXR of ``size`` x ``size`` zeros in Blender's pass naming,
    written one scanline at a time (the writer never holds the image)."""
    io = exr.oiio()
    with tempfile.TemporaryDirectory(prefix="bomb-") as tmp:
        path = Path(tmp) / "bomb.exr"
        spec = io.ImageSpec(size, size, 4, "half")
        spec.channelnames = tuple(f"ViewLayer.Combined.{c}" for c in "RGBA")
        spec.attribute("compression", "zip")
        out = io.ImageOutput.create(str(path))
        assert out.open(str(path), spec)
        line = np.zeros((1, size, 4), dtype=np.float16)
        for y in range(size):
            out.write_scanline(y, 0, line)
        out.close()
        return path.read_bytes()
