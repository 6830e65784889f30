"""A main thread that is slow after handing a file to the copy thread still packs.

About one ``bitwrk.buy`` in twenty on a loaded machine failed before trading with
``cannot pack scene.blend: [Errno 2] No such file or directory: .../bat-...-scene.blend``.
blender-asset-tracer 1.23 queued the move of a rewritten .blend (from its temp dir into
the pack) and only then read the file's size; when the main thread lost the CPU between
the two, the copy thread had moved the file away already. Here the main thread waits
after every hand-over until the copy thread is done with that file: the widest that
window can get, so the outcome does not depend on the scheduler.
"""

from __future__ import annotations

import queue
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from blender_asset_tracer.pack import filesystem, transfer

from bitwrk.render import packing
from tests.blender.conftest import needs_bpy

pytestmark = needs_bpy

HANDOVER_WAIT = 30.0  # seconds; the copy thread needs milliseconds per file


class _SlowHandover(queue.PriorityQueue[transfer.QueueItem]):
    """A copier's queue whose ``put`` from the packing thread returns only after the
    copy thread has transferred that file, as if the packing thread were preempted."""

    def __init__(self, copier: filesystem.FileCopier, log: list[tuple[str, bool]]) -> None:
        super().__init__(maxsize=100)
        self.copier = copier
        self.packing_thread = threading.get_ident()
        self.log = log

    def _finished(self) -> int:
        return self.copier.files_transferred + self.copier.files_skipped

    def put(self, item: transfer.QueueItem, block: bool = True,
            timeout: float | None = None) -> None:
        before = self._finished()
        super().put(item, block, timeout)
        if threading.get_ident() != self.packing_thread:
            return  # the copy thread re-queueing a failed file
        until = time.monotonic() + HANDOVER_WAIT
        while (self._finished() == before and not self.copier.has_error
               and time.monotonic() < until):
            time.sleep(0.001)
        self.log.append((item[2].name, self._finished() > before))


def test_a_rewritten_blend_moved_before_the_packer_looks_again_is_packed(
    scene_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    handovers: list[tuple[str, bool]] = []
    original = packing._Packer._create_file_transferer

    def slow_handover(self: Any) -> filesystem.FileCopier:
        copier = original(self)
        copier.queue = _SlowHandover(copier, handovers)
        return copier

    monkeypatch.setattr(packing._Packer, "_create_file_transferer", slow_handover)
    result = packing.pack(scene_dir / "scene.blend", tmp_path / "pack")

    # the window was really hit: every file, the moved .blend files among them, was
    # transferred before the packing thread went on
    assert ("MOVE", True) in handovers
    assert handovers and all(done for _, done in handovers), handovers
    assert len(handovers) == len(result.files)
    assert result.blend == "scene.blend" and not result.missing
    for name, path in result.files.items():
        assert path.is_file() and path.stat().st_size > 0, name
    assert result.total_bytes == sum(p.stat().st_size for p in result.files.values())
    # BAT's temp dir held the rewritten files only until they were moved
    assert not list(tmp_path.glob("pack/**/bat-*"))
