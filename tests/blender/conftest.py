"""Fixtures for tests that run the real bpy module and Cycles.

The bundled scene is built once per session by ``tests/data/scenes/make_scene.py``;
local full-frame renders (the oracle) come from ``reference_render.py``, which uses no
bitwrk code. Every bpy process gets private Blender user and cache dirs, so nothing is
written under ``~``.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
HAVE_BPY = importlib.util.find_spec("bpy") is not None
# The Blender line of the bpy under test (the matrix runs this suite with several): jobs
# name it, and a worker refuses a job for another line.
BLENDER_LINE = ".".join(importlib.metadata.version("bpy").split(".")[:2]) if HAVE_BPY else "5.0"
needs_bpy = pytest.mark.skipif(not HAVE_BPY, reason="the bpy module is not installed")

# Variants of the local reference render: name -> (frame, denoise, adaptive)
REFERENCES = {"plain": (1, False, False), "denoised": (1, True, False),
              "frame3": (3, False, False), "adaptive": (1, False, True),
              "adaptive_denoised": (1, True, True)}


def bpy_env(base: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["BLENDER_USER_RESOURCES"] = str(base / "blender-user")
    env["XDG_CACHE_HOME"] = str(base / "cache")
    env["PYTHONPATH"] = str(ROOT)
    return env


def run_bpy(args: list[str], base: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, *args], env=bpy_env(base), cwd=ROOT,
                            capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result


@pytest.fixture(autouse=True)
def _private_blender_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BLENDER_USER_RESOURCES", str(tmp_path / "blender-user"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


@pytest.fixture(scope="session")
def scene_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled scene (+ evil.blend and leaky/leaky.blend) built into a temp dir."""
    if not HAVE_BPY:
        pytest.skip("the bpy module is not installed")
    base = tmp_path_factory.mktemp("scene")
    markers = base / "markers"
    markers.mkdir()
    run_bpy([str(ROOT / "tests/data/scenes/make_scene.py"), str(base / "job"),
             "--evil", str(markers)], base)
    return base / "job"


@pytest.fixture(scope="session")
def references(scene_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Local full-frame renders of the scene: ``NAME.exr`` and ``NAME.png`` per variant."""
    out = tmp_path_factory.mktemp("reference")
    variants = [f"{name}:{frame}:{int(dn)}:{int(ad)}"
                for name, (frame, dn, ad) in REFERENCES.items()]
    run_bpy([str(HERE / "reference_render.py"), str(scene_dir / "scene.blend"), str(out),
             *variants], out)
    return out


@pytest.fixture
def frame_spec() -> Callable[..., Any]:
    """A full-frame JobSpec of the bundled scene; keyword arguments override fields."""
    from bitwrk.render.jobspec import JobSpec

    def make(**changes: Any) -> JobSpec:
        fields: dict[str, Any] = dict(
            blend="scene.blend", scene="Shot", view_layers=("ViewLayer",), frame=1,
            width=96, height=64, x0=0, x1=96, y0=0, y1=64, samples=16, seed=0,
            max_bounces=6, blender=BLENDER_LINE)
        fields.update(changes)
        return JobSpec(**fields)

    return make


@pytest.fixture
def compose(tmp_path: Path) -> Iterator[Callable[..., dict[str, Any]]]:
    """Run ``python -m bitwrk.render.compose`` on a request; returns its JSON answer."""
    import json

    from bitwrk.render.compose import ComposeRequest

    def run(request: ComposeRequest) -> dict[str, Any]:
        path = tmp_path / "compose-request.json"
        path.write_text(json.dumps(request.to_json()))
        result = run_bpy(["-m", "bitwrk.render.compose", str(path)], tmp_path)
        answer: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
        return answer

    yield run
