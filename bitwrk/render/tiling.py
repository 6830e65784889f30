"""Exact pixel rectangles, Blender's border fractions, and how many tiles a frame needs.

Blender turns a border fraction ``f`` into a pixel edge with float32 arithmetic and
truncation: ``int(float32(f) * W)`` (``render_init_from_main`` in ``pipeline.cc``: the
border times ``winx``; Cycles does the same). The naive ``x / W`` lands one pixel short
for thousands of widths (float32(63/240) * 240 = 62.99999), so an edge ``x`` is asked for
as ``min((x + 0.5) / W, 1)``. That is exact while ``x + 0.5 < 2**22``: two float32
roundings move ``x + 0.5`` by at most ``(x + 0.5) * 2**-23 < 0.5``, so truncation lands on
``x`` (the tests also check every edge of every width up to 8192 and sampled larger ones).
Rows count from the bottom, as in Blender's buffers.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..articles import COST_CLASSES
from .errors import CostClassExceeded, JobSpecError

if TYPE_CHECKING:
    from .jobspec import JobSpec

MAX_SIZE = 65536


@dataclass(frozen=True, order=True)
class Rect:
    """Pixel columns ``[x0, x1)`` and rows ``[y0, y1)``, rows counted from the bottom."""

    x0: int
    x1: int
    y0: int
    y1: int

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    @property
    def pixels(self) -> int:
        return self.width * self.height

    def inside(self, width: int, height: int) -> bool:
        return 0 <= self.x0 < self.x1 <= width and 0 <= self.y0 < self.y1 <= height

    def grown(self, margin: int, width: int, height: int) -> Rect:
        """This rect widened by ``margin`` pixels on each side, clamped to the frame."""
        return Rect(max(0, self.x0 - margin), min(width, self.x1 + margin),
                    max(0, self.y0 - margin), min(height, self.y1 + margin))


def _f32(value: float) -> float:
    return float(struct.unpack("<f", struct.pack("<f", value))[0])


def blender_edge(fraction: float, size: int) -> int:
    """The pixel edge Blender derives from a border fraction (float32 multiply, truncate).

    The product of two float32 values is exact in a double, so rounding it once to
    float32 gives the same bits as Blender's float multiplication.
    """
    return int(_f32(_f32(fraction) * _f32(float(size))))


def border_fraction(edge: int, size: int) -> float:
    """The border fraction that makes Blender start or end exactly at pixel ``edge``."""
    if not 0 <= edge <= size:
        raise JobSpecError(f"edge {edge} outside 0..{size}", edge=edge, size=size)
    return 0.0 if edge == 0 else min((edge + 0.5) / size, 1.0)


def border(rect: Rect, width: int, height: int) -> tuple[float, float, float, float]:
    """``(min_x, max_x, min_y, max_y)`` for ``render.border_*``, checked against Blender's rule."""
    fractions = (border_fraction(rect.x0, width), border_fraction(rect.x1, width),
                 border_fraction(rect.y0, height), border_fraction(rect.y1, height))
    back = Rect(blender_edge(fractions[0], width), blender_edge(fractions[1], width),
                blender_edge(fractions[2], height), blender_edge(fractions[3], height))
    if back != rect:  # cannot happen for sizes <= MAX_SIZE; guards the arithmetic above
        raise JobSpecError(f"border for {rect} maps to {back}", rect=str(rect))
    return fractions


def _edges(size: int, parts: int) -> list[int]:
    return [i * size // parts for i in range(parts + 1)]


def grid(width: int, height: int, cols: int, rows: int) -> list[Rect]:
    """A cols x rows grid of exact rects covering the frame, bottom row first."""
    if not (1 <= cols <= width and 1 <= rows <= height):
        raise JobSpecError(f"cannot split {width}x{height} into {cols}x{rows} tiles")
    xs, ys = _edges(width, cols), _edges(height, rows)
    return [Rect(xs[c], xs[c + 1], ys[r], ys[r + 1]) for r in range(rows) for c in range(cols)]


def grid_shape(width: int, height: int, count: int) -> tuple[int, int]:
    """(cols, rows) with cols * rows >= count and tiles as close to square as possible."""
    if count < 1:
        raise JobSpecError("tile count must be at least 1", count=count)
    count = min(count, width * height)
    best: tuple[float, int, int, int] | None = None
    for cols in range(1, min(count, width) + 1):
        rows = min(math.ceil(count / cols), height)
        if cols * rows < count:
            continue
        aspect = abs(math.log((width / cols) / (height / rows)))
        key = (cols * rows / count + aspect, cols * rows, cols, rows)
        if best is None or key < best:
            best = key
    assert best is not None
    return best[2], best[3]


def tiles(width: int, height: int, count: int) -> list[Rect]:
    """At least ``count`` near-square tiles that exactly cover a ``width`` x ``height`` frame."""
    cols, rows = grid_shape(width, height, count)
    return grid(width, height, cols, rows)


def tiles_in(area: Rect, count: int) -> list[Rect]:
    """:func:`tiles` of the part ``area`` of a frame, in frame coordinates."""
    return [Rect(r.x0 + area.x0, r.x1 + area.x0, r.y0 + area.y0, r.y1 + area.y0)
            for r in tiles(area.width, area.height, count)]


def bounds(rects: list[Rect]) -> Rect:
    """The smallest rect holding every one of ``rects``."""
    if not rects:
        raise JobSpecError("no rects")
    return Rect(min(r.x0 for r in rects), max(r.x1 for r in rects),
                min(r.y0 for r in rects), max(r.y1 for r in rects))


def region(border: dict[str, Any] | None, width: int, height: int) -> Rect:
    """The pixels a render of the scene covers: its render region (``render.use_border``,
    the probe's ``border``), by Blender's own rule (:func:`blender_edge`), else the whole
    frame. Raises :class:`JobSpecError` for a region without a pixel, which Blender
    refuses to render too."""
    if not border or not border.get("use"):
        return Rect(0, width, 0, height)
    area = Rect(blender_edge(float(border["min_x"]), width),
                blender_edge(float(border["max_x"]), width),
                blender_edge(float(border["min_y"]), height),
                blender_edge(float(border["max_y"]), height))
    if area.width < 1 or area.height < 1:
        raise JobSpecError("the scene's render region holds no pixel: widen it or turn it"
                           " off (Render Region in the Output properties)", region=str(area))
    return area


def auto_count(spec: JobSpec, cost_class: str = "2G", area: Rect | None = None) -> int:
    """The smallest tile count whose every tile (overscan included) fits ``cost_class``.

    ``spec`` describes the frame (its rect is ignored); ``area`` is the part of it to
    render (default: all of it). Raises :class:`CostClassExceeded` when even
    one-pixel-high strips would not fit.
    """
    if cost_class not in COST_CLASSES:
        raise JobSpecError(f"unknown cost class {cost_class!r}", cost_class=cost_class)
    limit = COST_CLASSES[cost_class]
    full = area or Rect(0, spec.width, 0, spec.height)
    count = max(1, math.ceil(spec.ray_budget_for(full) / limit))
    while True:
        parts = tiles_in(full, count)
        if max(spec.ray_budget_for(t) for t in parts) <= limit:
            return count
        if len(parts) >= full.pixels:
            raise CostClassExceeded(
                f"a single pixel of this job exceeds {cost_class}",
                cost_class=cost_class, ray_budget=spec.ray_budget_for(parts[0]))
        count = max(count + 1, math.ceil(count * 1.1))


def split(spec: JobSpec, cost_class: str = "2G") -> list[JobSpec]:
    """The frame of ``spec`` as tile specs that each fit ``cost_class``."""
    return [spec.with_rect(r) for r in tiles(spec.width, spec.height, auto_count(spec, cost_class))]


END_SPLIT_MAX = 4  # tiles a frame of the last round is cut into at most (docs/buying.md)


def end_split(counts: list[int], sellers: int) -> int:
    """Tiles for each frame of the last round, when frames are one unit each: a job of F
    frames on S sellers ends with F mod S frames, leaving the other sellers idle while they
    render; cut into S // (F mod S) tiles (at most END_SPLIT_MAX) they keep every seller busy.
    1 when no seller would idle (F a multiple of S): then nothing costs an extra unit."""
    left = len(counts) % sellers if sellers > 1 else 0
    if not left or any(c != 1 for c in counts):
        return 1
    return min(END_SPLIT_MAX, sellers // left)
