"""The "BitWrk" render engine: F12 buys the frame's tiles and draws them as they land.

``render()`` runs where Blender runs engines: the main thread in ``bpy`` module mode and
``blender -b``, a render job thread in the GUI (F12). The scene snapshot (reading settings,
saving a copy of an unsaved file) must happen on the main thread, so from the render
thread it is handed there (:mod:`.mainthread`) and awaited; packing, hashing and trading
then run on the render thread, which blocks on the bridge's queue (releasing the GIL, so
the daemon thread keeps trading). ``test_break()`` is always False in module mode, so
:data:`CANCEL` is checked beside it.

Blender calls ``render()`` once **per view layer**. The first call buys the whole frame
(every layer) once and keeps it; later calls of the same frame fill their layer from it.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

import bpy

from ..bitwrk.errors import BitwrkError
from ..bitwrk.render import compose, exr
from ..bitwrk.render.jobspec import JobSpec
from ..bitwrk.render.tiling import Rect, bounds
from . import bridge, mainthread, session, snapshot

log = logging.getLogger("bitwrk.extension")
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
    """F12 on BitWrk: one purchase per frame (every view layer is filled from it), tiles
    drawn as they land."""

    bl_idname = ENGINE_ID
    bl_label = "BitWrk"
    bl_use_postprocess = True  # the scene's compositor runs, as after a local render
    bl_use_preview = False
    bl_use_eevee_viewport = True

    def update_render_passes(self, scene: Any = None, renderlayer: Any = None) -> None:
        self.register_pass(scene, renderlayer, "Combined", 4, "RGBA", "COLOR")
        if scene is not None and scene.cycles.use_denoising:
            self.register_pass(scene, renderlayer, compose.NOISY, 4, "RGBA", "COLOR")
        if _stores_denoising(scene, renderlayer):
            for name, n, chans, kind in DENOISING:
                self.register_pass(scene, renderlayer, name, n, chans, kind)

    def render(self, depsgraph: Any) -> None:
        scene, layer = depsgraph.scene, depsgraph.view_layer.name
        key = (scene.name, scene.frame_current)
        bought = getattr(self, "_bitwrk_frame", None)
        if bought is not None and bought[0] == key:  # a later view layer: bought already
            if bought[1] is not None:  # (None: the purchase failed or was cancelled)
                self._fill(bought[1].rect, bought[1].passes, layer)
            return
        CANCEL.clear()
        workdir = Path(tempfile.mkdtemp(prefix="bitwrk-render-"))
        self._bitwrk_frame: tuple[tuple[str, int], Frame | None] = (key, None)
        try:
            self._bitwrk_frame = (key, self._render(scene, layer, workdir))
        except Exception as exc:  # every failure reaches the user, not only the console
            if not isinstance(exc, BitwrkError):
                log.exception("BitWrk render failed")
            self.report({"ERROR"}, f"BitWrk: {exc}")
            self.update_stats("", f"BitWrk failed: {exc}")
            if hasattr(self, "error_set"):
                self.error_set(f"BitWrk: {exc}")
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    def _snapshot(self, scene: Any, workdir: Path) -> session.RenderRequest:
        name = scene.name
        self.update_stats("", "BitWrk: saving a snapshot of the scene")
        return mainthread.call(
            lambda: snapshot.take(bpy, bpy.data.scenes[name], workdir),
            cancelled=lambda: bool(self.test_break() or CANCEL.is_set()))

    def _render(self, scene: Any, layer: str, workdir: Path) -> Frame:
        offline = snapshot.online_refusal(bpy)
        if offline:
            raise BitwrkError(offline)
        request = self._snapshot(scene, workdir)
        if scene.cycles.use_denoising:  # Cycles keeps the frame before denoising too
            self.add_pass(compose.NOISY, 4, "RGBA")
        if any(_stores_denoising(scene, vl) for vl in scene.view_layers):
            for name, n, chans, _kind in DENOISING:
                self.add_pass(name, n, chans)
        job = session.RenderJob(bridge.get(), request, workdir)
        self.update_stats("", "BitWrk: packing and placing bids")
        job.start()
        # With a render region (Ctrl+B) only its pixels are bought, and Blender counts the
        # result's pixels from the region's corner.
        area = bounds([spec.rect for _unit, spec in job.plan.units]) if job.plan else None
        self._origin = (area.x0, area.y0) if area is not None else (0, 0)
        landed: dict[str, tuple[exr.MultiLayer, JobSpec]] = {}  # read once, as it lands
        for tile in job.tiles(lambda: bool(self.test_break() or CANCEL.is_set())):
            if tile.path is None:
                if tile.unit_id not in landed:
                    self._placeholder(tile.unit_id, tile.spec.rect, layer)
                continue
            landed[tile.unit_id] = (self._write_tile(tile.unit_id, tile.path, tile.spec.rect,
                                                     layer), tile.spec)
            self.update_progress(len(landed) / job.total)
            self.update_stats("", f"BitWrk: {len(landed)}/{job.total} tiles,"
                                  f" spent {bridge.get().status.progress.spent} sat")
        if job.cancelled:
            raise BitwrkError(f"cancelled; {len(landed)} of {job.total} tiles landed")
        if job.failed or len(landed) != job.total:
            raise BitwrkError("units could not be bought: " + "; ".join(job.failed))
        frame_spec = next(iter(landed.values()))[1]
        whole = frame_spec.with_rect(bounds([s.rect for _image, s in landed.values()]))
        frame = Frame(whole.rect, exr.stitch_images(
            [(image, s.rect, uid) for uid, (image, s) in landed.items()],
            frame_spec.width, frame_spec.height, whole.rect))
        if frame_spec.denoise:
            self._write_denoised(scene, frame, whole, layer)
        self.update_stats("", f"BitWrk: done, spent {job.spent} sat")
        return frame

    def _fill(self, rect: Rect, passes: Any, layer: str) -> None:
        """Write one rect of ``layer``'s result: ``passes(layer, pass_name)`` gives pixels
        or None."""
        x0, y0 = getattr(self, "_origin", (0, 0))
        result = self.begin_result(rect.x0 - x0, rect.y0 - y0, rect.width, rect.height,
                                   layer=layer)
        for result_layer in result.layers:
            for render_pass in result_layer.passes:
                pixels = passes(result_layer.name, render_pass.name)
                if pixels is not None:
                    render_pass.rect.foreach_set(pixels)
        self.end_result(result)

    def _write_tile(self, unit_id: str, path: Path, rect: Rect, layer: str) -> exr.MultiLayer:
        """Draw a landed tile; the tile as read (the frame is stitched from these)."""
        image = exr.read(path)
        self._fill(rect, Frame(rect, image).passes, layer)
        RESULT_LOG.append((unit_id, rect.x0, rect.y0, rect.width, rect.height, "tile"))
        return image

    def _placeholder(self, unit_id: str, rect: Rect, layer: str) -> None:
        import numpy as np

        grey = np.tile(np.asarray(PLACEHOLDER, dtype=np.float32), rect.width * rect.height)
        self._fill(rect, lambda _layer, name: grey if name == "Combined" else None, layer)
        RESULT_LOG.append((unit_id, rect.x0, rect.y0, rect.width, rect.height, "placeholder"))

    def _write_denoised(self, scene: Any, frame: Frame, spec: JobSpec, layer: str) -> None:
        """Denoise the stitched frame once (docs/architecture.md), in place, and draw it."""
        keep = all(_stores_denoising(scene, vl) for vl in scene.view_layers
                   if vl.name in spec.view_layers)
        compose.denoise_frame(frame.image, spec, compose.denoise_settings(scene), keep)
        self._fill(spec.rect, frame.passes, layer)
        r = spec.rect
        RESULT_LOG.append(("frame", r.x0, r.y0, r.width, r.height, "denoised"))


class Frame:
    """A bought frame (or tile) in memory: every view layer's passes, for ``_fill``."""

    def __init__(self, rect: Rect, image: exr.MultiLayer) -> None:
        self.rect, self.image = rect, image

    def passes(self, layer: str, name: str) -> Any:
        key = f"{layer}.{name}"
        return self.image.part(key).pixels.ravel() if self.image.has(key) else None


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
