"""The demo's local baseline: the same frames rendered by one plain bpy process on one core.

``python demo/local_render.py CPU OUT_DIR BLEND:FRAME[,FRAME...] ...`` pins itself to CPU
``CPU``, renders every listed frame of each file with Cycles on one thread (the files' own
settings: denoising included) and writes ``OUT_DIR/<stem>_<frame>.exr`` and ``.png``, as
the buyer does. One JSON line per frame on stdout: wall time since the process started
(before ``import bpy``) and the CPU time it used so far.
"""

from __future__ import annotations

import json
import os
import sys
import time

STARTED = time.time()
if hasattr(os, "sched_setaffinity"):
    os.sched_setaffinity(0, {int(sys.argv[1])})

import bpy  # noqa: E402 - after pinning, so timing includes the import


def save(scene: object, path: str, exr: bool) -> None:
    ims = scene.render.image_settings  # type: ignore[attr-defined]
    if exr:
        ims.media_type = "MULTI_LAYER_IMAGE"  # 5.0: before file_format
        ims.file_format, ims.color_depth, ims.exr_codec = "OPEN_EXR_MULTILAYER", "32", "ZIP"
    else:
        ims.media_type = "IMAGE"
        ims.file_format, ims.color_mode, ims.color_depth = "PNG", "RGBA", "8"
    bpy.data.images["Render Result"].save_render(filepath=path, scene=scene)


def main(argv: list[str]) -> None:
    _cpu, out, *jobs = argv
    for job in jobs:
        blend, _, frames = job.rpartition(":")
        bpy.ops.wm.open_mainfile(filepath=blend, load_ui=False, use_scripts=False)
        scene = bpy.context.scene
        scene.render.threads_mode, scene.render.threads = "FIXED", 1
        stem = os.path.splitext(os.path.basename(blend))[0]
        for frame in (int(f) for f in frames.split(",")):
            begun = time.perf_counter()
            scene.frame_set(frame)
            bpy.ops.render.render(scene=scene.name)
            base = os.path.join(out, f"{stem}_{frame:04d}")
            save(scene, base + ".exr", exr=True)
            save(scene, base + ".png", exr=False)
            print(json.dumps({"blend": stem, "frame": frame, "seconds":
                              time.perf_counter() - begun, "since_start": time.time() - STARTED,
                              "cpu": time.process_time()}),
                  flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
