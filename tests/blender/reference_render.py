"""A plain local render, as the artist's own Blender would make it: the test oracle.

``python reference_render.py BLEND OUT_DIR NAME:FRAME:DENOISE[:ADAPTIVE] ...`` renders the
full frame of each variant in this one process (fresh file each time) and writes
``OUT_DIR/NAME.exr`` (float32 multilayer) and ``OUT_DIR/NAME.png`` (8-bit RGBA, the
scene's view transform, the scene's dither). Independent of bitwrk's code on purpose.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile

if not (os.environ.get("BLENDER_USER_RESOURCES") and os.environ.get("XDG_CACHE_HOME")):
    _SCRATCH = tempfile.mkdtemp(prefix="bitwrk-reference-")
    atexit.register(shutil.rmtree, _SCRATCH, True)
    os.environ.setdefault("BLENDER_USER_RESOURCES", os.path.join(_SCRATCH, "user"))
    os.environ.setdefault("XDG_CACHE_HOME", os.path.join(_SCRATCH, "cache"))

import bpy


def render(blend: str, out_dir: str, name: str, frame: int, denoise: bool,
           adaptive: bool) -> None:
    bpy.ops.wm.open_mainfile(filepath=blend, load_ui=False, use_scripts=False)
    scene = bpy.context.scene
    scene.cycles.use_denoising = denoise
    scene.cycles.use_adaptive_sampling = adaptive
    if adaptive:  # enough samples and a tight threshold that pixels stop early
        scene.cycles.samples, scene.cycles.adaptive_threshold = 256, 0.02
    scene.frame_set(frame)
    bpy.ops.render.render()
    result = bpy.data.images["Render Result"]
    ims = scene.render.image_settings
    if hasattr(ims, "media_type"):  # Blender 5.0+: before file_format
        ims.media_type = "MULTI_LAYER_IMAGE"
    ims.file_format, ims.color_depth, ims.exr_codec = "OPEN_EXR_MULTILAYER", "32", "ZIP"
    result.save_render(filepath=os.path.join(out_dir, name + ".exr"), scene=scene)
    if hasattr(ims, "media_type"):
        ims.media_type = "IMAGE"
    ims.file_format, ims.color_mode, ims.color_depth = "PNG", "RGBA", "8"
    result.save_render(filepath=os.path.join(out_dir, name + ".png"), scene=scene)


def main(argv: list[str]) -> None:
    blend, out_dir, *variants = argv
    for variant in variants:
        name, frame, denoise, *rest = variant.split(":")
        render(blend, out_dir, name, int(frame), denoise == "1", rest == ["1"])


if __name__ == "__main__":
    main(sys.argv[1:])
