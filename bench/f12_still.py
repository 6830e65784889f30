"""Run under the bpy module by :mod:`bench.swarm`: an artist's F12, local and on BitWrk.

``python bench/f12_still.py ZIP SCENE.blend EXCHANGE_URL OUT_DIR TILES ROUNDS`` installs the
extension zip, opens the scene (scripts off) and, in this one warm Blender session:

1. renders frame 1 with Cycles ROUNDS times on one thread pinned to CPU 0 (an artist's
   local F12, written like the BitWrk render is);
2. renders it ROUNDS times with the BitWrk engine in TILES tiles through the exchange
   (``bpy.ops.bitwrk.render()``: F12's own path, blocking as headless scripts use it).

The first BitWrk render also connects the extension's daemon; later ones find it running,
as in an artist's session. Prints ``F12 {json}`` with every render's seconds.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time

# isort: off
import bpy  # first: importing it makes addon_utils importable
import addon_utils  # noqa: F401 - the extension system needs it loaded
# isort: on

MODULE = "bl_ext.user_default.bitwrk"


def main(zip_path: str, blend: str, exchange: str, out: str, tiles: str, rounds: str) -> None:
    bpy.ops.extensions.package_install_files(filepath=zip_path, repo="user_default",
                                             enable_on_install=True)
    bpy.context.preferences.filepaths.use_scripts_auto_execute = False
    bpy.ops.wm.open_mainfile(filepath=blend, load_ui=False, use_scripts=False)
    scene = bpy.context.scene
    scene.frame_set(1)
    r = scene.render
    r.filepath = os.path.join(out, "f12_")
    everywhere = os.sched_getaffinity(0)
    local = []
    os.sched_setaffinity(0, {0})  # one core, like each seller and the bench's T_local
    r.threads_mode, r.threads, r.use_persistent_data = "FIXED", 1, True
    for _ in range(int(rounds)):
        started = time.perf_counter()
        bpy.ops.render.render(write_still=True)
        local.append(time.perf_counter() - started)
    os.sched_setaffinity(0, everywhere)  # the buyer's own work (checks, stitching) as usual
    r.threads_mode = "AUTO"
    settings = scene.bitwrk
    settings.exchange_url, settings.tiles, settings.max_price = exchange, int(tiles), 100.0
    settings.allow_local_sellers = True  # the bench's sellers listen on loopback
    market = []
    for _ in range(int(rounds)):
        started = time.perf_counter()
        result = bpy.ops.bitwrk.render()
        market.append(time.perf_counter() - started)
        if result != {"FINISHED"}:
            raise SystemExit(f"BitWrk render ended {sorted(result)}")
    bridge = importlib.import_module(MODULE + ".blender.bridge")
    progress = bridge.get().status.progress
    report = {"local": local, "bitwrk": market, "done": progress.done,
              "failed": progress.failed, "stopped": bridge.shutdown()}
    print("F12 " + json.dumps(report), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:7])
