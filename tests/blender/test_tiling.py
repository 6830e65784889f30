"""Tiling: Blender's border rule, exact tiles, tile counts from cost classes (no bpy)."""

from __future__ import annotations

import random

import numpy as np
import pytest

from bitwrk.articles import COST_CLASSES
from bitwrk.render.errors import CostClassExceeded
from bitwrk.render.jobspec import JobSpec
from bitwrk.render.tiling import (
    Rect,
    auto_count,
    blender_edge,
    border,
    border_fraction,
    grid_shape,
    split,
    tiles,
)


def blender_edges(fractions: np.ndarray, size: int) -> np.ndarray:
    """Blender's ``(int)(border * (float)size)`` in float32, vectorised."""
    product = fractions.astype(np.float32) * np.float32(size)
    return product.astype(np.int64)  # float32 -> int truncates toward zero


def test_border_fraction_hits_every_edge_of_every_width_up_to_8192() -> None:
    for size in range(1, 8193):
        edges = np.arange(1, size + 1)
        fractions = np.minimum((edges + 0.5) / size, 1.0)
        assert (blender_edges(fractions, size) == edges).all(), size


def test_border_fraction_on_sampled_large_widths() -> None:
    rng = random.Random(5)
    for size in [65536, 65535, 40000, *rng.sample(range(8193, 65536), 40)]:
        edges = np.arange(0, size + 1)
        fractions = np.array([border_fraction(int(e), size) for e in edges[::97]])
        assert (blender_edges(fractions, size) == edges[::97]).all(), size


def test_naive_fraction_is_one_pixel_short_where_blender_facts_say() -> None:
    assert blender_edge(63 / 240, 240) == 62  # measured with a real render
    assert blender_edge(border_fraction(63, 240), 240) == 63
    assert blender_edge(1 / 3, 320) == 106  # truncation, not rounding
    assert blender_edge(1.0, 1920) == 1920


def test_border_round_trips_rects() -> None:
    rect = Rect(63, 125, 7, 56)
    fractions = border(rect, 240, 1080)
    assert Rect(*(blender_edge(f, s) for f, s in zip(fractions, (240, 240, 1080, 1080),
                                                     strict=True))) == rect


@pytest.mark.parametrize(("width", "height", "count"), [
    (96, 64, 1), (96, 64, 4), (96, 64, 6), (1920, 1080, 7), (1920, 1080, 64), (7, 3, 21),
    (3, 1000, 10), (1, 1, 5)])
def test_tiles_cover_the_frame_exactly_once(width: int, height: int, count: int) -> None:
    parts = tiles(width, height, count)
    assert len(parts) >= min(count, width * height)
    covered = np.zeros((height, width), dtype=int)
    for r in parts:
        assert r.inside(width, height)
        covered[r.y0:r.y1, r.x0:r.x1] += 1
    assert (covered == 1).all()


def test_grid_is_near_square() -> None:
    assert grid_shape(96, 64, 4) == (2, 2)
    for count in (16, 100, 1000):
        cols, rows = grid_shape(1920, 1080, count)
        assert count <= cols * rows <= count * 1.25
        assert 0.66 < (1920 / cols) / (1080 / rows) < 1.5


def test_overscan_rect_is_clamped() -> None:
    assert Rect(10, 20, 0, 5).grown(8, 24, 64) == Rect(2, 24, 0, 13)


def frame(**changes: object) -> JobSpec:
    fields: dict[str, object] = dict(
        blend="scene.blend", scene="Shot", view_layers=("ViewLayer",), frame=1, width=1920,
        height=1080, x0=0, x1=1920, y0=0, y1=1080, samples=256, seed=0, max_bounces=12)
    fields.update(changes)
    return JobSpec(**fields)


def test_auto_count_makes_every_tile_fit_its_class() -> None:
    spec = frame(overscan=8)
    for cost_class, limit in COST_CLASSES.items():
        count = auto_count(spec, cost_class)
        parts = split(spec, cost_class)
        assert all(p.ray_budget() <= limit for p in parts)
        assert all(p.cost_class() in COST_CLASSES for p in parts)
        if count > 1:  # one tile fewer would not have fitted
            assert max(spec.ray_budget_for(r) for r in tiles(1920, 1080, count - 1)) > limit
    assert auto_count(frame(samples=1, max_bounces=0), "512M") == 1


def test_auto_count_refuses_a_pixel_above_the_class() -> None:
    with pytest.raises(CostClassExceeded):
        auto_count(frame(width=4, height=4, x1=4, y1=4, samples=1 << 24, max_bounces=1024),
                   "512M")
