"""Build BitWrk's demo scene with bpy: ``python demo/make_demo_scene.py OUT_DIR``.

Writes ``OUT_DIR/demo.blend`` (the animation, frames 1-6), ``OUT_DIR/demo_still.blend``
(the same scene at frame 4 in a larger size, for a still cut into tiles) and the image texture
both use, ``OUT_DIR/textures/tiles.png`` (generated here, referenced relatively so it travels
with the job). The scene: a tiled floor
with that texture, a gold torus spinning, a glass sphere rolling across, a red cube and
Suzanne turning on a pedestal, a warm area light, a cool sun and a sky-blue world; the
camera slowly dollies in. Cycles on the CPU, 320x180 px (the still 480x270), 32 samples and
OIDN denoising on: sellers render noisy tiles plus denoising passes, the buyer stitches
and denoises each frame once. Small on purpose, so the whole demo takes about a minute and a half.

``--width/--height/--samples/--frames`` override the defaults (``--quick`` runs use
smaller); the still is always 1.5 times the animation's size.
"""

from __future__ import annotations

import argparse
import atexit
import math
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

# Nothing of Blender's user state may land under ~ while building.
if not (os.environ.get("BLENDER_USER_RESOURCES") and os.environ.get("XDG_CACHE_HOME")):
    _SCRATCH = tempfile.mkdtemp(prefix="bitwrk-demo-scene-")
    atexit.register(shutil.rmtree, _SCRATCH, True)
    os.environ.setdefault("BLENDER_USER_RESOURCES", os.path.join(_SCRATCH, "user"))
    os.environ.setdefault("XDG_CACHE_HOME", os.path.join(_SCRATCH, "cache"))

import bpy

TEXTURE = "textures/tiles.png"
SCENE = "Demo"


def write_texture(path: Path, size: int = 256) -> None:
    """Glazed tiles: 8x8 per image, each its own hue, with grout lines and a soft sheen."""
    img = bpy.data.images.new("tiles", size, size, alpha=False)
    cell = size // 8
    palette = [(0.9, 0.86, 0.78), (0.62, 0.3, 0.18), (0.28, 0.38, 0.52), (0.9, 0.86, 0.78),
               (0.45, 0.55, 0.42), (0.78, 0.66, 0.45)]
    pixels: list[float] = []
    for y in range(size):
        for x in range(size):
            cx, cy = x // cell, y // cell
            u, v = (x % cell) / cell, (y % cell) / cell
            if u < 0.06 or v < 0.06:  # grout
                pixels += [0.08, 0.08, 0.09, 1.0]
                continue
            r, g, b = palette[(cx * 7 + cy * 3 + (cx * cy) % 5) % len(palette)]
            sheen = 0.8 + 0.2 * math.cos((u - 0.5) * 2.4) * math.cos((v - 0.5) * 2.4)
            pixels += [r * sheen, g * sheen, b * sheen, 1.0]
    img.pixels.foreach_set(pixels)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.filepath_raw = str(path)
    img.file_format = "PNG"
    img.save()
    bpy.data.images.remove(img)


def principled(name: str, color: tuple[float, float, float], *, metallic: float = 0.0,
               roughness: float = 0.5, transmission: float = 0.0, ior: float = 1.45) -> Any:
    mat = bpy.data.materials.new(name)
    mat.use_nodes = True
    bsdf = mat.node_tree.nodes["Principled BSDF"]
    bsdf.inputs["Base Color"].default_value = (*color, 1.0)
    bsdf.inputs["Metallic"].default_value = metallic
    bsdf.inputs["Roughness"].default_value = roughness
    bsdf.inputs["Transmission Weight"].default_value = transmission
    bsdf.inputs["IOR"].default_value = ior
    return mat


def textured(name: str, texture: Path, scale: float) -> Any:
    mat = principled(name, (1.0, 1.0, 1.0), roughness=0.35)
    nodes, links = mat.node_tree.nodes, mat.node_tree.links
    coords = nodes.new("ShaderNodeTexCoord")
    mapping = nodes.new("ShaderNodeMapping")
    mapping.inputs["Scale"].default_value = (scale, scale, scale)
    tex = nodes.new("ShaderNodeTexImage")
    tex.image = bpy.data.images.load(str(texture))
    tex.image.filepath = "//" + TEXTURE  # relative, as a job's files travel
    links.new(coords.outputs["UV"], mapping.inputs["Vector"])
    links.new(mapping.outputs["Vector"], tex.inputs["Vector"])
    links.new(tex.outputs["Color"], nodes["Principled BSDF"].inputs["Base Color"])
    return mat


def keyframes(obj: Any, path: str, values: list[tuple[int, Any]]) -> None:
    for frame, value in values:
        setattr(obj, path, value)
        obj.keyframe_insert(path, frame=frame)


def add(kind: str, name: str, mat: Any, **kwargs: Any) -> Any:
    getattr(bpy.ops.mesh, f"primitive_{kind}_add")(**kwargs)
    obj = bpy.context.object
    obj.name = name
    obj.data.materials.append(mat)
    return obj


def configure(scene: Any, width: int, height: int, samples: int, frames: int) -> None:
    """Resolution, frame range, Cycles and colour management."""
    scene.name = SCENE
    scene.view_layers[0].name = "ViewLayer"
    r = scene.render
    r.engine = "CYCLES"
    r.resolution_x, r.resolution_y, r.resolution_percentage = width, height, 100
    r.fps = 24
    scene.frame_start, scene.frame_end = 1, frames
    scene.frame_current = 1
    r.filepath = "//out/demo_"
    cy = scene.cycles
    cy.device = "CPU"
    cy.samples = samples
    cy.use_adaptive_sampling = False  # tiles stay bit-exact (docs/measured-facts.md R1)
    cy.use_denoising = True  # the buyer denoises each stitched frame once
    cy.seed = 0
    cy.max_bounces = 6
    scene.view_settings.view_transform = "AgX"
    scene.view_settings.look = "AgX - Medium High Contrast"


def add_objects(out: Path, last: int) -> None:
    """The floor, the pedestal and four objects, each moving from frame 1 to ``last``."""
    floor = add("plane", "Floor", textured("Tiles", out / TEXTURE, 3.0), size=14)
    floor.location.z = 0.0

    bpy.ops.mesh.primitive_cylinder_add(radius=0.9, depth=0.5, location=(0.6, 1.2, 0.25),
                                        vertices=48)
    pedestal = bpy.context.object
    pedestal.name = "Pedestal"
    pedestal.data.materials.append(principled("Marble", (0.92, 0.9, 0.86), roughness=0.2))
    pedestal.scale = (0.75, 0.75, 1.0)
    bpy.ops.object.shade_smooth()

    bpy.ops.mesh.primitive_monkey_add(size=1.4, location=(0.6, 1.2, 1.15))
    monkey = bpy.context.object
    monkey.name = "Suzanne"
    mod = monkey.modifiers.new("Smooth", "SUBSURF")
    mod.levels = mod.render_levels = 1
    bpy.ops.object.shade_smooth()
    monkey.data.materials.append(principled("Jade", (0.1, 0.6, 0.35), roughness=0.25))
    keyframes(monkey, "rotation_euler", [(1, (math.radians(-10), 0, math.radians(-35))),
                                         (last, (math.radians(-10), 0, math.radians(35)))])

    torus = add("torus", "Torus", principled("Gold", (1.0, 0.72, 0.3), metallic=1.0,
                                             roughness=0.18),
                location=(-1.7, 0.6, 0.75), major_radius=0.6, minor_radius=0.18)
    bpy.ops.object.shade_smooth()
    keyframes(torus, "rotation_euler", [(1, (math.radians(70), 0, 0)),
                                        (last, (math.radians(70), 0, math.radians(120)))])

    sphere = add("uv_sphere", "Glass", principled("Glass", (0.95, 0.97, 1.0), roughness=0.02,
                                                  transmission=1.0, ior=1.45),
                 radius=0.45, location=(-0.9, -1.2, 0.45), segments=32, ring_count=16)
    bpy.ops.object.shade_smooth()
    keyframes(sphere, "location", [(1, (-1.3, -1.0, 0.45)), (last, (1.6, -1.1, 0.45))])

    cube = add("cube", "Cube", principled("Red", (0.75, 0.08, 0.06), roughness=0.45),
               size=0.7, location=(2.4, 0.2, 0.35))
    bevel = cube.modifiers.new("Bevel", "BEVEL")
    bevel.width, bevel.segments = 0.06, 2
    keyframes(cube, "rotation_euler", [(1, (0, 0, math.radians(10))),
                                       (last, (0, 0, math.radians(80)))])


def add_lights(scene: Any) -> None:
    """A warm area light, a cool sun and a sky-blue world."""
    bpy.ops.object.light_add(type="AREA", location=(-2.5, -2.5, 4.0),
                             rotation=(math.radians(45), 0, math.radians(-45)))
    key = bpy.context.object.data
    key.energy, key.size, key.color = 450.0, 2.5, (1.0, 0.85, 0.7)
    bpy.ops.object.light_add(type="SUN", rotation=(math.radians(50), 0, math.radians(140)))
    sun = bpy.context.object.data
    sun.energy, sun.color, sun.angle = 1.5, (0.75, 0.85, 1.0), math.radians(5)
    world = bpy.data.worlds.new("Sky")
    world.use_nodes = True
    background = world.node_tree.nodes["Background"]
    background.inputs["Color"].default_value = (0.35, 0.5, 0.75, 1.0)
    background.inputs["Strength"].default_value = 0.6
    scene.world = world


def add_camera(scene: Any, last: int) -> None:
    """A 35 mm camera that moves in slightly over the frames."""
    bpy.ops.object.camera_add(location=(0.0, -7.5, 3.4),
                              rotation=(math.radians(68), 0, 0))
    camera = bpy.context.object
    camera.data.lens = 35
    keyframes(camera, "location", [(1, (0.2, -7.5, 3.4)), (last, (-0.2, -6.6, 3.0))])
    scene.camera = camera


def build(out: Path, width: int, height: int, samples: int, frames: int) -> Path:
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.context.preferences.filepaths.save_version = 0  # no .blend1 backups
    write_texture(out / TEXTURE)
    scene = bpy.context.scene
    configure(scene, width, height, samples, frames)
    add_objects(out, frames)
    add_lights(scene)
    add_camera(scene, frames)
    blend = out / "demo.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend), relative_remap=True)
    # The still: a bigger frame from the middle of the motion, to be cut into tiles.
    scene.render.resolution_x, scene.render.resolution_y = width * 3 // 2, height * 3 // 2
    scene.frame_current = min(4, frames)
    still = out / "demo_still.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(still), relative_remap=True)
    return blend


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=180)
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--frames", type=int, default=6, help="animation length (1-N)")
    args = parser.parse_args(argv)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    print(build(out, args.width, args.height, args.samples, args.frames))


if __name__ == "__main__":
    main(sys.argv[1:])
