"""A pack that fails half-way leaves no thread behind (issue 19: a ``bitwrk.buy`` stayed
alive for minutes after its main thread was done, because blender-asset-tracer's copy
thread, aborted by BAT only on Ctrl-C, kept polling its queue)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from blender_asset_tracer.pack import filesystem

from bitwrk.render import packing
from tests.blender.conftest import needs_bpy

pytestmark = needs_bpy


def _copy_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate()
            if isinstance(t, filesystem.FileCopier) and t.is_alive()]


def test_a_failure_while_copying_ends_the_copy_thread(
    scene_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[bool] = []
    original = packing._Packer._copy_asset_and_deps

    def fail_after_the_first(self: Any, *args: Any) -> None:
        if started:
            raise RuntimeError("disk on fire")
        started.append(self.copier is not None and self.copier.is_alive())
        original(self, *args)

    monkeypatch.setattr(packing._Packer, "_copy_asset_and_deps", fail_after_the_first)
    assert not _copy_threads()
    with pytest.raises(RuntimeError, match="disk on fire"):
        packing.pack(scene_dir / "scene.blend", tmp_path / "pack")
    assert started == [True]  # the copy thread was running when the failure came
    assert not _copy_threads()


def test_a_good_pack_leaves_no_thread_either(scene_dir: Path, tmp_path: Path) -> None:
    result = packing.pack(scene_dir / "scene.blend", tmp_path / "pack")
    assert result.files and not _copy_threads()
