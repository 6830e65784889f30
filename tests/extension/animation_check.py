"""Run under the bpy module: install the zip, open a scene (scripts off) and run "Render
animation on BitWrk" (the blocking execute() path) once per output variant.

``python animation_check.py ZIP SCENE.blend EXCHANGE_URL OUT_DIR FIRST LAST VARIANT...``
with ``VARIANT = NAME:FORMAT:TILES:DENOISE[:cancel]`` (FORMAT: PNG, OPEN_EXR,
OPEN_EXR_MULTILAYER; ``cancel``: the cancel operator runs once the first unit has landed)
writes each variant's frames to ``OUT_DIR/NAME/shot_####.ext`` — where Blender's own
Render Animation would, as the scene's output path says — and prints ``REPORT {json}``.
"""

from __future__ import annotations

import importlib
import json
import sys
import threading
import time
from pathlib import Path

# isort: off
import bpy  # first: importing it puts addon_utils on sys.path
import addon_utils  # noqa: F401 - the extension system needs it loaded
# isort: on

MODULE = "bl_ext.user_default.bitwrk"


def cancel_after_first_unit(bridge: object) -> None:
    """What Escape does in the GUI; the blocking path checks the same flag."""
    render_engine = importlib.import_module(MODULE + ".blender.render_engine")
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if bridge.get().status.progress.done >= 1:  # type: ignore[attr-defined]
            render_engine.CANCEL.set()
            return
        time.sleep(0.01)


def main(zip_path: str, blend: str, exchange: str, out: str, first: str, last: str,
         *variants: str) -> None:
    bpy.ops.extensions.package_install_files(filepath=zip_path, repo="user_default",
                                             enable_on_install=True)
    bpy.context.preferences.filepaths.use_scripts_auto_execute = False
    bridge = importlib.import_module(MODULE + ".blender.bridge")
    report: dict[str, object] = {}
    for variant in variants:
        name, file_format, tiles, denoise, *cancel = variant.split(":")
        bpy.ops.wm.open_mainfile(filepath=blend, load_ui=False, use_scripts=False)
        scene = bpy.context.scene
        scene.frame_start, scene.frame_end = int(first), int(last)
        scene.cycles.use_denoising = denoise == "1"
        scene.render.filepath = f"{out}/{name}/shot_"
        ims = scene.render.image_settings
        if file_format == "OPEN_EXR_MULTILAYER" and hasattr(ims, "media_type"):
            ims.media_type = "MULTI_LAYER_IMAGE"
        ims.file_format = file_format
        settings = scene.bitwrk
        settings.exchange_url, settings.tiles, settings.max_price = exchange, int(tiles), 100.0
        settings.allow_local_sellers = True  # the test's sellers listen on loopback
        expected = {f: scene.render.frame_path(frame=f)
                    for f in range(scene.frame_start, scene.frame_end + 1)}
        if cancel:
            # Tiles slow enough that the cancel lands while most are still to be bought
            # (warm sellers render the tiny test scene's tiles in a few milliseconds).
            scene.cycles.samples = 1024
            threading.Thread(target=cancel_after_first_unit, args=(bridge,), daemon=True).start()
        t0 = time.perf_counter()
        result = bpy.ops.bitwrk.render(animation=True)  # execute(): blocking
        p = bridge.get().status.progress
        report[name] = {"result": sorted(result), "seconds": round(time.perf_counter() - t0, 2),
                        "total": p.total, "done": p.done, "failed": p.failed,
                        "spent": p.spent, "frames": p.frames,
                        "frames_written": p.frames_written, "stage": p.stage,
                        "finished": p.finished, "expected": expected,
                        "files": sorted(str(f) for f in Path(out, name).glob("*"))}
    report["stopped"] = bridge.shutdown()
    print("REPORT " + json.dumps(report), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
