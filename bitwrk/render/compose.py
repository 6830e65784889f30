"""Buyer side: stitch a frame's tiles, denoise it once, write EXR and PNG (under bpy).

Tiles are exact (docs/measured-facts.md R1), so the stitched noisy frame equals a local
render pixel for pixel. OIDN is not tile-invariant, so a denoised frame is made here,
once, from the stitched noisy colour and denoising passes, replaying Cycles' own OIDN
steps (:mod:`bitwrk.render.oidn`): bit-identical to a local denoised render.

In a process that already runs Blender with the scene open call :func:`compose`.
Elsewhere run ``python -m bitwrk.render.compose REQUEST.json``: it opens the request's
.blend (scripts off) for the scene's colour management and denoiser settings, and prints
a JSON line ``{"ok": true, "exr": ..., "png": ...}``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import BitwrkError
from . import compat, exr, oidn
from .bpyprocess import isolate_user_dirs, private_stdout
from .errors import ComposeError
from .jobspec import JobSpec
from .scene import border as region_settings
from .tiling import Rect, bounds, region

DENOISING_PASSES = ("Denoising Normal", "Denoising Albedo", "Denoising Depth")


@dataclass(frozen=True)
class ComposeRequest:
    """Tiles of one frame (file + the spec it was rendered from) and where to write it."""

    tiles: tuple[tuple[Path, JobSpec], ...]
    exr: Path
    png: Path | None = None
    blend: Path | None = None  # needed only when run as its own process

    def __post_init__(self) -> None:
        if not self.tiles:
            raise ComposeError("a frame needs at least one tile")
        first = self.frame_spec
        for _path, spec in self.tiles:
            if spec.with_rect(first.rect) != first:
                raise ComposeError("tiles of one frame must differ only in their rect")

    @property
    def frame_spec(self) -> JobSpec:
        spec = self.tiles[0][1]
        return spec.with_rect(Rect(0, spec.width, 0, spec.height))

    def to_json(self) -> dict[str, Any]:
        return {"tiles": [{"path": str(p), "spec": s.to_json()} for p, s in self.tiles],
                "exr": str(self.exr), "png": str(self.png) if self.png else None,
                "blend": str(self.blend) if self.blend else None}

    @classmethod
    def from_json(cls, data: Any) -> ComposeRequest:
        try:
            tiles = tuple((Path(t["path"]), JobSpec.from_json(t["spec"])) for t in data["tiles"])
            png, blend = data.get("png"), data.get("blend")
            return cls(tiles, Path(data["exr"]), Path(png) if png else None,
                       Path(blend) if blend else None)
        except (KeyError, TypeError) as exc:
            raise ComposeError(f"malformed compose request: {exc!r}") from None


@dataclass(frozen=True)
class ComposeResult:
    exr: Path
    png: Path | None
    denoised: bool
    seconds: dict[str, float]


def denoise_settings(scene: Any) -> oidn.DenoiseSettings:
    cy = scene.cycles
    return oidn.DenoiseSettings(cy.denoising_input_passes, cy.denoising_prefilter,
                                cy.denoising_quality, bool(cy.use_adaptive_sampling))


NOISY = "Noisy Image"  # Cycles' pass of the frame before denoising


def denoise_frame(frame: exr.MultiLayer, spec: JobSpec, settings: oidn.DenoiseSettings,
                  keep_passes: bool) -> None:
    """Replace each view layer's Combined with its denoised version, in place; the noisy
    one stays beside it as "Noisy Image", as in a local render's passes."""
    lib = oidn.load_library()
    for layer in spec.view_layers:
        def pixels(name: str, layer: str = layer) -> Any:
            key = f"{layer}.{name}"
            return frame.part(key).pixels if frame.has(key) else None

        combined = frame.part(f"{layer}.Combined")
        noisy = f"{layer}.{NOISY}"
        if not frame.has(noisy):
            frame.parts.insert(frame.parts.index(combined) + 1, exr.Part(
                noisy, [f"{noisy}.{c.rsplit('.', 1)[-1]}" for c in combined.channels],
                combined.pixels))
        combined.pixels = oidn.denoise(combined.pixels, pixels("Denoising Albedo"),
                                       pixels("Denoising Normal"), spec.samples, settings, lib)
    if not keep_passes:
        frame.parts = [p for p in frame.parts
                       if not p.name.endswith(tuple("." + n for n in DENOISING_PASSES))]


ENGINE_ID = "BITWRK_COMPOSE"


@contextlib.contextmanager
def _saved(obj: Any, **changes: Any) -> Iterator[None]:
    """Set attributes of a bpy struct for a while; put the old values back after."""
    saved = {key: getattr(obj, key) for key in changes}
    try:
        for key, value in changes.items():
            setattr(obj, key, value)
        yield
    finally:
        for key, value in reversed(saved.items()):
            with contextlib.suppress(TypeError, ValueError, AttributeError):
                setattr(obj, key, value)


def _engine_class(bpy: Any, frame: exr.MultiLayer) -> Any:
    """A RenderEngine that "renders" by handing Blender the composed passes (a render
    region's result starts at the region's corner: Blender counts from there)."""

    class ComposeEngine(bpy.types.RenderEngine):  # type: ignore[misc]
        bl_idname = ENGINE_ID
        bl_label = "BitWrk compose"
        bl_use_postprocess = True  # the scene's compositor runs, as after a local render

        def render(self, depsgraph: Any) -> None:
            layer = depsgraph.view_layer.name
            result = self.begin_result(0, 0, frame.width, frame.height, layer=layer)
            for render_pass in result.layers[0].passes:
                name = f"{layer}.{render_pass.name}"
                if frame.has(name):
                    render_pass.rect.foreach_set(frame.part(name).pixels.ravel())
            self.end_result(result)

    return ComposeEngine


def write_png(bpy: Any, scene: Any, frame: exr.MultiLayer, path: Path,
              area: Rect | None = None, size: tuple[int, int] | None = None,
              composite: Path | None = None) -> None:
    """Write ``frame`` as an 8-bit PNG exactly as Blender saves a render of ``scene``.

    The frame goes through a render with a tiny Python engine, so the view transform,
    look, dither and compositor apply exactly as after a local render (saving a plain
    float image instead dithers differently: +-1 level on half the pixels). The scene's
    settings are restored afterwards, so this is safe in an artist's open file.
    ``area``: ``frame`` is only the scene's render region of a ``size`` frame; Blender
    then crops it, or not, as the scene says. ``composite``: also save the compositor's
    float output there (a one-layer EXR), for the frame's multilayer EXR.
    """
    width, height = size or (frame.width, frame.height)
    whole = area is None or area == Rect(0, width, 0, height)
    engine = _engine_class(bpy, frame)
    bpy.utils.register_class(engine)
    r = scene.render
    try:
        border = {"use_border": False} if whole else {}  # a region: the scene's own
        with _saved(r, engine=ENGINE_ID, resolution_x=width, resolution_y=height,
                    resolution_percentage=100, **border):
            bpy.ops.render.render(scene=scene.name)
            with compat.output_format(r.image_settings, "PNG", color_mode="RGBA",
                                      color_depth="8"):
                path.parent.mkdir(parents=True, exist_ok=True)
                bpy.data.images["Render Result"].save_render(filepath=str(path), scene=scene)
            if composite is not None:
                with compat.output_format(r.image_settings, "OPEN_EXR", color_mode="RGBA",
                                          color_depth="32", exr_codec="ZIP"):
                    bpy.data.images["Render Result"].save_render(filepath=str(composite),
                                                                 scene=scene)
    finally:
        bpy.utils.unregister_class(engine)


def _composite_part(image: exr.MultiLayer) -> exr.Part:
    """The compositor's output (a one-layer RGBA EXR as read) as the "Composite" layer."""
    part = image.parts[0]
    names = [c.rsplit(".", 1)[-1] for c in part.channels]
    if names != ["R", "G", "B", "A"]:
        raise ComposeError(f"the compositor's output has channels {names}")
    return exr.Part("Composite.Combined", [f"Composite.Combined.{c}" for c in names],
                    part.pixels)


def region_of(scene: Any, spec: JobSpec, rects: list[Rect]) -> Rect:
    """The part of ``spec``'s frame that tiles at ``rects`` cover: the whole frame, or
    ``scene``'s render region (refused when they cover anything else)."""
    area = bounds(rects)
    if area not in (Rect(0, spec.width, 0, spec.height),
                    region(region_settings(scene.render), spec.width, spec.height)):
        raise ComposeError(f"the tiles cover {area}, neither the whole frame nor the"
                           " scene's render region", tiles=str(area))
    return area


def compose(request: ComposeRequest, scene_name: str | None = None) -> ComposeResult:
    """Stitch, denoise when the tiles ask for it, write EXR (+ PNG); needs bpy imported."""
    import bpy

    spec = request.frame_spec
    scene = bpy.data.scenes.get(scene_name or spec.scene)
    if scene is None:
        raise ComposeError(f"no scene {spec.scene!r} open")
    if scene.frame_current != spec.frame:
        # Settings may be animated (an exposure fade, a compositor node): the PNG gets
        # them at the frame's own time, as a local render of that frame does.
        scene.frame_set(spec.frame)
    times = {}
    t0 = time.perf_counter()
    area = region_of(scene, spec, [s.rect for _p, s in request.tiles])
    frame = exr.stitch([(p, s.rect) for p, s in request.tiles], spec.width, spec.height,
                       area)
    times["stitch"] = time.perf_counter() - t0
    if spec.denoise:
        t0 = time.perf_counter()
        keep = all(vl.cycles.denoising_store_passes for vl in scene.view_layers
                   if vl.name in spec.view_layers)
        denoise_frame(frame, spec, denoise_settings(scene), keep)
        times["denoise"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    request.exr.parent.mkdir(parents=True, exist_ok=True)
    whole = area == Rect(0, spec.width, 0, spec.height)
    crop = whole or scene.render.use_crop_to_border  # as Blender saves a region
    size = (spec.width, spec.height)
    # A scene that composites: its multilayer EXR carries the compositor's output too, as
    # a "Composite" layer (what Blender writes locally); it comes from the PNG's render.
    comp = (request.exr.with_name(request.exr.name + ".composite.exr")
            if compat.composites(scene) else None)
    saved = frame if crop else exr.embed(frame, area, *size)
    if request.png is not None or comp is not None:
        png = request.png or request.exr.with_name(request.exr.name + ".png")
        try:
            write_png(bpy, scene, frame, png, area, size, comp)
            if comp is not None:
                composite = exr.read(comp)
                if (composite.width, composite.height) != (saved.width, saved.height):
                    raise ComposeError(f"the compositor's output is {composite.width}x"
                                       f"{composite.height}, not {saved.width}x{saved.height}")
                saved.parts.insert(0, _composite_part(composite))
        finally:
            if comp is not None:
                comp.unlink(missing_ok=True)
            if request.png is None:
                png.unlink(missing_ok=True)
    exr.write(request.exr, saved)
    times["write"] = time.perf_counter() - t0
    return ComposeResult(request.exr, request.png, spec.denoise, times)


def run(request: ComposeRequest) -> ComposeResult:
    """Open the request's .blend (scripts off), then :func:`compose`."""
    from .scene import open_safely

    if request.blend is None:
        raise ComposeError("a compose process needs the job's .blend")
    open_safely(request.blend)
    return compose(request)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bitwrk.render.compose",
                                     description="Stitch and denoise frames from their tiles.")
    parser.add_argument("requests", type=Path, nargs="+",
                        help="compose request JSON files, one per frame (bpy loads once)")
    args = parser.parse_args(argv)
    isolate_user_dirs()
    out = private_stdout()
    failed = 0
    for path in args.requests:
        try:
            request = ComposeRequest.from_json(json.loads(path.read_text()))
            result = run(request)
        except (BitwrkError, OSError, ValueError) as exc:
            code = exc.code if isinstance(exc, BitwrkError) else ComposeError.code
            print(json.dumps({"ok": False, "code": code, "error": str(exc)}), file=out)
            failed += 1
            continue
        print(json.dumps({"ok": True, "exr": str(result.exr),
                          "png": str(result.png) if result.png else None,
                          "denoised": result.denoised, "seconds": result.seconds}),
              file=out, flush=True)
    if "bpy" in sys.modules:
        compat.close_file(sys.modules["bpy"])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
