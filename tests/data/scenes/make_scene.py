"""Build the bundled test scene (and, on request, a hostile one) with bpy.

``python tests/data/scenes/make_scene.py OUT_DIR [--evil MARKER_DIR]`` writes
``OUT_DIR/scene.blend`` and its image texture ``OUT_DIR/textures/checker.png`` (referenced
relatively, as a packed job would carry it). The scene is tiny on purpose: 96x64 px,
Cycles on the CPU, 16 samples, no adaptive sampling, a few objects with materials, an
image texture and motion over frames 1-4, so the render tests run in seconds.

With ``--evil`` it also writes ``OUT_DIR/evil.blend``: the same scene plus everything a
hostile buyer could try to run on a seller — a text block registered to run on load, a
scripted driver that writes a file, and handlers — each of which would create a file in
MARKER_DIR if Python auto-execution were on — and ``OUT_DIR/leaky/leaky.blend``, whose
texture is an absolute path outside its own directory (a seller must refuse to read it).
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

# Nothing of Blender's user state may land under ~ while building.
if not (os.environ.get("BLENDER_USER_RESOURCES") and os.environ.get("XDG_CACHE_HOME")):
    _SCRATCH = tempfile.mkdtemp(prefix="bitwrk-make-scene-")
    atexit.register(shutil.rmtree, _SCRATCH, True)
    os.environ.setdefault("BLENDER_USER_RESOURCES", os.path.join(_SCRATCH, "user"))
    os.environ.setdefault("XDG_CACHE_HOME", os.path.join(_SCRATCH, "cache"))

import bpy

WIDTH, HEIGHT, SAMPLES = 96, 64, 16
TEXTURE = "textures/checker.png"


def write_checker(path: Path, size: int = 32) -> None:
    img = bpy.data.images.new("checker", size, size, alpha=False)
    pixels = []
    for y in range(size):
        for x in range(size):
            on = ((x // 4) + (y // 4)) % 2 == 0
            pixels += [0.9, 0.8, 0.2, 1.0] if on else [0.1, 0.3, 0.8, 1.0]
    img.pixels.foreach_set(pixels)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.filepath_raw = str(path)
    img.file_format = "PNG"
    img.save()
    bpy.data.images.remove(img)


def material(name: str, color: tuple[float, float, float], metallic: float = 0.0,
             roughness: float = 0.5) -> object:
    mat = bpy.data.materials.new(name)
    mat.use_nodes = True
    bsdf = mat.node_tree.nodes["Principled BSDF"]
    bsdf.inputs["Base Color"].default_value = (*color, 1.0)
    bsdf.inputs["Metallic"].default_value = metallic
    bsdf.inputs["Roughness"].default_value = roughness
    return mat


def textured_material(texture: Path) -> object:
    mat = material("Floor", (1.0, 1.0, 1.0))
    nodes, links = mat.node_tree.nodes, mat.node_tree.links
    tex = nodes.new("ShaderNodeTexImage")
    tex.image = bpy.data.images.load(str(texture))
    tex.image.filepath = "//" + TEXTURE  # relative, as a job's files travel
    links.new(tex.outputs["Color"], nodes["Principled BSDF"].inputs["Base Color"])
    return mat


def build(out: Path) -> None:
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.context.preferences.filepaths.save_version = 0  # no scene.blend1 backups
    write_checker(out / TEXTURE)
    scene = bpy.context.scene
    scene.name = "Shot"
    scene.view_layers[0].name = "ViewLayer"
    r = scene.render
    r.engine = "CYCLES"
    r.resolution_x, r.resolution_y, r.resolution_percentage = WIDTH * 2, HEIGHT * 2, 50
    r.fps = 24
    scene.frame_start, scene.frame_end = 1, 4
    r.filepath = "//out/shot_"
    cy = scene.cycles
    cy.device = "CPU"
    cy.samples = SAMPLES
    cy.use_adaptive_sampling = False
    cy.use_denoising = False
    cy.seed = 0
    cy.max_bounces = 6
    scene.view_settings.view_transform = "AgX"

    bpy.ops.mesh.primitive_plane_add(size=8)
    floor = bpy.context.object
    floor.name = "Floor"
    floor.data.materials.append(textured_material(out / TEXTURE))

    bpy.ops.mesh.primitive_cube_add(size=1.2, location=(-1.0, 0.0, 0.6))
    cube = bpy.context.object
    cube.name = "Cube"
    cube.data.materials.append(material("Red", (0.8, 0.1, 0.1)))
    for frame, x in ((1, -1.4), (4, 0.4)):
        cube.location.x = x
        cube.rotation_euler.z = math.radians(15 * frame)
        cube.keyframe_insert("location", index=0, frame=frame)
        cube.keyframe_insert("rotation_euler", index=2, frame=frame)

    bpy.ops.mesh.primitive_uv_sphere_add(radius=0.6, location=(1.2, 0.6, 0.6), segments=24,
                                         ring_count=12)
    sphere = bpy.context.object
    sphere.name = "Sphere"
    bpy.ops.object.shade_smooth()
    sphere.data.materials.append(material("Chrome", (0.9, 0.9, 0.9), metallic=1.0,
                                          roughness=0.15))

    bpy.ops.object.light_add(type="SUN", rotation=(math.radians(40), 0, math.radians(30)))
    bpy.context.object.data.energy = 3.0
    world = bpy.data.worlds.new("World")
    world.color = (0.05, 0.06, 0.08)
    scene.world = world

    bpy.ops.object.camera_add(location=(0.0, -6.0, 3.2), rotation=(math.radians(65), 0, 0))
    scene.camera = bpy.context.object
    bpy.ops.wm.save_as_mainfile(filepath=str(out / "scene.blend"), relative_remap=True)


PAYLOAD = '''
import bpy, pathlib
MARKERS = pathlib.Path({markers!r})
def bitwrk_payload(*args):
    (MARKERS / "driver_function").touch()
    return 0.0
(MARKERS / "text_on_load").touch()
bpy.app.driver_namespace["bitwrk_payload"] = bitwrk_payload
@bpy.app.handlers.persistent
def bitwrk_handler(*args):
    (MARKERS / "handler").touch()
for handlers in (bpy.app.handlers.load_post, bpy.app.handlers.render_pre,
                 bpy.app.handlers.frame_change_pre):
    handlers.append(bitwrk_handler)
'''


def add_payload(markers: Path) -> None:
    """A text registered to run on load, a scripted driver and an inline driver."""
    text = bpy.data.texts.new("bitwrk_payload.py")
    text.write(PAYLOAD.format(markers=str(markers)))
    text.use_module = True  # "Register": runs on load when auto-execution is on
    cube = bpy.data.objects["Cube"]
    for index, expression in (
        (0, "bitwrk_payload()"),
        (1, f"__import__('pathlib').Path({str(markers / 'driver_inline')!r}).touch() or 0.0"),
    ):
        fcurve = cube.driver_add("scale", index)
        fcurve.driver.type = "SCRIPTED"
        fcurve.driver.expression = expression


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path)
    parser.add_argument("--evil", type=Path, metavar="MARKER_DIR")
    args = parser.parse_args(argv)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    build(out)
    if args.evil is not None:
        add_payload(args.evil.resolve())
        bpy.ops.wm.save_as_mainfile(filepath=str(out / "evil.blend"), relative_remap=True)
        bpy.ops.wm.read_factory_settings(use_empty=True)
        build(out)
        bpy.data.images[Path(TEXTURE).name].filepath = str(out / TEXTURE)  # absolute
        (out / "leaky").mkdir(exist_ok=True)
        bpy.ops.wm.save_as_mainfile(filepath=str(out / "leaky" / "leaky.blend"),
                                    relative_remap=False)
    print(out / "scene.blend")


if __name__ == "__main__":
    main(sys.argv[1:])
