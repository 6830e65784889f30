"""Build job folders with hostile scenes: ``python make_bombs.py OUT_DIR``.

- ``memory/scene.blend``: a geometry-nodes grid of 20000 x 20000 vertices (about 5 GB of
  positions alone), far beyond what a 512M-class worker may allocate;
- ``subdiv/scene.blend``: a cube with 11 levels of render subdivision (25 M faces);
- ``plain/scene.blend``: a harmless lit cube, for units that must succeed.
Both are cheap in ray budget (tiny image, one sample), so only a memory limit stops them.
"""

from __future__ import annotations

import sys
from pathlib import Path

import bpy


def base_scene() -> object:
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.name = "Shot"
    scene.render.engine = "CYCLES"
    scene.render.resolution_x, scene.render.resolution_y = 32, 24
    scene.cycles.use_adaptive_sampling = False  # every sample is rendered: a long unit is long
    cam = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
    cam.location = (0.0, 0.0, 8.0)
    scene.collection.objects.link(cam)
    scene.camera = cam
    return scene


def grid_bomb(scene: object) -> None:
    tree = bpy.data.node_groups.new("bomb", "GeometryNodeTree")
    tree.interface.new_socket("Geometry", in_out="OUTPUT", socket_type="NodeSocketGeometry")
    grid = tree.nodes.new("GeometryNodeMeshGrid")
    grid.inputs["Vertices X"].default_value = 20000
    grid.inputs["Vertices Y"].default_value = 20000
    out = tree.nodes.new("NodeGroupOutput")
    tree.links.new(grid.outputs[0], out.inputs[0])
    ob = bpy.data.objects.new("bomb", bpy.data.meshes.new("bomb"))
    bpy.context.scene.collection.objects.link(ob)
    mod = ob.modifiers.new("bomb", "NODES")
    mod.show_viewport = False  # evaluated for the render only, never in this process
    mod.node_group = tree


def subdiv_bomb(scene: object) -> None:
    bpy.ops.mesh.primitive_cube_add()
    mod = bpy.context.object.modifiers.new("bomb", "SUBSURF")
    mod.show_viewport = False
    mod.levels = 1
    mod.render_levels = 11


def plain(scene: object) -> None:
    """A harmless scene: a lit cube, for units that must succeed."""
    bpy.ops.mesh.primitive_cube_add()
    light = bpy.data.objects.new("Sun", bpy.data.lights.new("Sun", "SUN"))
    bpy.context.scene.collection.objects.link(light)


def main(out: Path) -> None:
    for name, build in (("memory", grid_bomb), ("subdiv", subdiv_bomb), ("plain", plain)):
        scene = base_scene()
        build(scene)
        (out / name).mkdir(parents=True, exist_ok=True)
        bpy.ops.wm.save_as_mainfile(filepath=str(out / name / "scene.blend"))


if __name__ == "__main__":
    main(Path(sys.argv[-1]))
