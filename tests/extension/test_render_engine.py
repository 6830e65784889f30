"""The "BitWrk" render engine, headless, through a real exchange and two sellers: tiles land
in the render result one by one, and the result equals a local Cycles render bit for bit."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bitwrk.render import exr
from bitwrk.render.tiling import Rect, bounds
from tests.blender.test_render_exact import REGION
from tests.extension.conftest import (
    HAVE_BPY,
    HERE,
    ROOT,
    bpy_run,
    fund_buyer,
    run_report,
    scratch_env,
)

pytestmark = [pytest.mark.skipif(not HAVE_BPY, reason="the bpy module is not installed"),
              pytest.mark.slow]


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The bundled scene and local reference renders (plain and denoised)."""
    base = tmp_path_factory.mktemp("scene")
    env = scratch_env(base)
    (base / "markers").mkdir()
    bpy_run([str(ROOT / "tests/data/scenes/make_scene.py"), str(base / "job"),
             "--evil", str(base / "markers")], env)
    bpy_run([str(ROOT / "tests/blender/reference_render.py"), str(base / "job/scene.blend"),
             str(base / "ref"), "plain:1:0:0", "denoised:1:1:0"], env)
    return {"blend": base / "job/scene.blend", "ref": base / "ref"}


def combined(path: Path) -> Any:
    return exr.read(path).part("ViewLayer.Combined").pixels


def png(path: Path) -> Any:
    io = exr.oiio()
    inp = io.ImageInput.open(str(path))
    data = inp.read_image(0, 0, 0, inp.spec().nchannels, "uint8")
    inp.close()
    return np.asarray(data).astype(np.int16)


@pytest.mark.parametrize("denoise", [False, True], ids=["plain", "denoised"])
def test_f12_on_bitwrk_equals_a_local_render(
        extension_zip: Path, scene: dict[str, Path], exchange_with_sellers: str,
        tmp_path: Path, denoise: bool) -> None:
    db = tmp_path / "exchange" / "exchange.sqlite3"
    buyer = tmp_path / "buyer"
    env = scratch_env(buyer)
    fund_buyer(exchange_with_sellers, db, env)
    stem = tmp_path / "result"
    report = run_report([str(HERE / "render_check.py"), str(extension_zip),
                         str(scene["blend"]), exchange_with_sellers, str(stem), "4",
                         "1" if denoise else "0"], env)
    assert report["result"] == ["FINISHED"], report
    tiles = [entry for entry in report["log"] if entry[5] == "tile"]
    assert len(tiles) == 4 and report["done"] == 4 and report["failed"] == 0
    assert len({tuple(t[1:5]) for t in tiles}) == 4  # each tile its own begin/end_result
    assert report["spent"] > 0 and report["stopped"]
    name = "denoised" if denoise else "plain"
    if denoise:
        assert report["log"][-1][5] == "denoised"  # one whole-frame write after the tiles
    assert np.abs(combined(stem.with_suffix(".exr"))
                  - combined(scene["ref"] / f"{name}.exr")).max() == 0.0
    assert np.abs(png(stem.with_suffix(".png")) - png(scene["ref"] / f"{name}.png")).max() == 0
    got, local = exr.read(stem.with_suffix(".exr")), exr.read(scene["ref"] / f"{name}.exr")
    assert [p.name for p in got.parts] == [p.name for p in local.parts]  # Noisy Image too
    for part in local.parts:
        assert np.abs(got.part(part.name).pixels - part.pixels).max() == 0.0, part.name



@pytest.mark.parametrize("crop", ["crop", "keep"])
def test_f12_with_a_render_region_buys_only_the_region(
        extension_zip: Path, scene: dict[str, Path], exchange_with_sellers: str,
        tmp_path: Path, crop: str) -> None:
    """Ctrl+B in the camera view, then F12: the region's pixels alone are bought (Blender
    counts the result from the region's corner), denoised, and equal a local render."""
    db = tmp_path / "exchange" / "exchange.sqlite3"
    buyer = tmp_path / "buyer"
    env = scratch_env(buyer)
    fund_buyer(exchange_with_sellers, db, env)
    blend = scene["blend"].parent / f"region-{crop}.blend"
    bpy_run(["-c", REGION, str(scene["blend"]), str(blend), crop], env)
    bpy_run([str(ROOT / "tests/blender/reference_render.py"), str(blend), str(tmp_path),
             "local:1:1:0"], env)
    stem = tmp_path / "result"
    report = run_report([str(HERE / "render_check.py"), str(extension_zip), str(blend),
                         exchange_with_sellers, str(stem), "4", "1"], env)
    assert report["result"] == ["FINISHED"], report
    tiles = [entry for entry in report["log"] if entry[5] == "tile"]
    assert len(tiles) == 4 and report["done"] == 4
    region = Rect(20, 70, 19, 58)  # of the 96x64 frame
    assert all(bounds([Rect(t[1], t[1] + t[3], t[2], t[2] + t[4]), region]) == region
               for t in tiles)
    assert report["log"][-1] == ["frame", 20, 19, 50, 39, "denoised"]
    got, local = combined(stem.with_suffix(".exr")), combined(tmp_path / "local.exr")
    assert got.shape == local.shape == ((39, 50, 4) if crop == "crop" else (64, 96, 4))
    assert np.abs(got - local).max() == 0.0
    assert np.abs(png(stem.with_suffix(".png")) - png(tmp_path / "local.png")).max() == 0


def test_two_view_layers_buy_the_frame_once_and_fill_both(
        extension_zip: Path, scene: dict[str, Path], exchange_with_sellers: str,
        tmp_path: Path) -> None:
    """Blender calls the engine's render() once per view layer: one purchase per frame."""
    env = scratch_env(tmp_path / "buyer")
    two = tmp_path / "two" / "scene.blend"
    two.parent.mkdir()
    shutil.copytree(scene["blend"].parent, two.parent, dirs_exist_ok=True)
    bpy_run([str(HERE / "two_layers.py"), str(scene["blend"]), str(two)], env)
    bpy_run([str(ROOT / "tests/blender/reference_render.py"), str(two),
             str(tmp_path / "ref"), "two:1:0:0"], env)
    fund_buyer(exchange_with_sellers, tmp_path / "exchange" / "exchange.sqlite3", env)
    stem = tmp_path / "result"
    report = run_report([str(HERE / "render_check.py"), str(extension_zip), str(two),
                         exchange_with_sellers, str(stem), "4", "0"], env)
    assert report["result"] == ["FINISHED"], report
    assert report["done"] == 4 and report["failed"] == 0  # 4 units, not 4 per layer
    got, ref = exr.read(stem.with_suffix(".exr")), exr.read(tmp_path / "ref" / "two.exr")
    for layer in ("ViewLayer", "Override"):
        a = got.part(f"{layer}.Combined").pixels
        assert np.abs(a - ref.part(f"{layer}.Combined").pixels).max() == 0.0, layer
    assert np.abs(got.part("ViewLayer.Combined").pixels
                  - got.part("Override.Combined").pixels).max() > 0.05  # they differ
