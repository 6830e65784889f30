"""A buyer's scene against the seller's machine: real bpy workers in the real sandbox.

The scene (``make_attack.py``) reads ``identity.wif`` and ``secret.obj`` from a folder
outside the job through geometry-node importers whose paths are computed by string nodes.
Two walls stand in its way and each is tested alone: the evaluated-path check refuses the
scene, and the OS sandbox — with that check switched off in a test-only worker — shows the
scene nothing of the seller, so its image equals one rendered where the files do not exist.
A positive control (no sandbox, no check) proves the attack is real.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bitwrk.render import exr
from bitwrk.render.errors import RenderError
from bitwrk.render.jobspec import JobSpec
from bitwrk.seller import pool as pool_module
from bitwrk.seller.pool import WorkerPool
from tests.blender.conftest import needs_bpy, run_bpy

pytestmark = [needs_bpy, pytest.mark.slow]
HERE = Path(__file__).resolve().parent
SPEC = JobSpec(blend="scene.blend", scene="Shot", view_layers=("ViewLayer",), frame=1,
               width=64, height=48, x0=0, x1=64, y0=0, y1=48, samples=4, seed=0,
               max_bounces=2)
# The worker with the evaluated-path check removed: only the OS sandbox is left.
NO_CHECK_BOOT = ("import sys; sys.path.insert(0, sys.argv[1]); "
                 "import bitwrk.seller.pathscan as p; p.check_evaluated_paths = lambda *a: None; "
                 "from bitwrk.seller.worker import main; sys.exit(main(sys.argv[2:]))")


class NoCheckPool(WorkerPool):
    def argv(self, cpus: list[int]) -> list[str]:
        argv = super().argv(cpus)
        return [NO_CHECK_BOOT if a == pool_module.BOOT else a for a in argv]


@pytest.fixture(scope="module")
def attack(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(job folder, the seller's secret folder outside it)."""
    base = tmp_path_factory.mktemp("attack")
    secret = base / "seller-data"
    secret.mkdir()
    run_bpy([str(HERE / "make_attack.py"), str(base / "job"), str(secret)], base)
    return base / "job", secret


def place_secrets(secret: Path) -> None:
    (secret / "identity.wif").write_text("L1SECRETKEYWIF")
    (secret / "secret.obj").write_text("v -3 -3 0\nv 3 -3 0\nv 3 3 0\nv -3 3 0\nf 1 2 3 4\n")


def remove_secrets(secret: Path) -> None:
    for name in ("identity.wif", "secret.obj"):
        (secret / name).unlink(missing_ok=True)


def pixels(path: Path) -> Any:
    return exr.read(path).part("ViewLayer.Combined").pixels


async def render(pool: WorkerPool, job: Path, out: Path) -> Any:
    await pool.render(job / "scene.blend", SPEC, out, root=job)
    return pixels(out)


async def test_computed_paths_are_refused_before_rendering(attack: tuple[Path, Path],
                                                         tmp_path: Path) -> None:
    job, secret = attack
    place_secrets(secret)
    async with WorkerPool(slots=1, cost_class="512M") as pool:
        assert pool.sandbox.active  # on by default
        with pytest.raises(RenderError, match="computed or outside the job") as info:
            await pool.render(job / "scene.blend", SPEC, tmp_path / "x.exr", root=job)
    problems = " ".join(info.value.data["problems"])
    assert "Import Text.Path: path computed" in problems
    assert "Import OBJ.Path: path computed" in problems
    assert not (tmp_path / "x.exr").exists()


async def test_the_sandbox_alone_shows_the_scene_nothing_of_the_seller(
        attack: tuple[Path, Path], tmp_path: Path) -> None:
    job, secret = attack
    place_secrets(secret)
    async with NoCheckPool(slots=1, unsandboxed=True) as exposed:
        leaked = await render(exposed, job, tmp_path / "leaked.exr")
    async with NoCheckPool(slots=1) as sandboxed:
        assert sandboxed.sandbox.active
        confined = await render(sandboxed, job, tmp_path / "confined.exr")
    remove_secrets(secret)
    async with NoCheckPool(slots=1, unsandboxed=True) as clean:
        without = await render(clean, job, tmp_path / "without.exr")
    # Positive control: outside the sandbox the scene does draw the seller's files.
    changed = (np.abs(leaked - without).max(axis=2) > 0.1).mean()
    assert changed > 0.02, changed  # share of pixels the seller's files changed
    # In the sandbox it renders exactly what it renders where the files do not exist.
    assert np.array_equal(confined, without)


async def test_tile_metadata_names_nothing_of_the_seller(attack: tuple[Path, Path],
                                                         tmp_path: Path) -> None:
    import getpass
    import socket

    job, secret = attack
    remove_secrets(secret)
    async with NoCheckPool(slots=1) as pool:
        await render(pool, job, tmp_path / "t.exr")
    header = (tmp_path / "t.exr").read_bytes()[:20000]
    for private in (str(job), str(tmp_path), socket.gethostname(), "/tmp/", "bitwrk-worker"):
        assert private.encode() not in header, private
    attributes = {k: v for k, _t, v in exr.read(tmp_path / "t.exr").attributes}
    assert getpass.getuser().encode() not in repr(attributes).encode()
    assert not any(k == "File" or k.endswith(":File") for k in attributes), attributes
    shutil.rmtree(tmp_path, ignore_errors=True)
