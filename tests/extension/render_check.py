"""Run under the bpy module: install the zip, open a scene (scripts off), render it with the
BitWrk engine through a real exchange (blocking: F12's path headless), save the result.

``python render_check.py ZIP SCENE.blend EXCHANGE_URL OUT_STEM TILES DENOISE`` prints
``REPORT {json}`` with the engine's record of every write into the render result.
"""

from __future__ import annotations

import importlib
import json
import sys
import time

# isort: off
import bpy  # first: importing it puts addon_utils on sys.path
import addon_utils  # noqa: F401 - the extension system needs it loaded
# isort: on

MODULE = "bl_ext.user_default.bitwrk"


def main(zip_path: str, blend: str, exchange: str, out: str, tiles: str, denoise: str) -> None:
    bpy.ops.extensions.package_install_files(filepath=zip_path, repo="user_default",
                                             enable_on_install=True)
    bpy.context.preferences.filepaths.use_scripts_auto_execute = False
    bpy.ops.wm.open_mainfile(filepath=blend, load_ui=False, use_scripts=False)
    scene = bpy.context.scene
    scene.cycles.use_denoising = denoise == "1"
    settings = scene.bitwrk
    settings.exchange_url, settings.tiles, settings.max_price = exchange, int(tiles), 100.0
    settings.allow_local_sellers = True  # the test's sellers listen on loopback
    t0 = time.perf_counter()
    result = bpy.ops.bitwrk.render()  # execute(): the blocking path scripts use
    seconds = time.perf_counter() - t0
    engine = importlib.import_module(MODULE + ".blender.render_engine")
    bridge = importlib.import_module(MODULE + ".blender.bridge")
    progress = bridge.get().status.progress
    image = bpy.data.images["Render Result"]
    ims = scene.render.image_settings
    if hasattr(ims, "media_type"):  # Blender 5.0+: before file_format
        ims.media_type = "MULTI_LAYER_IMAGE"
    ims.file_format, ims.color_depth, ims.exr_codec = "OPEN_EXR_MULTILAYER", "32", "ZIP"
    image.save_render(filepath=out + ".exr", scene=scene)
    if hasattr(ims, "media_type"):
        ims.media_type = "IMAGE"
    ims.file_format, ims.color_mode, ims.color_depth = "PNG", "RGBA", "8"
    image.save_render(filepath=out + ".png", scene=scene)
    report = {"result": sorted(result), "seconds": round(seconds, 2),
              "log": engine.RESULT_LOG, "done": progress.done, "spent": progress.spent,
              "failed": progress.failed}
    stopped = bridge.shutdown()
    report["stopped"] = stopped
    print("REPORT " + json.dumps(report), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:7])
