"""Make a two-view-layer copy of a scene: ``python two_layers.py IN.blend OUT.blend``.

The second layer renders everything with a grey material override (Cycles honours it per
layer), so the two layers' images differ and a mix-up would show.
"""

from __future__ import annotations

import sys

import bpy


def main(source: str, target: str) -> None:
    bpy.context.preferences.filepaths.use_scripts_auto_execute = False
    bpy.ops.wm.open_mainfile(filepath=source, load_ui=False, use_scripts=False)
    scene = bpy.context.scene
    grey = bpy.data.materials.new("Override grey")
    grey.diffuse_color = (0.5, 0.5, 0.5, 1.0)
    layer = scene.view_layers.new("Override")
    layer.material_override = grey
    bpy.ops.wm.save_as_mainfile(filepath=target, copy=True)
    bpy.ops.wm.read_factory_settings(use_empty=True)  # bpy 4.2 crashes at exit otherwise


if __name__ == "__main__":
    main(*sys.argv[1:3])
