"""Tiles rendered by the worker pool and stitched equal a local render, bit for bit.

The oracle is a plain full-frame render in its own process (``reference_render.py``);
comparisons are on the float32 EXR pixels and on the 8-bit PNG (scene view transform
AgX, default dither).
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bitwrk.buy import layer_samples
from bitwrk.render import exr
from bitwrk.render.compose import ComposeRequest
from bitwrk.render.composer import Composer
from bitwrk.render.jobspec import JobSpec
from bitwrk.render.tiling import Rect, region, tiles, tiles_in
from bitwrk.seller.pool import WorkerPool
from tests.blender.conftest import BLENDER_LINE, bpy_env, needs_bpy, run_bpy

pytestmark = [needs_bpy, pytest.mark.slow]


def png_pixels(path: Path) -> np.ndarray:
    io = exr.oiio()
    inp = io.ImageInput.open(str(path))
    data = inp.read_image(0, 0, 0, inp.spec().nchannels, "uint8")
    inp.close()
    return np.asarray(data).astype(np.int16)


def combined(path: Path) -> np.ndarray:
    return exr.read(path).part("ViewLayer.Combined").pixels


async def render_tiles(scene_dir: Path, out: Path, specs: list[JobSpec],
                       slots: int = 2) -> list[Path]:
    async with WorkerPool(cpus={0, 1} if slots == 2 else None, slots=slots,
                          cost_class="512M") as pool:
        outcomes = await asyncio.gather(*(
            pool.render(scene_dir / spec.blend, spec, out / f"tile-{i}.exr")
            for i, spec in enumerate(specs)))
    return [o.out for o in outcomes]


async def frame_from_tiles(scene_dir: Path, tmp_path: Path, specs: list[JobSpec],
                           compose: Callable[[ComposeRequest], dict[str, Any]]) -> Path:
    paths = await render_tiles(scene_dir, tmp_path, specs)
    request = ComposeRequest(tuple(zip(paths, specs, strict=True)), tmp_path / "frame.exr",
                             tmp_path / "frame.png", scene_dir / "scene.blend")
    answer = compose(request)
    assert answer["ok"], answer
    return tmp_path / "frame"


def assert_identical(got: Path, reference: Path, name: str) -> None:
    diff = np.abs(combined(got.with_suffix(".exr")) - combined(reference / f"{name}.exr"))
    assert diff.max() == 0.0, f"EXR max diff {diff.max()}"
    png = np.abs(png_pixels(got.with_suffix(".png")) - png_pixels(reference / f"{name}.png"))
    assert png.max() == 0, f"PNG: {(png > 0).sum()} values differ"


def variant(scene_dir: Path, tmp_path: Path, name: str, script: str, *args: str,
            source: Path | None = None) -> Path:
    """``tmp_path/job/name``: the bundled scene (or ``source``) changed by ``script``, a
    bpy script run with ``SOURCE TARGET *args``, in a job folder holding its textures (a
    symlink out of the job would be refused: the worker resolves links before checking)."""
    blend = tmp_path / "job" / name
    if not blend.parent.exists():
        blend.parent.mkdir()
        shutil.copytree(scene_dir / "textures", blend.parent / "textures")
    run_bpy(["-c", script, str(source or scene_dir / "scene.blend"), str(blend), *args],
            tmp_path)
    return blend


def local_renders(blend: Path, tmp_path: Path, *variants: str) -> Path:
    """The oracle for ``blend``: ``reference_render.py`` variants ``NAME:FRAME:DENOISE``."""
    out = tmp_path / "reference"
    out.mkdir(exist_ok=True)
    run_bpy([str(Path(__file__).parent / "reference_render.py"), str(blend), str(out),
             *variants], tmp_path)
    return out


async def bought(blend: Path, tmp_path: Path, specs: list[JobSpec],
                 compose: Callable[[ComposeRequest], dict[str, Any]]) -> Path:
    """Tiles of ``specs`` from ``blend``'s job folder, composed into ``tmp_path/frame``."""
    paths = await render_tiles(blend.parent, tmp_path, specs)
    answer = compose(ComposeRequest(tuple(zip(paths, specs, strict=True)),
                                    tmp_path / "frame.exr", tmp_path / "frame.png", blend))
    assert answer["ok"], answer
    return tmp_path / "frame"


def assert_every_layer(got: Path, local: Path) -> None:
    """The EXRs hold the same layers in the same order, each with the same pixels."""
    mine, theirs = exr.read(got), exr.read(local)
    assert (mine.width, mine.height) == (theirs.width, theirs.height)
    assert [p.name for p in mine.parts] == [p.name for p in theirs.parts]
    for part in theirs.parts:
        assert np.abs(mine.part(part.name).pixels - part.pixels).max() == 0.0, part.name


async def test_stitched_tiles_equal_a_local_render(
        scene_dir: Path, references: Path, tmp_path: Path, frame_spec: Any,
        compose: Any) -> None:
    specs = [frame_spec().with_rect(r) for r in tiles(96, 64, 6)]
    assert len({(s.rect.width, s.rect.height) for s in specs}) > 1 or len(specs) == 6
    frame = await frame_from_tiles(scene_dir, tmp_path, specs, compose)
    assert_identical(frame, references, "plain")


async def test_stitched_and_denoised_equals_a_local_denoised_render(
        scene_dir: Path, references: Path, tmp_path: Path, frame_spec: Any,
        compose: Any) -> None:
    specs = [frame_spec(denoise=True).with_rect(r) for r in tiles(96, 64, 4)]
    frame = await frame_from_tiles(scene_dir, tmp_path, specs, compose)
    assert_identical(frame, references, "denoised")
    tile = exr.read(tmp_path / "tile-0.exr")  # sellers shipped noisy colour + guides
    assert {p.name for p in tile.parts} >= {"ViewLayer.Denoising Albedo",
                                            "ViewLayer.Denoising Normal"}
    noisy = np.abs(combined(frame.with_suffix(".exr")) - combined(references / "plain.exr"))
    assert noisy.max() > 0.01  # the denoiser really ran


async def test_animation_frame_from_spec(scene_dir: Path, references: Path, tmp_path: Path,
                                         frame_spec: Any, compose: Any) -> None:
    specs = [frame_spec(frame=3).with_rect(r) for r in tiles(96, 64, 2)]
    frame = await frame_from_tiles(scene_dir, tmp_path, specs, compose)
    assert_identical(frame, references, "frame3")
    moved = np.abs(combined(references / "frame3.exr") - combined(references / "plain.exr"))
    assert moved.max() > 0.1  # the cube moved between frames 1 and 3


async def test_adaptive_sampling_tiles_with_overscan(scene_dir: Path, references: Path,
                                                     tmp_path: Path, frame_spec: Any,
                                                     compose: Any) -> None:
    # The reference turns adaptive sampling on (256 spp, threshold 0.02); a job carries
    # that in its .blend, so the tiles render from such a copy of the file.
    blend = variant(scene_dir, tmp_path, "scene.blend", ADAPTIVE_COPY)
    specs = [frame_spec(samples=256, overscan=8).with_rect(r) for r in tiles(96, 64, 4)]
    paths = await render_tiles(blend.parent, tmp_path, specs)
    stitched = exr.stitch([(p, s.rect) for p, s in zip(paths, specs, strict=True)], 96, 64)
    diff = np.abs(stitched.part("ViewLayer.Combined").pixels
                  - combined(references / "adaptive.exr"))
    assert diff.max() == 0.0

    # Denoised: Cycles normalises per pixel and scales OIDN's output back by each pixel's
    # sample count, which the tiles do not carry; the result differs by a float rounding.
    denoised = frame_spec(samples=256, overscan=8, denoise=True)
    specs = [denoised.with_rect(r) for r in tiles(96, 64, 4)]
    out = tmp_path / "denoised"
    paths = await render_tiles(blend.parent, out, specs)
    answer = compose(ComposeRequest(tuple(zip(paths, specs, strict=True)),
                                    out / "frame.exr", out / "frame.png", blend))
    assert answer["ok"], answer
    diff = np.abs(combined(out / "frame.exr") - combined(references / "adaptive_denoised.exr"))
    assert diff.max() <= 1e-5, diff.max()
    png = np.abs(png_pixels(out / "frame.png")
                 - png_pixels(references / "adaptive_denoised.png"))
    assert png.max() <= 1


ADAPTIVE_COPY = """
import sys, bpy
bpy.ops.wm.open_mainfile(filepath=sys.argv[1], load_ui=False, use_scripts=False)
cy = bpy.context.scene.cycles
cy.use_adaptive_sampling, cy.samples, cy.adaptive_threshold = True, 256, 0.02
bpy.ops.wm.save_as_mainfile(filepath=sys.argv[2], relative_remap=False)
"""


EXPOSURE_FADE = """
import sys, bpy
bpy.ops.wm.open_mainfile(filepath=sys.argv[1], load_ui=False, use_scripts=False)
scene = bpy.context.scene
for frame, exposure in ((1, 0.0), (3, 1.5)):
    scene.view_settings.exposure = exposure
    scene.view_settings.keyframe_insert("exposure", frame=frame)
scene.frame_set(1)
bpy.ops.wm.save_as_mainfile(filepath=sys.argv[2], relative_remap=False)
"""


async def test_an_animated_view_transform_applies_at_each_frames_own_time(
        scene_dir: Path, tmp_path: Path, frame_spec: Any) -> None:
    """The buyer's compose process gets frames in the order their units land: frame 3 of
    a scene saved at frame 1, then frame 1. An exposure keyframed from 0 to 1.5 must
    show in each frame's PNG as in a local render of that frame (it once kept the file's
    own frame: frame 3's PNG came out as dark as frame 1's)."""
    blend = variant(scene_dir, tmp_path, "fade.blend", EXPOSURE_FADE)
    reference = local_renders(blend, tmp_path, "f3:3:0", "f1:1:0")
    requests = []
    for frame in (3, 1):
        specs = [frame_spec(blend="fade.blend", frame=frame).with_rect(r)
                 for r in tiles(96, 64, 2)]
        out = tmp_path / f"frame{frame}"
        paths = await render_tiles(blend.parent, out, specs)
        requests.append(ComposeRequest(tuple(zip(paths, specs, strict=True)),
                                       out / "frame.exr", out / "frame.png", blend))
    with Composer(blend, env=bpy_env(tmp_path)) as composer:
        composer.probe()
        for request in requests:
            composer.submit(request.to_json())
        answers = composer.finish(120)
    assert [a["ok"] for a in answers] == [True, True], answers
    for frame in (3, 1):
        assert_identical(tmp_path / f"frame{frame}" / "frame", reference, f"f{frame}")
    brighter = png_pixels(reference / "f3.png")[..., :3] - png_pixels(reference / "f1.png")[..., :3]
    assert brighter.mean() > 20  # the fade shows: frame 3 is much brighter


REGION = """
import sys, bpy
bpy.ops.wm.open_mainfile(filepath=sys.argv[1], load_ui=False, use_scripts=False)
r = bpy.context.scene.render
r.use_border, r.use_crop_to_border = True, sys.argv[3] == "crop"
r.border_min_x, r.border_max_x, r.border_min_y, r.border_max_y = 0.21, 0.73, 0.3, 0.91
bpy.ops.wm.save_as_mainfile(filepath=sys.argv[2], relative_remap=False)
"""


@pytest.mark.parametrize("crop", ["crop", "keep"])
async def test_a_render_region_is_bought_alone_and_saved_as_blender_saves_it(
        scene_dir: Path, tmp_path: Path, frame_spec: Any, compose: Any, crop: str) -> None:
    """A scene with a render region (Ctrl+B): only the region's pixels are bought, and the
    denoised frame equals a local render of that file: the region alone with "crop to
    render region", else the whole frame with nothing outside the region."""
    blend = variant(scene_dir, tmp_path, "region.blend", REGION, crop)
    reference = local_renders(blend, tmp_path, "region:1:1")
    result = run_bpy(["-m", "bitwrk.render.scene", str(blend)], tmp_path)
    area = region(json.loads(result.stdout)["border"], 96, 64)
    assert area == Rect(20, 70, 19, 58)  # Blender's rule: int(float32(f) * size)
    specs = [frame_spec(blend="region.blend", denoise=True).with_rect(r)
             for r in tiles_in(area, 4)]
    await bought(blend, tmp_path, specs, compose)
    expected = (50, 39) if crop == "crop" else (96, 64)
    assert exr.read(tmp_path / "frame.exr").width == expected[0]
    assert png_pixels(tmp_path / "frame.png").shape[:2] == (expected[1], expected[0])
    assert_identical(tmp_path / "frame", reference, "region")


LAYER_SAMPLES = """
import sys, bpy
bpy.ops.wm.open_mainfile(filepath=sys.argv[1], load_ui=False, use_scripts=False)
scene = bpy.context.scene
scene.cycles.use_layer_samples = sys.argv[3]
scene.view_layers["ViewLayer"].samples = 5
bpy.ops.wm.save_as_mainfile(filepath=sys.argv[2], relative_remap=False)
"""


@pytest.mark.parametrize(("mode", "samples"), [("USE", 5), ("BOUNDED", 5), ("IGNORE", 16)])
async def test_a_view_layers_own_sample_count_is_bought_as_cycles_renders_it(
        scene_dir: Path, tmp_path: Path, frame_spec: Any, compose: Any, mode: str,
        samples: int) -> None:
    """View Layer > Samples 5 against the scene's 16: the plan's count (from the probe)
    gives tiles that equal a local render of the file, under each Layer Samples mode."""
    blend = variant(scene_dir, tmp_path, "layers.blend", LAYER_SAMPLES, mode)
    reference = local_renders(blend, tmp_path, "layers:1:0")
    info = json.loads(run_bpy(["-m", "bitwrk.render.scene", str(blend)], tmp_path).stdout)
    assert layer_samples(info) == samples
    specs = [frame_spec(blend="layers.blend", samples=samples).with_rect(r)
             for r in tiles(96, 64, 2)]
    await bought(blend, tmp_path, specs, compose)
    assert_identical(tmp_path / "frame", reference, "layers")


STEREO = """
import sys, bpy
bpy.ops.wm.open_mainfile(filepath=sys.argv[1], load_ui=False, use_scripts=False)
bpy.context.scene.render.use_multiview = True  # stereo 3D: left and right views
bpy.ops.wm.save_as_mainfile(filepath=sys.argv[2], relative_remap=False)
"""
GUIDING = """
import sys, bpy
bpy.ops.wm.open_mainfile(filepath=sys.argv[1], load_ui=False, use_scripts=False)
bpy.context.scene.cycles.use_guiding = True
bpy.ops.wm.save_as_mainfile(filepath=sys.argv[2], relative_remap=False)
"""


@pytest.mark.parametrize(("script", "setting"), [(STEREO, "multiview"),
                                                 (GUIDING, "path_guiding")],
                         ids=["stereo", "path-guiding"])
async def test_sellers_turn_off_what_would_make_tiles_unverifiable(
        scene_dir: Path, references: Path, tmp_path: Path, frame_spec: Any, script: str,
        setting: str) -> None:
    """The buyer refuses both (bitwrk.buy.plan); a seller handed such a file anyway
    renders one view, without path guiding. Stereo made a tile fail to save after its
    render; path guiding learns from the region rendered, so 4 stitched tiles differed
    from the whole frame by up to 0.23, and a buyer's check patch would differ from an
    honest seller's tile. The tiles now have the mono passes and the plain pixels."""
    blend = variant(scene_dir, tmp_path, "x.blend", script)
    info = json.loads(run_bpy(["-m", "bitwrk.render.scene", str(blend)], tmp_path).stdout)
    assert info[setting] is True
    specs = [frame_spec(blend="x.blend").with_rect(r) for r in tiles(96, 64, 4)]
    paths = await render_tiles(blend.parent, tmp_path, specs)
    plain = exr.read(references / "plain.exr")
    for path in paths:
        assert [p.name for p in exr.read(path).parts] == [p.name for p in plain.parts]
    stitched = exr.stitch([(p, s.rect) for p, s in zip(paths, specs, strict=True)], 96, 64)
    assert np.abs(stitched.part("ViewLayer.Combined").pixels
                  - plain.part("ViewLayer.Combined").pixels).max() == 0.0


COMPOSITOR = """
import sys, bpy
bpy.ops.wm.open_mainfile(filepath=sys.argv[1], load_ui=False, use_scripts=False)
scene = bpy.context.scene
if hasattr(scene, "compositing_node_group"):  # 5.0+: a node group with a Group Output
    tree = bpy.data.node_groups.new("Comp", "CompositorNodeTree")
    scene.compositing_node_group = tree
    tree.interface.new_socket("Image", in_out="OUTPUT", socket_type="NodeSocketColor")
    out = tree.nodes.new("NodeGroupOutput")
else:
    scene.use_nodes = True
    tree = scene.node_tree
    tree.nodes.clear()
    out = tree.nodes.new("CompositorNodeComposite")
layers = tree.nodes.new("CompositorNodeRLayers")
glare = tree.nodes.new("CompositorNodeGlare")  # streaks reach across tile borders
lens = tree.nodes.new("CompositorNodeLensdist")
tree.links.new(layers.outputs["Image"], glare.inputs["Image"])
tree.links.new(glare.outputs["Image"], lens.inputs["Image"])
tree.links.new(lens.outputs["Image"], out.inputs[0])
bpy.ops.wm.save_as_mainfile(filepath=sys.argv[2], relative_remap=False)
"""


async def test_the_compositor_runs_on_the_stitched_frame_as_after_a_local_render(
        scene_dir: Path, tmp_path: Path, frame_spec: Any, compose: Any) -> None:
    """Glare and lens distortion reach across tile borders: they run once, on the
    stitched frame. The PNG and every layer of the EXR equal a local render, the
    compositor's own "Composite" layer included."""
    blend = variant(scene_dir, tmp_path, "comp.blend", COMPOSITOR)
    reference = local_renders(blend, tmp_path, "comp:1:1")
    specs = [frame_spec(blend="comp.blend", denoise=True).with_rect(r)
             for r in tiles(96, 64, 4)]
    await bought(blend, tmp_path, specs, compose)
    assert_every_layer(tmp_path / "frame.exr", reference / "comp.exr")
    got = exr.read(tmp_path / "frame.exr")
    assert "Composite.Combined" in [p.name for p in got.parts]
    assert not np.array_equal(got.part("Composite.Combined").pixels,
                              got.part("ViewLayer.Combined").pixels)  # it did composite
    png = np.abs(png_pixels(tmp_path / "frame.png") - png_pixels(reference / "comp.png"))
    assert png.max() == 0
    assert not list(tmp_path.glob("frame.exr.*"))  # no temporary file left


@pytest.mark.parametrize("crop", ["crop", "keep"])
async def test_a_render_region_with_a_compositor_keeps_every_layer_exact(
        scene_dir: Path, tmp_path: Path, frame_spec: Any, compose: Any, crop: str) -> None:
    """Region, compositor and denoise at once: every EXR layer (Composite, Combined,
    Noisy Image) and the PNG equal a local render, cropped to the region or not."""
    region_only = variant(scene_dir, tmp_path, "region.blend", REGION, crop)
    blend = variant(scene_dir, tmp_path, "both.blend", COMPOSITOR, source=region_only)
    reference = local_renders(blend, tmp_path, "both:1:1")
    specs = [frame_spec(blend="both.blend", denoise=True).with_rect(r)
             for r in tiles_in(Rect(20, 70, 19, 58), 4)]
    await bought(blend, tmp_path, specs, compose)
    assert_every_layer(tmp_path / "frame.exr", reference / "both.exr")
    assert np.abs(png_pixels(tmp_path / "frame.png")
                  - png_pixels(reference / "both.png")).max() == 0


def test_probe_reports_the_scene_settings(scene_dir: Path, tmp_path: Path) -> None:
    result = run_bpy(["-m", "bitwrk.render.scene", str(scene_dir / "scene.blend")], tmp_path)
    info = json.loads(result.stdout)
    assert info["blender"] == BLENDER_LINE
    assert info["scene"] == "Shot" and info["engine"] == "CYCLES"
    assert (info["width"], info["height"], info["resolution_percentage"]) == (96, 64, 50)
    assert (info["frame_start"], info["frame_end"], info["fps"]) == (1, 4, 24)
    assert info["samples"] == 16 and info["max_bounces"] == 6 and info["seed"] == 0
    assert info["adaptive"]["use"] is False and info["denoise"]["use"] is False
    assert info["denoise"]["prefilter"] == "ACCURATE"
    assert info["view_layers"] == [{"name": "ViewLayer", "use": True, "samples": 0}]
    assert info["color"]["view_transform"] == "AgX"
    assert info["output"]["filepath"] == "//out/shot_"
