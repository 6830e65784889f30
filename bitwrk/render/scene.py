"""Open a .blend safely and describe its render settings as plain data (runs under bpy).

A buyer builds :class:`~bitwrk.render.jobspec.JobSpec` objects from this description.
``python -m bitwrk.render.scene FILE.blend [--scene NAME]`` prints it as JSON. Inside a
running Blender use :func:`describe` on the open scene; :func:`probe` replaces the open
file.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from . import compat
from .bpyprocess import isolate_user_dirs, private_stdout
from .errors import RenderError


def open_safely(path: Path) -> Any:
    """Open ``path`` with Python auto-execution off (preference and per-call flag).

    Returns the ``bpy`` module. Blender decides at load time whether a file's scripts,
    drivers and handlers may run; with ``use_scripts=False`` none of them do
    (docs/measured-facts.md R4). A process must never have opened a file with scripts on.
    """
    import bpy

    bpy.context.preferences.filepaths.use_scripts_auto_execute = False
    if not path.is_file():
        raise RenderError(f"no such .blend: {path}", path=str(path))
    try:
        bpy.ops.wm.open_mainfile(filepath=str(path), load_ui=False, use_scripts=False)
    except RuntimeError as exc:
        raise RenderError(f"cannot open {path.name}: {str(exc).strip()}",
                          path=str(path)) from None
    return bpy


def find_scene(bpy: Any, name: str | None) -> Any:
    if name is None:
        return bpy.context.scene
    scene = bpy.data.scenes.get(name)
    if scene is None:
        raise RenderError(f"no scene {name!r} in file",
                          scenes=[s.name for s in bpy.data.scenes])
    return scene


def python_drivers() -> list[str]:
    """Drivers that need Python to evaluate (scripted, not a "simple expression"): sellers
    open files with scripts off, so these would render differently there. One line each."""
    import bpy

    found: list[str] = []
    for collection in dir(bpy.data):
        ids = getattr(bpy.data, collection, None)
        if not isinstance(ids, bpy.types.bpy_prop_collection):
            continue
        for datablock in ids:
            owners = [datablock, getattr(datablock, "node_tree", None),
                      getattr(datablock, "shape_keys", None)]
            for owner in owners:
                anim = getattr(owner, "animation_data", None)
                if anim is None:
                    continue
                for fcurve in anim.drivers:
                    driver = fcurve.driver
                    if driver.type == "SCRIPTED" and not driver.is_simple_expression:
                        found.append(f"{owner.name}.{fcurve.data_path}: {driver.expression}")
    return sorted(set(found))


def cpu_only_features(scene: Any) -> list[str]:
    """What in ``scene`` renders only on the CPU (so never on a GPU seller), one line each.

    Open Shading Language: Cycles runs OSL on the CPU (and OptiX only); script nodes are
    OSL programs, so a material with one needs it even when the scene's switch is off.
    """
    import bpy

    found = []
    if getattr(scene.cycles, "shading_system", False):
        found.append("Open Shading Language (Render Properties > Open Shading Language)")
    for tree_owner in [*bpy.data.materials, *bpy.data.node_groups, *bpy.data.worlds,
                       *bpy.data.lights]:
        tree = tree_owner if tree_owner.bl_rna.identifier.endswith("NodeTree") else getattr(
            tree_owner, "node_tree", None)
        if tree is None:
            continue
        if any(node.bl_idname == "ShaderNodeScript" for node in tree.nodes):
            found.append(f"OSL script node in {tree_owner.name}")
    return found


def border(render: Any) -> dict[str, Any]:
    """The render region settings of ``scene.render`` (:func:`~bitwrk.render.tiling.region`
    turns them into pixels)."""
    return {"use": render.use_border, "crop": render.use_crop_to_border,
            "min_x": render.border_min_x, "max_x": render.border_max_x,
            "min_y": render.border_min_y, "max_y": render.border_max_y}


def describe(scene: Any) -> dict[str, Any]:
    """The render settings of ``scene`` as JSON-ready data."""
    r, cy = scene.render, scene.cycles
    ims = r.image_settings
    return {
        "scene": scene.name,
        "engine": r.engine,
        "resolution": [r.resolution_x, r.resolution_y],
        "resolution_percentage": r.resolution_percentage,
        "width": r.resolution_x * r.resolution_percentage // 100,
        "height": r.resolution_y * r.resolution_percentage // 100,
        "pixel_aspect": [r.pixel_aspect_x, r.pixel_aspect_y],
        "border": border(r),
        "frame_start": scene.frame_start, "frame_end": scene.frame_end,
        "frame_step": scene.frame_step, "frame_current": scene.frame_current,
        "fps": r.fps, "fps_base": r.fps_base,
        "camera": scene.camera.name if scene.camera else None,
        "device": cy.device,
        "samples": cy.samples,
        "adaptive": {"use": cy.use_adaptive_sampling, "threshold": cy.adaptive_threshold,
                     "min_samples": cy.adaptive_min_samples},
        "time_limit": cy.time_limit,
        "seed": cy.seed, "animated_seed": cy.use_animated_seed,
        "max_bounces": cy.max_bounces,
        "denoise": {"use": cy.use_denoising, "denoiser": cy.denoiser,
                    "input_passes": cy.denoising_input_passes,
                    "prefilter": cy.denoising_prefilter, "quality": cy.denoising_quality,
                    "use_gpu": cy.denoising_use_gpu},
        "view_layers": [{"name": vl.name, "use": vl.use, "samples": vl.samples}
                        for vl in scene.view_layers],
        "layer_samples": cy.use_layer_samples,  # resolved by the buyer: bitwrk.buy.layer_samples
        "film_transparent": r.film_transparent,
        "multiview": bool(r.use_multiview),  # stereoscopy (Output > Views)
        "path_guiding": bool(getattr(cy, "use_guiding", False)),
        "motion_blur": r.use_motion_blur,
        "compositing": compat.composites(scene),
        "python_drivers": python_drivers(),
        "cpu_only": cpu_only_features(scene),
        "output": {"filepath": r.filepath, "file_format": ims.file_format,
                   "media_type": compat.media_type(ims), "color_depth": ims.color_depth,
                   "use_file_extension": r.use_file_extension},
        "color": {"display": scene.display_settings.display_device,
                  "view_transform": scene.view_settings.view_transform,
                  "look": scene.view_settings.look,
                  "exposure": scene.view_settings.exposure,
                  "gamma": scene.view_settings.gamma},
    }


def probe(blend_path: Path, scene: str | None = None) -> dict[str, Any]:
    """Open ``blend_path`` (scripts off) and describe its scene; replaces the open file."""
    bpy = open_safely(Path(blend_path))
    info = describe(find_scene(bpy, scene))
    info["blender"] = compat.blender_line(bpy.app.version)
    info["scenes"] = [s.name for s in bpy.data.scenes]
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bitwrk.render.scene",
                                     description="Print a .blend's render settings as JSON.")
    parser.add_argument("blend", type=Path)
    parser.add_argument("--scene", help="scene name (default: the file's active scene)")
    args = parser.parse_args(argv)
    isolate_user_dirs()
    out = private_stdout()
    try:
        info = probe(args.blend.resolve(), args.scene)
    except RenderError as exc:
        print(json.dumps(exc.to_json()), file=out)
        return 1
    finally:
        if "bpy" in sys.modules:
            compat.close_file(sys.modules["bpy"])
    print(json.dumps(info, indent=2, sort_keys=True), file=out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
