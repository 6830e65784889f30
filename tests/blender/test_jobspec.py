"""JobSpec: strict JSON round trip, validation, ray budget and cost class (no bpy)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bitwrk.articles import COST_CLASSES
from bitwrk.render.errors import CostClassExceeded, JobSpecError
from bitwrk.render.jobspec import JobSpec
from bitwrk.render.tiling import Rect

BASE: dict[str, Any] = dict(
    blend="shots/scene.blend", scene="Shot", view_layers=["ViewLayer"], frame=1, width=1920,
    height=1080, x0=0, x1=960, y0=540, y1=1080, samples=64, seed=7, max_bounces=12,
    denoise=True, overscan=0, blender="5.0", engine="CYCLES", device="CPU",
    output="EXR_MULTILAYER")


def spec(**changes: Any) -> JobSpec:
    return JobSpec.from_json({**BASE, **changes})


def test_round_trip_through_json_text() -> None:
    original = spec()
    assert JobSpec.from_json(original.to_json()) == original
    assert JobSpec.from_json(original.dumps()) == original
    assert json.loads(original.dumps()) == BASE
    assert original.rect == Rect(0, 960, 540, 1080)


@pytest.mark.parametrize("changes", [
    {"x0": 960, "x1": 960}, {"x1": 1921}, {"y0": -1}, {"width": 0}, {"samples": 0},
    {"seed": -1}, {"seed": 2**31}, {"max_bounces": 1025}, {"overscan": -8},
    {"frame": 1_048_575}, {"samples": True}, {"samples": 1.5}, {"denoise": 1},
    {"engine": "BLENDER_EEVEE"}, {"device": "TPU"}, {"output": "PNG"}, {"blender": "5"},
    {"blend": "/etc/scene.blend"}, {"blend": "../scene.blend"}, {"blend": "a//b.blend"},
    {"blend": "scene.py"}, {"blend": "c:\\\\x.blend"}, {"blend": "C:/x.blend"},
    {"scene": ""}, {"scene": "x" * 64}, {"view_layers": []}, {"view_layers": ["A", "A"]},
    {"view_layers": "ViewLayer"},
])
def test_rejects_bad_values(changes: dict[str, Any]) -> None:
    with pytest.raises(JobSpecError):
        spec(**changes)


def test_rejects_unknown_and_missing_fields() -> None:
    with pytest.raises(JobSpecError) as info:
        JobSpec.from_json({**BASE, "script": "import os"})
    assert info.value.data["unknown"] == ["script"]
    partial = dict(BASE)
    del partial["seed"]
    with pytest.raises(JobSpecError) as info:
        JobSpec.from_json(partial)
    assert info.value.data["missing"] == ["seed"]
    for bad in ("[1]", "not json", b"{", 42):
        with pytest.raises(JobSpecError):
            JobSpec.from_json(bad)


def test_ray_budget_counts_pixels_samples_bounces_layers_and_overscan() -> None:
    s = spec(view_layers=["A", "B"])
    assert s.ray_budget() == 960 * 540 * 64 * 13 * 2
    with_overscan = spec(overscan=8)  # left and bottom edges clamp to the frame
    assert with_overscan.render_rect == Rect(0, 968, 532, 1080)
    assert with_overscan.ray_budget() == 968 * 548 * 64 * 13


def test_cost_class_is_the_smallest_that_fits() -> None:
    per_sample = 100 * 100 * 1  # 100x100 px, max_bounces 0, one layer
    small = COST_CLASSES["512M"] // per_sample
    def at(samples: int) -> str:
        return spec(width=100, height=100, x0=0, x1=100, y0=0, y1=100, max_bounces=0,
                    samples=samples).cost_class()
    assert at(small) == "512M"
    assert at(small + 1) == "2G"
    assert at(COST_CLASSES["32G"] // per_sample) == "32G"
    with pytest.raises(CostClassExceeded):
        at(COST_CLASSES["32G"] // per_sample + 1)
