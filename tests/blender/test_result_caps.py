"""A seller's EXR is decoded only within hard caps: the unit's size, a few half/float
channels per pass, lossless codecs, and no more bytes than such pixels take. Files are
made with the OpenImageIO inside bpy; the decoder is run in its own process to measure
what a hostile file costs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bitwrk.render import exr, exrheader
from bitwrk.render.errors import ResultRejected
from bitwrk.render.jobspec import JobSpec
from bitwrk.render.verify import check_passes
from tests.blender.cheats import bomb
from tests.blender.conftest import ROOT, needs_bpy

pytestmark = needs_bpy
W, H = 48, 32


def write(path: Path, parts: dict[str, int], width: int = W, height: int = H,
          compression: str = "zip", pixel: str = "float", tiled: bool = False) -> bytes:
    """A multi-part EXR with ``{pass name: channel count}`` (Blender's channel naming)."""
    io = exr.oiio()
    specs = []
    for name, count in parts.items():
        spec = io.ImageSpec(width, height, count, pixel)
        spec.channelnames = tuple(f"{name}.{c}" for c in "RGBAXYZW"[:count])
        spec.attribute("compression", compression)
        spec.attribute("oiio:subimagename", name)
        if tiled:
            spec.tile_width = spec.tile_height = 16
        specs.append(spec)
    out = io.ImageOutput.create(str(path))
    assert out.open(str(path), specs)
    for i, spec in enumerate(specs):
        if i:
            assert out.open(str(path), spec, "AppendSubimage")
        pixels = np.random.default_rng(i).random((height, width, spec.nchannels))
        assert out.write_image(pixels.astype(np.float32))
    out.close()
    return path.read_bytes()


def spec_for(**changes: Any) -> JobSpec:
    fields: dict[str, Any] = dict(blend="scene.blend", scene="Shot", view_layers=("ViewLayer",),
                                  frame=1, width=96, height=64, x0=0, x1=W, y0=0, y1=H,
                                  samples=16, seed=0, max_bounces=6)
    return JobSpec(**{**fields, **changes})


def test_an_honest_layout_is_read(tmp_path: Path) -> None:
    path = tmp_path / "ok.exr"
    write(path, {"ViewLayer.Combined": 4, "ViewLayer.Denoising Normal": 3,
                 "ViewLayer.Denoising Albedo": 3, "ViewLayer.Denoising Depth": 1})
    image = exr.read_capped(path, W, H)
    assert (image.width, image.height, len(image.parts)) == (W, H, 4)
    check_passes(image, spec_for(denoise=True))
    write(path, {"ViewLayer.Combined": 4}, pixel="half", compression="piz")
    check_passes(exr.read_capped(path, W, H), spec_for())


@pytest.mark.parametrize(("case", "match"), [
    ("junk", "EXR"),
    ("not_exr", "not an OpenEXR"),
    ("wrong_size", "is 47x32, the unit is 48x32"),
    ("too_big", "is 4096x4096"),
    ("lossy", "lossless only"),
    ("tiled", "tiled"),
    ("five_channels", "more than 4 channels"),
    ("trailing_bytes", "its pixels take at most"),
    ("too_many_parts", "more than 64 parts"),
])
def test_hostile_files_are_refused_from_their_headers(tmp_path: Path, case: str,
                                                      match: str) -> None:
    path = tmp_path / f"{case}.exr"
    combined = {"ViewLayer.Combined": 4}
    if case == "junk":
        path.write_bytes(exrheader.MAGIC + np.random.default_rng(1).bytes(5000))
    elif case == "not_exr":
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    elif case == "wrong_size":
        write(path, combined, width=W - 1)
    elif case == "too_big":
        path.write_bytes(bomb(4096))
    elif case == "lossy":
        write(path, combined, compression="dwaa")
    elif case == "tiled":
        write(path, combined, tiled=True)
    elif case == "five_channels":
        write(path, {"ViewLayer.Combined": 5})
    elif case == "trailing_bytes":
        path.write_bytes(write(path, combined) + bytes(W * H * 16 + 100_000))
    elif case == "too_many_parts":
        write(path, {f"ViewLayer.P{i}": 1 for i in range(65)})
    with pytest.raises(ResultRejected, match=match):
        exr.read_capped(path, W, H)


@pytest.mark.parametrize(("parts", "spec", "match"), [
    ({"ViewLayer.Noisy": 4}, {}, "lacks passes"),
    ({"ViewLayer.Combined": 4, "Other.Combined": 4}, {}, "no requested view layer"),
    ({"ViewLayer.Combined": 4}, {"denoise": True}, "Denoising"),
    ({"ViewLayer.Combined": 3}, {}, "not RGBA"),
])
def test_results_without_the_passes_the_buyer_needs_are_refused(
        tmp_path: Path, parts: dict[str, int], spec: dict[str, Any], match: str) -> None:
    path = tmp_path / "passes.exr"
    write(path, parts)
    with pytest.raises(ResultRejected, match=match):
        check_passes(exr.read_capped(path, W, H), spec_for(**spec))


PEAK = """
import json, resource, sys
from pathlib import Path
from bitwrk.render import exr
from bitwrk.render.errors import ResultRejected
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    exr.read_capped(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))
    refused = False
except ResultRejected:
    refused = True
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"refused": refused, "grew_kib": after - before}))
"""


def test_a_decompression_bomb_costs_the_reader_nothing(tmp_path: Path) -> None:
    # 16384 x 16384 RGBA: 4 GiB as float once decoded, ~9 KB on disk.
    path = tmp_path / "bomb.exr"
    path.write_bytes(bomb())
    assert path.stat().st_size < 100_000
    done = subprocess.run([sys.executable, "-c", PEAK, str(path), str(W), str(H)],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer["refused"] and answer["grew_kib"] < 16 * 1024, answer
