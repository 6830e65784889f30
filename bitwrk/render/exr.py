"""Multilayer EXR files as numpy arrays, through the OpenImageIO that ships inside bpy.

Blender 5.0 writes a multilayer EXR as one part per pass: part ``ViewLayer.Combined``
with channels ``ViewLayer.Combined.R`` ... and ``cycles.<layer>.samples`` in part 0's
header. Arrays here are ``(height, width, channels)`` float32 with row 0 at the
**bottom**, Blender's order (files store the top row first); a rect's ``y`` is Blender's.

OpenImageIO is not on ``sys.path`` in the ``bpy`` wheel (it lives in
``bpy/<version>/python/lib/python3.11/site-packages``); :func:`oiio` finds it without
importing bpy. Pitfall: ``ImageInput.read_image(chbegin, chend, fmt)`` silently reads
subimage 0; always pass the subimage.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from . import compat, exrheader
from .errors import ComposeError, RenderError
from .tiling import Rect, bounds

Pixels = npt.NDArray[np.float32]
# Header attributes that describe one file, not the render; never copied between files.
_PER_FILE = ("oiio:", "openexr:", "name", "compression", "DateTime", "Exif", "IPTC", "XResolution",
             "YResolution", "ResolutionUnit")


def oiio() -> Any:
    """The ``OpenImageIO`` module: Blender's own, or the one inside the ``bpy`` wheel."""
    try:
        return importlib.import_module("OpenImageIO")
    except ImportError:
        pass
    spec = importlib.util.find_spec("bpy")
    if spec is None or spec.origin is None:
        raise RenderError("OpenImageIO not found: neither importable nor inside a bpy wheel")
    base = Path(spec.origin).parent
    found = sorted(base.glob("[0-9]*.[0-9]*/python/lib/python3*/site-packages/OpenImageIO"))
    if not found:
        raise RenderError(f"OpenImageIO not found under {base}")
    sys.path.append(str(found[-1].parent))
    return importlib.import_module("OpenImageIO")


@dataclass
class Part:
    """One pass: its channel names (``ViewLayer.Combined.R`` ...) and pixels, bottom-up."""

    name: str
    channels: list[str]
    pixels: Pixels


@dataclass
class MultiLayer:
    """A multilayer image: its parts in file order plus part 0's render metadata."""

    width: int
    height: int
    parts: list[Part]
    attributes: list[tuple[str, str, Any]] = field(default_factory=list)

    def part(self, name: str) -> Part:
        for part in self.parts:
            if part.name == name:
                return part
        raise ComposeError(f"no pass {name!r} in image", passes=[p.name for p in self.parts])

    def has(self, name: str) -> bool:
        return any(p.name == name for p in self.parts)

    def attribute(self, name: str) -> Any:
        return next((value for key, _type, value in self.attributes if key == name), None)

    def crop(self, rect: Rect) -> MultiLayer:
        """The pixels of ``rect`` (in this image's coordinates) as a new image."""
        if not rect.inside(self.width, self.height):
            raise RenderError(f"crop {rect} outside {self.width}x{self.height}")
        parts = [Part(p.name, p.channels,
                      np.ascontiguousarray(p.pixels[rect.y0:rect.y1, rect.x0:rect.x1]))
                 for p in self.parts]
        return MultiLayer(rect.width, rect.height, parts, list(self.attributes))


def read(path: Path) -> MultiLayer:
    """Read every part of a multilayer EXR (a single-part file becomes one part)."""
    io = oiio()
    inp = io.ImageInput.open(str(path))
    if not inp:
        raise RenderError(f"cannot read {path}: {io.geterror()}", path=str(path))
    try:
        parts: list[Part] = []
        attributes: list[tuple[str, str, Any]] = []
        sub = 0
        width = height = 0
        while inp.seek_subimage(sub, 0):
            spec = inp.spec()
            if sub == 0:
                width, height = spec.width, spec.height
                attributes = [(a.name, str(a.type), a.value) for a in spec.extra_attribs
                              if not a.name.startswith(_PER_FILE)]
            elif (spec.width, spec.height) != (width, height):
                raise RenderError(f"{path}: parts differ in size", path=str(path))
            data = inp.read_image(sub, 0, 0, spec.nchannels, "float")
            if data is None:
                raise RenderError(f"cannot read {path}: {inp.geterror()}", path=str(path))
            pixels = np.ascontiguousarray(
                np.asarray(data, dtype=np.float32).reshape(height, width, spec.nchannels)[::-1])
            name = str(spec.getattribute("name") or spec.getattribute("oiio:subimagename") or "")
            parts.extend(as_passes(Part(name, list(spec.channelnames), pixels)))
            sub += 1
        return MultiLayer(width, height, parts, attributes)
    finally:
        inp.close()


def read_capped(path: Path, width: int, height: int) -> MultiLayer:
    """Read an untrusted EXR only if its headers say it is ``width`` x ``height`` with a
    few half/float channels per part (:func:`exrheader.check`): what decoding it costs is
    then bounded by an honest unit's size (about 2x: OIIO's buffer plus the flipped copy)."""
    exrheader.check(path.read_bytes(), width, height)
    return read(path)


def as_passes(part: Part) -> list[Part]:
    """One part per pass: Blender 4.x puts every pass of a multilayer EXR in one part
    (channels ``ViewLayer.Combined.R`` ...), 5.0 one part per pass (:mod:`.compat`)."""
    groups = compat.split_groups(part.name, part.channels)
    if groups is None:
        return [part]
    return [Part(name, [part.channels[i] for i in idx],
                 np.ascontiguousarray(part.pixels[:, :, idx]))
            for name, idx in groups.items()]


def write(path: Path, image: MultiLayer) -> None:
    """Write ``image`` as a float32, ZIP-compressed, multi-part EXR in Blender's layout."""
    io = oiio()
    specs = []
    for index, part in enumerate(image.parts):
        spec = io.ImageSpec(image.width, image.height, len(part.channels), "float")
        spec.channelnames = tuple(part.channels)
        spec.attribute("compression", "zip")
        spec.attribute("oiio:subimagename", part.name)
        spec.attribute("name", part.name)
        if index == 0:
            for key, kind, value in image.attributes:
                spec.attribute(key, io.TypeDesc(kind), value)
        specs.append(spec)
    out = io.ImageOutput.create(str(path))
    if not out or not out.open(str(path), specs):
        raise RenderError(f"cannot write {path}: {io.geterror()}", path=str(path))
    try:
        for index, part in enumerate(image.parts):
            if index and not out.open(str(path), specs[index], "AppendSubimage"):
                raise RenderError(f"cannot write {path}: {out.geterror()}", path=str(path))
            if not out.write_image(np.ascontiguousarray(part.pixels[::-1])):
                raise RenderError(f"cannot write {path}: {out.geterror()}", path=str(path))
    finally:
        out.close()


def stitch(tiles: list[tuple[Path, Rect]], width: int, height: int,
           area: Rect | None = None) -> MultiLayer:
    """Place each tile file at its rect in a ``width`` x ``height`` frame.

    Every tile must carry the same passes; every pixel must be covered exactly once.
    ``area``: only that part of the frame was rendered (the scene's render region); the
    result is ``area``-sized, tiles placed relative to its corner.
    """
    return stitch_images([(read(path), rect, str(path)) for path, rect in tiles], width,
                         height, area)


def stitch_images(tiles: list[tuple[MultiLayer, Rect, str]], width: int, height: int,
                  area: Rect | None = None) -> MultiLayer:
    """:func:`stitch` for tiles already read (image, rect, name for errors): a buyer that
    drew each tile as it landed does not read it again at the end."""
    if not tiles:
        raise ComposeError("no tiles to stitch")
    if area is not None and area != Rect(0, width, 0, height):
        if not area.inside(width, height):
            raise ComposeError(f"region {area} is not inside the {width}x{height} frame")
        for _tile, rect, path in tiles:
            if bounds([rect, area]) != area:
                raise ComposeError(f"tile {path} at {rect} is outside the region {area}",
                                   path=path)
        return stitch_images([(tile, Rect(r.x0 - area.x0, r.x1 - area.x0, r.y0 - area.y0,
                                          r.y1 - area.y0), path) for tile, r, path in tiles],
                             area.width, area.height)
    frame: MultiLayer | None = None
    covered = np.zeros((height, width), dtype=np.int32)
    for tile, rect, path in tiles:
        if (tile.width, tile.height) != (rect.width, rect.height) or not rect.inside(width,
                                                                                    height):
            raise ComposeError(f"tile {path} is {tile.width}x{tile.height}, rect {rect}",
                               path=path)
        if frame is None:
            frame = MultiLayer(width, height, [
                Part(p.name, p.channels,
                     np.zeros((height, width, len(p.channels)), dtype=np.float32))
                for p in tile.parts], tile.attributes)
        if [(p.name, p.channels) for p in tile.parts] != [(p.name, p.channels)
                                                          for p in frame.parts]:
            raise ComposeError(f"tile {path} has other passes than the first", path=path)
        for target, part in zip(frame.parts, tile.parts, strict=True):
            target.pixels[rect.y0:rect.y1, rect.x0:rect.x1] = part.pixels
        covered[rect.y0:rect.y1, rect.x0:rect.x1] += 1
    if not (covered == 1).all():
        raise ComposeError("tiles do not cover the frame exactly once",
                           gaps=int((covered == 0).sum()), overlaps=int((covered > 1).sum()))
    assert frame is not None
    return frame


def embed(image: MultiLayer, area: Rect, width: int, height: int) -> MultiLayer:
    """``image`` (of ``area``) placed in a ``width`` x ``height`` frame of zeros: what
    Blender saves for a render region without "crop to render region"."""
    if (image.width, image.height) != (area.width, area.height) or not area.inside(width,
                                                                                 height):
        raise ComposeError(f"a {image.width}x{image.height} image cannot fill {area}")
    parts = []
    for part in image.parts:
        pixels = np.zeros((height, width, len(part.channels)), dtype=np.float32)
        pixels[area.y0:area.y1, area.x0:area.x1] = part.pixels
        parts.append(Part(part.name, part.channels, pixels))
    return MultiLayer(width, height, parts, image.attributes)
