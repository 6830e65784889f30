"""Local references for the animation test: Blender's own Render Animation (Cycles), no
bitwrk code. ``python animation_reference.py BLEND OUT_DIR FIRST LAST VARIANT...`` with
``VARIANT = NAME:FORMAT:DENOISE`` writes ``OUT_DIR/NAME/shot_####.ext``."""

from __future__ import annotations

import sys

import bpy


def main(blend: str, out: str, first: str, last: str, *variants: str) -> None:
    bpy.context.preferences.filepaths.use_scripts_auto_execute = False
    for variant in variants:
        name, file_format, denoise = variant.split(":")
        bpy.ops.wm.open_mainfile(filepath=blend, load_ui=False, use_scripts=False)
        scene = bpy.context.scene
        scene.frame_start, scene.frame_end = int(first), int(last)
        scene.cycles.use_denoising = denoise == "1"
        scene.render.filepath = f"{out}/{name}/shot_"
        ims = scene.render.image_settings
        if file_format == "OPEN_EXR_MULTILAYER" and hasattr(ims, "media_type"):
            ims.media_type = "MULTI_LAYER_IMAGE"
        ims.file_format = file_format
        bpy.ops.render.render(animation=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
