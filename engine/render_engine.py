"""The "BitWrk" render engine: F12 buys the frame's tiles and draws them as they land.

``render()`` runs where Blender runs engines: the main thread in ``bpy`` module mode and
``blender -b``, a render job thread in the GUI. Either way it blocks on the bridge's queue
(which releases the GIL, so the daemon thread keeps trading) and only touches bpy itself.
``test_break()`` is always False in module mode, so :data:`CANCEL` is checked beside it.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

import bpy

from ..bitwrk.errors import BitwrkError
from ..bitwrk.render import compose, exr
from ..bitwrk.render.jobspec import JobSpec
from ..bitwrk.render.tiling import Rect
from . import bridge, session, snapshot

ENGINE_ID = "BITWRK"
CANCEL = threading.Event()  # set by the cancel operator (and by tests)
PLACEHOLDER = (0.05, 0.05, 0.05, 1.0)  # a tile still in flight
# Every write into the render result: (unit id or "frame", x0, y0, w, h, "tile"|"placeholder"|
# "denoised"). Tests read it to see tiles land one by one.
RESULT_LOG: list[tuple[str, int, int, int, int, str]] = []
DENOISING = (("Denoising Normal", 3, "XYZ", "VECTOR"), ("Denoising Albedo", 3, "RGB", "COLOR"),
             ("Denoising Depth", 1, "Z", "VALUE"))


def _stores_denoising(scene: Any, layer: Any) -> bool:
    return bool(scene.cycles.use_denoising and layer.cycles.denoising_store_passes)


class BitwrkRenderEngine(bpy.types.RenderEngine):  # type: ignore[misc]
    bl_idname = ENGINE_ID
    bl_label = "BitWrk"
    bl_use_postprocess = True  # the scene's compositor runs, as after a local render
    bl_use_preview = False
    bl_use_eevee_viewport = True

    def update_render_passes(self, scene: Any = None, renderlayer: Any = None) -> None:
        self.register_pass(scene, renderlayer, "Combined", 4, "RGBA", "COLOR")
        if _stores_denoising(scene, renderlayer):
            for name, n, chans, kind in DENOISING:
                self.register_pass(scene, renderlayer, name, n, chans, kind)

    def render(self, depsgraph: Any) -> None:
        scene = depsgraph.scene
        CANCEL.clear()
        workdir = Path(tempfile.mkdtemp(prefix="bitwrk-render-"))
        try:
            self._render(scene, workdir)
        except BitwrkError as exc:
            self.report({"ERROR"}, f"BitWrk: {exc}")
            if hasattr(self, "error_set"):
                self.error_set(f"BitWrk: {exc}")
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    def _render(self, scene: Any, workdir: Path) -> None:
        request = snapshot.take(bpy, scene, workdir)
        if any(_stores_denoising(scene, vl) for vl in scene.view_layers):
            for name, n, chans, _kind in DENOISING:
                self.add_pass(name, n, chans)
        job = session.RenderJob(bridge.get(), request, workdir)
        self.update_stats("", "BitWrk: packing and placing bids")
        job.start()
        landed: dict[str, tuple[Path, JobSpec]] = {}
        for tile in job.tiles(lambda: bool(self.test_break() or CANCEL.is_set())):
            if tile.path is None:
                if tile.unit_id not in landed:
                    self._placeholder(tile.unit_id, tile.spec.rect)
                continue
            landed[tile.unit_id] = (tile.path, tile.spec)
            self._write_tile(tile.unit_id, tile.path, tile.spec.rect)
            self.update_progress(len(landed) / job.total)
            self.update_stats("", f"BitWrk: {len(landed)}/{job.total} tiles,"
                                  f" spent {bridge.get().status.progress.spent} sat")
        if job.cancelled:
            raise BitwrkError(f"cancelled; {len(landed)} of {job.total} tiles landed")
        if job.failed or len(landed) != job.total:
            raise BitwrkError("units could not be bought: " + "; ".join(job.failed))
        frame_spec = next(iter(landed.values()))[1]
        if frame_spec.denoise:
            self._write_denoised(scene, list(landed.values()), frame_spec)
        self.update_stats("", f"BitWrk: done, spent {job.spent} sat")

    def _fill(self, rect: Rect, passes: Any) -> None:
        """Write one rect of the result: ``passes(layer, pass_name)`` gives pixels or None."""
        result = self.begin_result(rect.x0, rect.y0, rect.width, rect.height)
        for layer in result.layers:
            for render_pass in layer.passes:
                pixels = passes(layer.name, render_pass.name)
                if pixels is not None:
                    render_pass.rect.foreach_set(pixels)
        self.end_result(result)

    def _write_tile(self, unit_id: str, path: Path, rect: Rect) -> None:
        tile = exr.read(path)

        def passes(layer: str, name: str) -> Any:
            key = f"{layer}.{name}"
            return tile.part(key).pixels.ravel() if tile.has(key) else None

        self._fill(rect, passes)
        RESULT_LOG.append((unit_id, rect.x0, rect.y0, rect.width, rect.height, "tile"))

    def _placeholder(self, unit_id: str, rect: Rect) -> None:
        import numpy as np

        grey = np.tile(np.asarray(PLACEHOLDER, dtype=np.float32), rect.width * rect.height)
        self._fill(rect, lambda layer, name: grey if name == "Combined" else None)
        RESULT_LOG.append((unit_id, rect.x0, rect.y0, rect.width, rect.height, "placeholder"))

    def _write_denoised(self, scene: Any, tiles: list[tuple[Path, JobSpec]],
                        spec: JobSpec) -> None:
        """Stitch the noisy tiles and denoise the whole frame once (docs/architecture.md)."""
        whole = spec.with_rect(Rect(0, spec.width, 0, spec.height))
        frame = exr.stitch([(p, s.rect) for p, s in tiles], spec.width, spec.height)
        keep = all(_stores_denoising(scene, vl) for vl in scene.view_layers
                   if vl.name in spec.view_layers)
        compose.denoise_frame(frame, whole, compose.denoise_settings(scene), keep)

        def passes(layer: str, name: str) -> Any:
            key = f"{layer}.{name}"
            return frame.part(key).pixels.ravel() if frame.has(key) else None

        self._fill(whole.rect, passes)
        RESULT_LOG.append(("frame", 0, 0, spec.width, spec.height, "denoised"))


def compatible_panels() -> list[Any]:
    """Cycles' panels that should also show for BitWrk (its settings are Cycles')."""
    found, todo = [], list(bpy.types.Panel.__subclasses__())
    while todo:
        panel = todo.pop()
        todo.extend(panel.__subclasses__())
        engines = getattr(panel, "COMPAT_ENGINES", None)
        if isinstance(engines, set) and "CYCLES" in engines:
            found.append(panel)
    return found


def register() -> None:
    bpy.utils.register_class(BitwrkRenderEngine)
    for panel in compatible_panels():
        panel.COMPAT_ENGINES.add(ENGINE_ID)


def unregister() -> None:
    CANCEL.set()
    for panel in compatible_panels():
        panel.COMPAT_ENGINES.discard(ENGINE_ID)
    bpy.utils.unregister_class(BitwrkRenderEngine)
