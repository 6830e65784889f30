"""Resource limits of a sandboxed worker, hit by real scenes (real bpy, real rlimits)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from bitwrk.render.errors import WorkerCrashed
from bitwrk.render.jobspec import JobSpec
from bitwrk.seller.pool import WorkerPool
from tests.blender.conftest import needs_bpy, run_bpy

pytestmark = [needs_bpy, pytest.mark.slow]
HERE = Path(__file__).resolve().parent
SPEC = JobSpec(blend="scene.blend", scene="Shot", view_layers=("ViewLayer",), frame=1,
               width=32, height=24, x0=0, x1=32, y0=0, y1=24, samples=1, seed=0,
               max_bounces=1)


@pytest.fixture(scope="module")
def bombs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("bombs")
    run_bpy([str(HERE / "make_bombs.py"), str(base / "scenes")], base)
    return base / "scenes"


@pytest.mark.parametrize("bomb", ["memory", "subdiv"])
async def test_a_memory_bomb_dies_at_the_class_limit_and_the_pool_goes_on(
        bombs: Path, tmp_path: Path, bomb: str) -> None:
    job = bombs / bomb
    async with WorkerPool(slots=1, cost_class="512M", timeout=120) as pool:
        await pool.start()
        (before,) = pool.pids()
        started = time.perf_counter()
        with pytest.raises(WorkerCrashed, match="Malloc returns null"):
            await pool.render(job / "scene.blend", SPEC, tmp_path / "x.exr", root=job)
        assert time.perf_counter() - started < 60  # the limit, not the wall clock, ended it
        ok = await pool.render(bombs / "plain" / "scene.blend", SPEC, tmp_path / "ok.exr",
                               root=bombs / "plain")
    assert ok.pid != before and ok.out.is_file() and not (tmp_path / "x.exr").exists()


async def test_output_over_the_file_size_limit_kills_the_worker(bombs: Path,
                                                                tmp_path: Path) -> None:
    plain = bombs / "plain"
    async with WorkerPool(slots=1, cost_class="512M", output_limit=300) as pool:
        with pytest.raises(WorkerCrashed, match="killed by SIGXFSZ"):
            await pool.render(plain / "scene.blend", SPEC, tmp_path / "x.exr", root=plain)
    assert not (tmp_path / "x.exr").exists()


PATHSCAN = r"""
import json, sys
from pathlib import Path
import bpy
sys.path.insert(0, sys.argv[1])
from bitwrk.seller import pathscan
job, outside = Path(sys.argv[2]), sys.argv[3]
results = {}
kinds = ["GeometryNodeImport" + k for k in ("CSV", "OBJ", "PLY", "STL", "Text", "VDB")]
for kind in kinds:
    for case in ("inside", "relative", "outside", "dotdot", "linked", "plain_relative"):
        bpy.ops.wm.read_factory_settings(use_empty=True)
        bpy.ops.wm.save_as_mainfile(filepath=str(job / "scene.blend"))
        tree = bpy.data.node_groups.new("t", "GeometryNodeTree")
        node = tree.nodes.new(kind)
        path = node.inputs["Path"]
        if case == "inside":
            path.default_value = str(job / "data.txt")
        elif case == "relative":
            path.default_value = "//data.txt"
        elif case == "outside":
            path.default_value = outside
        elif case == "dotdot":
            path.default_value = "//../identity.wif"
        elif case == "plain_relative":
            path.default_value = "data.txt"
        else:
            text = tree.nodes.new("FunctionNodeInputString")
            text.string = str(job / "data.txt")
            tree.links.new(text.outputs[0], path)
        try:
            pathscan.check_evaluated_paths(bpy, job)
            results[f"{kind}:{case}"] = "ok"
        except pathscan.ComputedPathRefused as exc:
            results[f"{kind}:{case}"] = exc.data["problems"][0]
bpy.ops.wm.read_factory_settings(use_empty=True)
bpy.ops.wm.save_as_mainfile(filepath=str(job / "scene.blend"))
bpy.ops.mesh.primitive_cube_add()
mod = bpy.context.object.modifiers.new("gn", "NODES")
mod.bake_directory = outside
try:
    pathscan.check_evaluated_paths(bpy, job)
    results["bake"] = "ok"
except pathscan.ComputedPathRefused as exc:
    results["bake"] = exc.data["problems"][0]
print("RESULT " + json.dumps(results))
"""


def test_every_importer_path_must_be_a_constant_inside_the_job(tmp_path: Path) -> None:
    from bitwrk.seller.pool import PACKAGE_ROOT

    job = tmp_path / "job"
    job.mkdir()
    outside = str(tmp_path / "identity.wif")
    done = run_bpy(["-c", PATHSCAN, str(PACKAGE_ROOT), str(job), outside], tmp_path)
    line = next(ln for ln in done.stdout.splitlines() if ln.startswith("RESULT "))
    results = json.loads(line[len("RESULT "):])
    for kind in ("CSV", "OBJ", "PLY", "STL", "Text", "VDB"):
        key = f"GeometryNodeImport{kind}"
        assert results[f"{key}:inside"] == "ok" and results[f"{key}:relative"] == "ok"
        assert "outside the job" in results[f"{key}:outside"]
        assert "outside the job" in results[f"{key}:dotdot"]
        assert "outside the job" in results[f"{key}:plain_relative"]
        assert "computed at render time" in results[f"{key}:linked"]
    assert "cache" in results["bake"] and "outside the job" in results["bake"]
