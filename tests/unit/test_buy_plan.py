"""The buyer's plan (issue 17): the last round of frames fits the sellers asking now; the
quote's arithmetic; frames handed to the compose process as they complete."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bitwrk.buy import plan
from bitwrk.errors import BitwrkError
from bitwrk.quote import Quote, asks_within, sample_rect, setup_rect
from bitwrk.render import exr
from bitwrk.render.composer import FrameOutput
from bitwrk.render.errors import ComposeError, JobSpecError
from bitwrk.render.tiling import END_SPLIT_MAX, Rect, bounds, end_split, region


def info(width: int = 320, height: int = 240) -> dict[str, Any]:
    """What ``bitwrk.render.scene.probe`` says about a plain Cycles scene."""
    return {"scene": "Scene", "width": width, "height": height, "samples": 16, "seed": 0,
            "max_bounces": 8, "denoise": {"use": False}, "adaptive": {"use": False},
            "view_layers": [{"name": "ViewLayer", "use": True}], "blender": "5.0",
            "frame_current": 1, "frame_step": 1}


@pytest.mark.parametrize(("frames", "sellers", "split"), [
    (12, 2, 1),  # a multiple: every round full, no extra unit
    (6, 3, 1),
    (5, 2, 2),  # the last frame alone: two halves for the two sellers
    (1, 2, 2),  # a still on two sellers
    (9, 4, 4),  # one frame left for four sellers
    (10, 4, 2),  # two frames left for four sellers
    (3, 4, 1),  # three frames on four sellers: a quarter idle, but 4 // 3 == 1
    (1, 16, END_SPLIT_MAX),
    (7, 1, 1),  # one seller: never idle
    (7, 0, 1),  # nobody asks now: no guess
])
def test_end_split_fills_the_last_round(frames: int, sellers: int, split: int) -> None:
    assert end_split([1] * frames, sellers) == split


def test_frames_already_in_tiles_are_not_split_again() -> None:
    assert end_split([2, 2, 2], 2) == 1


def test_plan_cuts_only_the_last_round_and_only_with_auto_tiles() -> None:
    units = plan(info(), "scene.blend", [1, 2, 3, 4, 5], "auto", "512M", sellers=2).units
    per_frame = {f: sum(s.frame == f for _u, s in units) for f in range(1, 6)}
    assert per_frame == {1: 1, 2: 1, 3: 1, 4: 1, 5: 2}
    halves = [s.rect for _u, s in units if s.frame == 5]
    assert sum(r.pixels for r in halves) == 320 * 240
    assert [u for u, _s in units][-2:] == ["f00005_t000", "f00005_t001"]
    pinned = plan(info(), "scene.blend", [1, 2, 3, 4, 5], "1", "512M", sellers=2).units
    assert len(pinned) == 5  # --tiles 1 is the user's word
    assert len(plan(info(), "scene.blend", [1, 2, 3, 4], "auto", "512M", sellers=2).units) == 4


def test_a_render_region_is_planned_alone_by_blenders_rule() -> None:
    scene = info() | {"border": {"use": True, "crop": False, "min_x": 0.25, "max_x": 0.5,
                                 "min_y": 0.1, "max_y": 0.9}}
    units = plan(scene, "scene.blend", [1, 2], "3", "512M").units
    area = Rect(80, 160, 24, 216)  # int(float32(f) * size) of a 320x240 frame
    assert region(scene["border"], 320, 240) == area
    for frame in (1, 2):
        rects = [s.rect for _u, s in units if s.frame == frame]
        assert len(rects) == 3 and bounds(rects) == area
        assert sum(r.pixels for r in rects) == area.pixels  # no pixel twice
    auto = plan(scene, "scene.blend", [1], "auto", "512M").units
    assert bounds([s.rect for _u, s in auto]) == area
    off = info() | {"border": {**scene["border"], "use": False}}
    assert bounds([s.rect for _u, s in plan(off, "s.blend", [1], "2", "512M").units]) == \
        Rect(0, 320, 0, 240)


def test_an_empty_render_region_is_refused_as_blender_refuses_it() -> None:
    empty = {"use": True, "min_x": 0.5, "max_x": 0.501, "min_y": 0.0, "max_y": 1.0}
    with pytest.raises(JobSpecError, match="render region holds no pixel"):
        plan(info() | {"border": empty}, "scene.blend", [1], "auto", "512M")


def test_stitching_a_region_places_tiles_from_its_corner_and_embed_pads_with_zeros() -> None:
    area = Rect(2, 6, 1, 4)
    tiles = [(exr.MultiLayer(2, 3, [exr.Part("L.Combined", ["R"], np.full((3, 2, 1), v,
                                                                             np.float32))]),
              Rect(x, x + 2, 1, 4), f"t{x}") for v, x in ((1.0, 2), (2.0, 4))]
    image = exr.stitch_images(tiles, 8, 5, area)
    assert (image.width, image.height) == (4, 3)
    assert image.part("L.Combined").pixels[..., 0].tolist() == [[1, 1, 2, 2]] * 3
    whole = exr.embed(image, area, 8, 5)
    pixels = whole.part("L.Combined").pixels[..., 0]
    assert pixels.sum() == 18 and pixels[1:4, 2:6].tolist() == [[1, 1, 2, 2]] * 3
    with pytest.raises(ComposeError, match="outside the region"):
        exr.stitch_images(tiles, 8, 5, Rect(3, 6, 1, 4))
    with pytest.raises(ComposeError, match="cover the frame exactly once"):
        exr.stitch_images(tiles[:1], 8, 5, area)


@pytest.mark.parametrize(("mode", "own", "samples"), [
    ("USE", 0, 16), ("USE", 8, 8), ("USE", 64, 64), ("BOUNDED", 8, 8), ("BOUNDED", 64, 16),
    ("IGNORE", 8, 16)])
def test_a_view_layers_own_sample_count_applies_as_cycles_applies_it(
        mode: str, own: int, samples: int) -> None:
    scene = info() | {"layer_samples": mode,
                      "view_layers": [{"name": "ViewLayer", "use": True, "samples": own},
                                      {"name": "Off", "use": False, "samples": 1}]}
    (_unit, spec), = plan(scene, "scene.blend", [1], "1", "512M").units
    assert spec.samples == samples


def test_view_layers_with_different_sample_counts_are_refused() -> None:
    scene = info() | {"layer_samples": "USE",
                      "view_layers": [{"name": "Fg", "use": True, "samples": 64},
                                      {"name": "Bg", "use": True, "samples": 0}]}
    with pytest.raises(BitwrkError, match=r"different sample counts \(Bg: 16; Fg: 64\)"):
        plan(scene, "scene.blend", [1], "1", "512M")


def test_a_stereoscopic_scene_is_refused_before_anything_is_bought() -> None:
    with pytest.raises(BitwrkError, match="stereoscopy"):
        plan(info() | {"multiview": True}, "scene.blend", [1], "auto", "512M")
    assert plan(info() | {"multiview": False}, "scene.blend", [1], "1", "512M").units


def test_a_scene_with_path_guiding_is_refused_before_anything_is_bought() -> None:
    with pytest.raises(BitwrkError, match="Path Guiding"):
        plan(info() | {"path_guiding": True}, "scene.blend", [1], "1", "512M")


def test_quote_figures() -> None:
    rect = sample_rect(320, 240)
    assert (rect.width, rect.height) == (80, 60)
    assert (rect.x0 + rect.x1, rect.y0 + rect.y1) == (320, 240)  # in the middle
    small = sample_rect(40, 20)  # at least 32 px a side, never more than the frame
    assert (small.width, small.height) == (32, 20)
    market = {"asks": [{"price": 30, "count": 1}, {"price": 10, "count": 2},
                       {"price": 500, "count": 9}]}
    asks = asks_within(market, 100)
    assert asks == ((10, 2), (30, 1))
    q = Quote("net.bitwrk/blender/5.0/512M", 6, (320 * 240,) * 6, 80 * 60, 0.25, asks, 100,
              100)
    assert q.cpu_seconds == pytest.approx(6 * 16 * 0.25)
    assert q.sellers == 3
    assert q.seconds() == pytest.approx(2 * 16 * 0.25)  # two rounds of three units
    # units spread over the asks: 10, 10, 30, 10, 10, 30; fee 1 %, rounded up per trade
    assert q.cost() == (4 * 11 + 2 * 31, 6 * 101)
    with_setup = Quote("a", 4, (400,) * 4, 100, 0.5, asks, 100, 100, setup_seconds=0.2)
    assert with_setup.cpu_seconds == pytest.approx(4 * 0.2 + 4 * 4 * 0.5)
    assert setup_rect(320, 240) == Rect(156, 164, 116, 124)  # 8 x 8 px in the middle
    nobody = Quote("a", 1, (100,), 100, 1.0, (), 100, 100)
    assert nobody.seconds() is None and nobody.cost() == (101, 101)
    assert any("no ask at or below" in line for line in nobody.lines())


class FakeComposer:
    """Stands in for the compose process: records requests; ``done`` were answered."""

    def __init__(self, done: int) -> None:
        self.requests: list[dict[str, Any]] = []
        self.done = done
        self.closed = False

    def submit(self, request: dict[str, Any]) -> None:
        self.requests.append(request)

    def close(self) -> None:
        self.closed = True

    def answered(self) -> int:
        return self.done


def test_frames_go_to_compose_when_complete_and_half_written_ones_go_away(
        tmp_path: Path) -> None:
    units = plan(info(), "scene.blend", [1, 2, 3], "2", "512M").units
    fake = FakeComposer(done=1)
    output = FrameOutput(units, tmp_path, "Scene", fake)  # type: ignore[arg-type]
    for uid, _spec in units[:3]:  # frame 1 complete, frame 2 half
        output.landed(uid, tmp_path / f"{uid}.exr")
    assert [r["exr"] for r in fake.requests] == [str(tmp_path / "Scene_0001.exr")]
    assert len(fake.requests[0]["tiles"]) == 2
    output.landed(units[3][0], tmp_path / "x.exr")  # frame 2 complete: handed over too
    assert len(fake.requests) == 2
    for frame in (1, 2):  # both on disk when the buyer leaves early; only 1 was answered
        for suffix in (".exr", ".png"):
            (tmp_path / f"Scene_{frame:04d}{suffix}").write_bytes(b"x")
    output.abandon()
    assert fake.closed
    assert sorted(p.name for p in tmp_path.glob("Scene_*")) == ["Scene_0001.exr",
                                                                "Scene_0001.png"]
