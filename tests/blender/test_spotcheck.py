"""The buyer's content check with real Cycles renders: patches rendered alone equal the
frame's pixels, lazy results are caught in >= 99 % of checks, honest noise of another CPU
kernel is not, and the checker disputes with evidence and blocks the seller."""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bitwrk.cas import ChunkStore, JobManifest
from bitwrk.daemon.jobdirs import JobDirs
from bitwrk.daemon.spotcheck import SellerRecords, SpotChecker, dispute_fields
from bitwrk.render import exr, verify
from bitwrk.render.errors import ResultRejected, SpotCheckFailed
from bitwrk.render.tiling import Rect, tiles
from bitwrk.seller.pool import WorkerPool
from tests.blender.cheats import lazy_result
from tests.blender.conftest import needs_bpy, run_bpy
from tests.blender.test_render_exact import ADAPTIVE_COPY, combined

pytestmark = needs_bpy
TRIALS = 300  # random patch sets per unit and kind of result
LAZY = ("black", "other_tile", "fewer_samples", "most_samples", "lower_res", "wrong_frame")

# Cycles' SSE4.2 kernel (what a CPU without AVX2 runs) and the BVH2 instead of Embree:
# honest renders that differ from ours by float rounding. The debug switches take effect
# only with Cycles' debug preferences on.
OTHER_KERNEL = """
import sys
from pathlib import Path
import bpy
from bitwrk.render.jobspec import JobSpec
from bitwrk.render.scene import open_safely, find_scene
from bitwrk.seller import tile
open_safely(Path(sys.argv[1]))
prefs = bpy.context.preferences
prefs.experimental.use_cycles_debug = True
prefs.view.show_developer_ui = True
cy = find_scene(bpy, "Shot").cycles
cy.debug_use_cpu_avx2 = False
cy.debug_bvh_layout = "BVH2"
tile.render(bpy, JobSpec.from_json(sys.argv[3]), Path(sys.argv[2]), 1)
"""


def seller_crop(image: exr.MultiLayer, unit: Rect, patch: Rect) -> exr.MultiLayer:
    return image.crop(Rect(patch.x0 - unit.x0, patch.x1 - unit.x0, patch.y0 - unit.y0,
                           patch.y1 - unit.y0))


def detection(image: exr.MultiLayer, unit: Rect, reference: exr.MultiLayer) -> float:
    """Share of random checks (fresh secret patches each) that refuse ``image``."""
    caught = 0
    for _ in range(TRIALS):
        patches = verify.pick_patches(unit)
        diffs = [verify.compare(seller_crop(image, unit, p), reference.crop(p), p)
                 for p in patches]
        caught += verify.failed(diffs)
    return caught / TRIALS


def read_bytes(data: bytes, tmp: Path) -> exr.MultiLayer:
    path = tmp / "result.exr"
    path.write_bytes(data)
    return exr.read(path)


@pytest.fixture
async def pool() -> AsyncIterator[WorkerPool]:
    async with WorkerPool(slots=1) as p:
        yield p


async def test_a_patch_rendered_alone_equals_those_pixels_of_the_frame(
        scene_dir: Path, references: Path, tmp_path: Path, frame_spec: Any,
        pool: WorkerPool) -> None:
    adaptive = tmp_path / "job" / "scene.blend"
    adaptive.parent.mkdir()
    shutil.copytree(scene_dir / "textures", adaptive.parent / "textures")
    run_bpy(["-c", ADAPTIVE_COPY, str(scene_dir / "scene.blend"), str(adaptive)], tmp_path)
    cases = [(scene_dir / "scene.blend", frame_spec(), "plain"),
             (adaptive, frame_spec(samples=256, overscan=8), "adaptive")]
    for blend, spec, name in cases:
        reference = combined(references / f"{name}.exr")
        for i, patch in enumerate(verify.pick_patches(spec.rect, count=6)):
            out = tmp_path / f"{name}-{i}.exr"
            await pool.render(blend, spec.with_rect(patch), out)
            got = exr.read(out).part("ViewLayer.Combined").pixels
            want = reference[patch.y0:patch.y1, patch.x0:patch.x1]
            assert np.array_equal(got, want), (name, patch, np.abs(got - want).max())


async def test_lazy_results_are_caught_in_99_percent_of_checks_honest_ones_never(
        scene_dir: Path, tmp_path: Path, frame_spec: Any, pool: WorkerPool) -> None:
    blend = scene_dir / "scene.blend"
    full = frame_spec()
    await pool.render(blend, full, tmp_path / "frame.exr")
    reference = exr.read(tmp_path / "frame.exr")
    rates: dict[tuple[str, Rect], float] = {}
    for unit in tiles(96, 64, 4):
        spec = full.with_rect(unit)
        await pool.render(blend, spec, tmp_path / "honest.exr")
        assert detection(exr.read(tmp_path / "honest.exr"), unit, reference) == 0.0
        for mode in LAZY:
            image = read_bytes(await lazy_result(mode, pool, blend, spec), tmp_path)
            rates[(mode, unit)] = detection(image, unit, reference)
    missed = {k: v for k, v in rates.items() if v < 0.99}
    assert not missed, missed


@pytest.mark.parametrize("variant", ["plain", "adaptive_denoised"])
async def test_honest_noise_of_another_cpu_kernel_passes(
        scene_dir: Path, tmp_path: Path, frame_spec: Any, pool: WorkerPool,
        variant: str) -> None:
    blend, full = scene_dir / "scene.blend", frame_spec()
    if variant == "adaptive_denoised":  # convergence decisions and the denoising passes too
        blend = tmp_path / "job" / "scene.blend"
        blend.parent.mkdir()
        shutil.copytree(scene_dir / "textures", blend.parent / "textures")
        run_bpy(["-c", ADAPTIVE_COPY, str(scene_dir / "scene.blend"), str(blend)], tmp_path)
        full = frame_spec(samples=256, overscan=8, denoise=True)
    await pool.render(blend, full, tmp_path / "frame.exr")
    reference = exr.read(tmp_path / "frame.exr")
    other = tmp_path / "other-kernel.exr"
    run_bpy(["-c", OTHER_KERNEL, str(blend), str(other), full.dumps()], tmp_path)
    image = exr.read(other)
    ours, theirs = (i.part("ViewLayer.Combined").pixels for i in (reference, image))
    assert not np.array_equal(ours, theirs)  # the kernels really differ ...
    assert np.abs(theirs - ours).max() <= verify.RTOL * np.abs(ours).max()  # ... by rounding
    assert verify.compare(image, reference, full.rect).outliers == 0
    for unit in tiles(96, 64, 4):
        assert detection(image.crop(unit), unit, reference) == 0.0


async def test_the_checker_disputes_with_evidence_and_blocks_the_seller(
        scene_dir: Path, tmp_path: Path, frame_spec: Any, pool: WorkerPool) -> None:
    store = ChunkStore(tmp_path / "store")
    files = {"scene.blend": scene_dir / "scene.blend",
             "textures/checker.png": scene_dir / "textures" / "checker.png"}
    units = {f"u{i}": frame_spec().with_rect(r) for i, r in enumerate(tiles(96, 64, 4))}
    manifests = {uid: JobManifest.from_files(s.to_json(), files, store)
                 for uid, s in units.items()}
    records = SellerRecords(tmp_path / "sellers.sqlite3")
    checker = SpotChecker(store, manifests, records, 0.0, pool, JobDirs(tmp_path / "dirs"),
                          tmp_path / "evidence")
    blend = scene_dir / "scene.blend"

    honest = await lazy_result("honest", pool, blend, units["u0"])
    first = await checker.check("u0", "alice", 1, "e1" * 32, honest)
    assert first.content_checked and all(d.exact for d in first.diffs)
    assert records.passed("alice") == 1
    honest = await lazy_result("honest", pool, blend, units["u1"])
    later = await checker.check("u1", "alice", 2, "e2" * 32, honest)
    assert not later.content_checked  # rate 0: a seller that passed is trusted after

    black = await lazy_result("black", pool, blend, units["u2"])
    with pytest.raises(SpotCheckFailed) as failed:
        await checker.check("u2", "mallory", 3, "e3" * 32, black)
    fields = dispute_fields(failed.value, "e3" * 32)
    evidence = json.loads(fields["evidence"])
    assert len(fields["evidence"]) <= verify.MAX_EVIDENCE and "spot check" in fields["reason"]
    assert evidence["resulthash"] == verify.result_hash(black)
    assert evidence["encresulthash"] == "e3" * 32
    blocks = [p for p in evidence["patches"] if "seller" in p]
    assert len(evidence["patches"]) == verify.PATCHES and blocks
    x0, x1, y0, y1 = blocks[0]["rect"]
    w, h = x1 - x0, y1 - y0
    assert not verify.decode_block(blocks[0]["seller"], w, h, 4).any()  # the black pixels
    ours = verify.decode_block(blocks[0]["buyer"], w, h, 4)
    frame = tmp_path / "frame.exr"
    await pool.render(blend, frame_spec(), frame)
    truth = combined(frame)[y0:y1, x0:x1][..., [3, 2, 1, 0]]  # channels by name: A B G R
    assert np.array_equal(ours, truth)
    assert records.blocked() == {"mallory"}
    kept = json.loads((tmp_path / "evidence" / "tx3" / "evidence.json").read_text())
    assert len(kept["patches"]) == verify.PATCHES
    assert (tmp_path / "evidence" / "tx3" / "result.bin").read_bytes() == black

    for mode in ("junk", "bomb", "wrong_size"):
        bad = await lazy_result(mode, pool, blend, units["u3"])
        with pytest.raises(ResultRejected) as refused:
            await checker.check("u3", f"eve-{mode}", 4, "e4" * 32, bad)
        evidence = json.loads(dispute_fields(refused.value, "e4" * 32)["evidence"])
        assert evidence["resulthash"] == verify.result_hash(bad)
        assert f"eve-{mode}" in records.blocked()

    # The buyer's own Blender cannot render the patches (here: the spec names another
    # version): not the seller's fault, so the result passes on the caps alone.
    other = dataclasses.replace(units["u0"], blender="4.9")
    odd = {"u0": JobManifest.from_files(other.to_json(), files, store)}
    lenient = SpotChecker(store, odd, records, 1.0, pool, JobDirs(tmp_path / "dirs2"),
                          tmp_path / "evidence")
    honest = await lazy_result("honest", pool, blend, units["u0"])
    outcome = await lenient.check("u0", "bob", 5, "e5" * 32, honest)
    assert not outcome.content_checked and "buyer's render failed" in outcome.note
    assert "bob" not in records.blocked()
    records.close()
    store.close()
