"""Run under the bpy module: install the zip, open a scene (scripts off), press *Quote*
(the blocking execute() path) for a frame range, and print ``REPORT {json}``.

``python quote_check.py ZIP SCENE.blend EXCHANGE_URL FIRST LAST TILES``
"""

from __future__ import annotations

import importlib
import json
import sys

# isort: off
import bpy  # first: importing it puts addon_utils on sys.path
import addon_utils  # noqa: F401 - the extension system needs it loaded
# isort: on

MODULE = "bl_ext.user_default.bitwrk"


def main(zip_path: str, blend: str, exchange: str, first: str, last: str, tiles: str) -> None:
    bpy.ops.extensions.package_install_files(filepath=zip_path, repo="user_default",
                                             enable_on_install=True)
    bpy.context.preferences.filepaths.use_scripts_auto_execute = False
    bridge = importlib.import_module(MODULE + ".blender.bridge")
    bpy.ops.wm.open_mainfile(filepath=blend, load_ui=False, use_scripts=False)
    scene = bpy.context.scene
    scene.frame_start, scene.frame_end = int(first), int(last)
    samples = scene.cycles.samples
    settings = scene.bitwrk
    settings.exchange_url, settings.tiles, settings.max_price = exchange, int(tiles), 100.0
    settings.mode = "ANIMATION"
    result = bpy.ops.bitwrk.quote()
    report = {"result": sorted(result), "notice": bridge.get().status.notice,
              "samples_unchanged": scene.cycles.samples == samples}
    report["stopped"] = bridge.shutdown()
    print("REPORT " + json.dumps(report), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
