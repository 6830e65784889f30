""""Render animation on BitWrk", headless, through a real exchange and two sellers: every
frame of the range is bought in one job, and each frame lands where Blender's own Render
Animation writes it (``frame_path``), in the scene's format, equal to a local render
pixel for pixel."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bitwrk.render import exr
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
FIRST, LAST = 1, 3
# name -> (format, tiles per frame (0: by the cost class), denoise)
VARIANTS = {"png": ("PNG", 2, True), "exr": ("OPEN_EXR", 0, False)}
SUFFIX = {"PNG": ".png", "OPEN_EXR": ".exr"}


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The bundled scene and Blender's own Render Animation of frames 1-3 per variant."""
    base = tmp_path_factory.mktemp("anim-scene")
    env = scratch_env(base)
    (base / "markers").mkdir()
    bpy_run([str(ROOT / "tests/data/scenes/make_scene.py"), str(base / "job"),
             "--evil", str(base / "markers")], env)
    bpy_run([str(HERE / "animation_reference.py"), str(base / "job/scene.blend"),
             str(base / "ref"), str(FIRST), str(LAST),
             *(f"{n}:{f}:{int(d)}" for n, (f, _t, d) in VARIANTS.items())], env)
    return {"blend": base / "job/scene.blend", "ref": base / "ref"}


def pixels(path: Path) -> Any:
    """Decoded pixels as stored (uint8 PNG, float EXR), channels in file order."""
    io = exr.oiio()
    inp = io.ImageInput.open(str(path))
    assert inp is not None, path
    spec = inp.spec()
    fmt = "uint8" if path.suffix == ".png" else "float"
    data = np.asarray(inp.read_image(0, 0, 0, spec.nchannels, fmt))
    names = list(spec.channelnames)
    inp.close()
    return names, data


def test_render_animation_on_bitwrk_writes_every_frame_like_blender(
        extension_zip: Path, scene: dict[str, Path], exchange_with_sellers: str,
        tmp_path: Path) -> None:
    db = tmp_path / "exchange" / "exchange.sqlite3"
    buyer = tmp_path / "buyer"
    env = scratch_env(buyer)
    fund_buyer(exchange_with_sellers, db, env)
    out = tmp_path / "out"
    report = run_report([str(HERE / "animation_check.py"), str(extension_zip),
                         str(scene["blend"]), exchange_with_sellers, str(out), str(FIRST),
                         str(LAST), *(f"{n}:{f}:{t}:{int(d)}"
                                      for n, (f, t, d) in VARIANTS.items())], env)
    assert report["stopped"]
    frames = list(range(FIRST, LAST + 1))
    for name, (file_format, tiles, _denoise) in VARIANTS.items():
        run = report[name]
        assert run["result"] == ["FINISHED"], run
        units = len(frames) * max(1, tiles)  # one job: every frame's tiles at once
        assert (run["total"], run["done"], run["failed"]) == (units, units, 0), run
        assert (run["frames"], run["frames_written"]) == (len(frames), len(frames)), run
        assert run["spent"] > 0 and run["finished"] and run["stage"] == "done", run
        names = [f"shot_{f:04d}{SUFFIX[file_format]}" for f in frames]
        # Blender's frame naming: what frame_path said, and what Render Animation wrote.
        assert [Path(run["expected"][str(f)]) for f in frames] == [out / name / n
                                                                   for n in names]
        assert sorted(p.name for p in (out / name).iterdir()) == names
        assert sorted(p.name for p in (scene["ref"] / name).iterdir()) == names
        for n in names:
            got_channels, got = pixels(out / name / n)
            ref_channels, ref = pixels(scene["ref"] / name / n)
            assert got_channels == ref_channels and got.shape == ref.shape, n
            assert np.array_equal(got, ref), f"{name}/{n}: max diff {np.abs(got - ref).max()}"
        # The scene moves: each file holds its own frame, not one frame written three times.
        first, last = (pixels(out / name / names[i])[1] for i in (0, -1))
        assert not np.array_equal(first, last)


def test_render_animation_with_a_render_region_writes_the_region_like_blender(
        extension_zip: Path, scene: dict[str, Path], exchange_with_sellers: str,
        tmp_path: Path) -> None:
    """Ctrl+B, then Render Animation on BitWrk: each frame's region alone is bought, and
    the files (cropped to the region here) equal Blender's own Render Animation."""
    db = tmp_path / "exchange" / "exchange.sqlite3"
    env = scratch_env(tmp_path / "buyer")
    fund_buyer(exchange_with_sellers, db, env)
    blend = scene["blend"].parent / "region.blend"
    bpy_run(["-c", REGION, str(scene["blend"]), str(blend), "crop"], env)
    ref = tmp_path / "ref"
    bpy_run([str(HERE / "animation_reference.py"), str(blend), str(ref), str(FIRST),
             str(LAST), "region:PNG:1"], env)
    out = tmp_path / "out"
    report = run_report([str(HERE / "animation_check.py"), str(extension_zip), str(blend),
                         exchange_with_sellers, str(out), str(FIRST), str(LAST),
                         "region:PNG:2:1"], env)
    run = report["region"]
    assert run["result"] == ["FINISHED"], run
    units = 2 * (LAST - FIRST + 1)
    assert (run["total"], run["done"], run["failed"]) == (units, units, 0), run
    names = [f"shot_{f:04d}.png" for f in range(FIRST, LAST + 1)]
    assert sorted(p.name for p in (out / "region").iterdir()) == names
    for n in names:
        got_channels, got = pixels(out / "region" / n)
        want_channels, want = pixels(ref / "region" / n)
        assert got_channels == want_channels, n
        assert got.shape == want.shape == (39, 50, 4), n  # the region of a 96x64 frame
        assert np.array_equal(got, want), f"{n}: max diff {np.abs(got - want).max()}"


def test_cancel_stops_buying_and_keeps_the_frames_already_paid_for(
        extension_zip: Path, scene: dict[str, Path], exchange_with_sellers: str,
        tmp_path: Path) -> None:
    db = tmp_path / "exchange" / "exchange.sqlite3"
    env = scratch_env(tmp_path / "buyer")
    fund_buyer(exchange_with_sellers, db, env)
    out = tmp_path / "out"
    report = run_report([str(HERE / "animation_check.py"), str(extension_zip),
                         str(scene["blend"]), exchange_with_sellers, str(out), "1", "4",
                         "cut:PNG:4:0:cancel"], env)
    run = report["cut"]
    assert run["result"] == ["CANCELLED"] and run["stage"] == "cancelled", run
    assert run["finished"] and 1 <= run["done"] < run["total"] == 16, run
    assert run["spent"] > 0 and report["stopped"]
    # Frames whose tiles all landed before the cancel are written, nothing else.
    assert len(run["files"]) == run["frames_written"] <= run["done"] // 4
