"""Build a small project with every kind of dependency, or inspect a packed one (runs under bpy).

``python tests/data/scenes/packing_project.py make BASE`` writes::

    BASE/proj/scenes/main.blend   zstd-compressed, as many artists save them; it uses
      IM Wood      //../textures/wood.png         relative image
      IM Outside   BASE/outside/abs_tex.png        absolute path outside the project
      IM Seq       //../seq/frame_0001.png         5-frame image sequence
      IM Missing   //../textures/missing.png       does not exist
      IM MissingAbs BASE/outside/gone.png           does not exist, absolute
      IM Colon, Device, Upper  //../textures/a:b.png, aux.png, WOOD.png: names a seller
                   refuses, or that clash with wood.png on a case-insensitive disk
      IM Packed    packed into the .blend          (must stay packed, not be traced)
      LI lib.blend //../libs/lib.blend             object LibCube linked from it
      OB Plane     has a Geometry Nodes modifier without bakes
      VF, SO, MC, VO, IES: a font, a sound, a movie clip (3 frames), an OpenVDB volume
      and an IES light profile, small files under proj/
    BASE/proj/libs/lib.blend      LibCube -> material LibMat -> //tex/lib_tex.png
                                  (found only through the library's node tree)

``python tests/data/scenes/packing_project.py inspect BLEND ROOT`` opens BLEND with Python
auto-execution off and prints, as JSON on the last line, what each image, library and
external file resolves to, and whether a seller would accept the file as a job rooted at
ROOT (``bitwrk.seller.tile.check_external_files``).
"""

from __future__ import annotations

import atexit
import json
import math
import os
import shutil
import struct
import sys
import tempfile
import wave
from pathlib import Path
from typing import Any

# Nothing of Blender's user state may land under ~.
if not (os.environ.get("BLENDER_USER_RESOURCES") and os.environ.get("XDG_CACHE_HOME")):
    _SCRATCH = tempfile.mkdtemp(prefix="bitwrk-packing-project-")
    atexit.register(shutil.rmtree, _SCRATCH, True)
    os.environ.setdefault("BLENDER_USER_RESOURCES", os.path.join(_SCRATCH, "user"))
    os.environ.setdefault("XDG_CACHE_HOME", os.path.join(_SCRATCH, "cache"))

import bpy

SEQ_FRAMES = 5
IES_TEXT = """IESNA:LM-63-2002
TILT=NONE
1 1000 1 3 1 1 2 0.1 0.1 0.0
1.0 1.0 100
0 45 90
0
100 80 20
"""


def write_png(path: Path, color: tuple[float, float, float], size: int = 8) -> None:
    img = bpy.data.images.new(path.stem, size, size, alpha=False)
    img.pixels.foreach_set([*color, 1.0] * (size * size))
    path.parent.mkdir(parents=True, exist_ok=True)
    img.filepath_raw = str(path)
    img.file_format = "PNG"
    img.save()
    bpy.data.images.remove(img)


def write_wav(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(b"".join(struct.pack("<h", int(8000 * math.sin(i / 5)))
                                 for i in range(800)))


def image_material(name: str, images: list[Any]) -> Any:
    mat = bpy.data.materials.new(name)  # has a node tree from Blender 5.0 on
    mat.use_nodes = True  # 4.x: creates it (Principled BSDF + output)
    nodes, links = mat.node_tree.nodes, mat.node_tree.links
    for i, image in enumerate(images):
        node = nodes.new("ShaderNodeTexImage")
        node.image = image
        node.location = (-300, -300 * i)
        if i == 0:
            links.new(node.outputs["Color"], nodes["Principled BSDF"].inputs["Base Color"])
    return mat


def load_image(path: Path, filepath: str, source: str = "FILE") -> Any:
    image = bpy.data.images.load(str(path))
    image.source = source
    image.filepath = filepath
    return image


def reset() -> None:
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.context.preferences.filepaths.save_version = 0  # no .blend1 backups


def make_library(proj: Path) -> None:
    reset()
    write_png(proj / "libs/tex/lib_tex.png", (0.2, 0.9, 0.2))
    bpy.ops.mesh.primitive_cube_add(size=1.0)
    cube = bpy.context.object
    cube.name = "LibCube"
    tex = load_image(proj / "libs/tex/lib_tex.png", "//tex/lib_tex.png")
    cube.data.materials.append(image_material("LibMat", [tex]))
    bpy.ops.wm.save_as_mainfile(filepath=str(proj / "libs/lib.blend"))


def make_assets(base: Path, proj: Path) -> None:
    write_png(proj / "textures/wood.png", (0.6, 0.4, 0.2))
    # Names a seller refuses (":" and a Windows device name) or that clash ignoring case.
    for name in ("a:b.png", "aux.png", "WOOD.png"):
        write_png(proj / "textures" / name, (0.3, 0.3, 0.3))
    write_png(base / "outside/abs_tex.png", (0.9, 0.1, 0.1))
    for frame in range(1, SEQ_FRAMES + 1):
        write_png(proj / f"seq/frame_{frame:04d}.png", (frame / SEQ_FRAMES, 0.0, 0.0))
    for frame in range(1, 4):
        write_png(proj / f"clips/shot_{frame:04d}.png", (0.1, 0.1, frame / 3))
    write_wav(proj / "audio/beep.wav")
    (proj / "fonts").mkdir(parents=True)
    fonts = Path(bpy.utils.system_resource("DATAFILES", path="fonts"))
    shutil.copyfile(fonts / "NotoSansHebrew-Regular.woff2", proj / "fonts/font.woff2")
    (proj / "vdb").mkdir()
    (proj / "vdb/smoke.vdb").write_bytes(b"not really a VDB; only the path is traced")
    (proj / "ies").mkdir()
    (proj / "ies/lamp.ies").write_text(IES_TEXT)


def make_main(base: Path, proj: Path) -> None:
    reset()
    main = proj / "scenes/main.blend"
    main.parent.mkdir(parents=True)
    bpy.ops.wm.save_as_mainfile(filepath=str(main))  # so that "//" means scenes/
    scene = bpy.context.scene
    bpy.ops.mesh.primitive_plane_add(size=4)
    plane = bpy.context.object
    write_png(base / "packed.png", (1.0, 1.0, 1.0))
    packed = bpy.data.images.load(str(base / "packed.png"))
    packed.name = "Packed"
    packed.pack()
    (base / "packed.png").unlink()
    images = [
        load_image(proj / "textures/wood.png", "//../textures/wood.png"),
        load_image(base / "outside/abs_tex.png", str(base / "outside/abs_tex.png")),
        load_image(proj / "seq/frame_0001.png", "//../seq/frame_0001.png", "SEQUENCE"),
        load_image(proj / "textures/wood.png", "//../textures/missing.png"),
        load_image(proj / "textures/wood.png", str(base / "outside/gone.png")),
        load_image(proj / "textures/a:b.png", "//../textures/a:b.png"),
        load_image(proj / "textures/aux.png", "//../textures/aux.png"),
        load_image(proj / "textures/WOOD.png", "//../textures/WOOD.png"),
        packed,
    ]
    names = ("Wood", "Outside", "Seq", "Missing", "MissingAbs", "Colon", "Device", "Upper")
    for image, name in zip(images, names, strict=False):
        image.name = name
    plane.data.materials.append(image_material("Main", images))

    with bpy.data.libraries.load(str(proj / "libs/lib.blend"), link=True,
                                 relative=True) as (_src, dst):
        dst.objects = ["LibCube"]
    scene.collection.objects.link(dst.objects[0])

    bpy.ops.object.text_add()
    bpy.context.object.data.font = bpy.data.fonts.load(str(proj / "fonts/font.woff2"))
    bpy.context.object.data.font.filepath = "//../fonts/font.woff2"
    sound = bpy.data.sounds.load(str(proj / "audio/beep.wav"))
    sound.filepath = "//../audio/beep.wav"
    sound.use_fake_user = True
    clip = bpy.data.movieclips.load(str(proj / "clips/shot_0001.png"))  # a 3-frame sequence
    clip.filepath = "//../clips/shot_0001.png"
    clip.use_fake_user = True
    volume = bpy.data.volumes.new("Smoke")
    volume.filepath = "//../vdb/smoke.vdb"
    scene.collection.objects.link(bpy.data.objects.new("Smoke", volume))

    # A Geometry Nodes modifier without bakes (BAT 1.23 crashed on those).
    group = bpy.data.node_groups.new("PassThrough", "GeometryNodeTree")
    for in_out in ("INPUT", "OUTPUT"):
        group.interface.new_socket("Geometry", in_out=in_out,
                                   socket_type="NodeSocketGeometry")
    group.links.new(group.nodes.new("NodeGroupInput").outputs[0],
                    group.nodes.new("NodeGroupOutput").inputs[0])
    plane.modifiers.new("Nodes", "NODES").node_group = group

    light = bpy.data.lights.new("Lamp", "POINT")
    light.use_nodes = True
    ies = light.node_tree.nodes.new("ShaderNodeTexIES")
    ies.mode = "EXTERNAL"
    ies.filepath = "//../ies/lamp.ies"
    scene.collection.objects.link(bpy.data.objects.new("Lamp", light))
    bpy.ops.wm.save_as_mainfile(filepath=str(main), compress=True, relative_remap=False)


def make(base: Path) -> None:
    proj = base / "proj"
    make_library(proj)
    make_assets(base, proj)
    make_main(base, proj)


def image_info(image: Any) -> dict[str, Any]:
    path = bpy.path.abspath(image.filepath, library=image.library)
    info = {"source": image.source, "packed": image.packed_file is not None,
            "library": image.library.filepath if image.library else None,
            "path": os.path.realpath(path), "exists": os.path.isfile(path)}
    if info["exists"] and image.source == "FILE":
        image.reload()
        info["size"] = list(image.size)
        info["has_data"] = image.has_data
    elif info["packed"]:
        info["size"] = list(image.size)
        info["has_data"] = image.has_data
    return info


def inspect(blend: Path, root: Path) -> dict[str, Any]:
    from bitwrk.render.errors import RenderError
    from bitwrk.render.scene import open_safely
    from bitwrk.seller.tile import check_external_files

    open_safely(blend)
    try:
        check_external_files(bpy, root)
        refused = None
    except RenderError as exc:
        refused = exc.to_json()
    paths = bpy.utils.blend_paths(absolute=True, packed=False, local=False)
    return {
        "images": {img.name: image_info(img) for img in bpy.data.images},
        "libraries": {lib.name: {"path": os.path.realpath(bpy.path.abspath(lib.filepath)),
                                 "missing": lib.is_missing} for lib in bpy.data.libraries},
        "missing_ids": sorted(ob.name for ob in bpy.data.objects if ob.is_missing),
        "paths": sorted({os.path.realpath(p): os.path.exists(p) for p in paths}.items()),
        "refused": refused,
    }


def main(argv: list[str]) -> int:
    if argv[:1] == ["make"]:
        make(Path(argv[1]).resolve())
        return 0
    if argv[:1] == ["inspect"]:
        info = inspect(Path(argv[1]).resolve(), Path(argv[2]).resolve())
        sys.stdout.flush()
        print(json.dumps(info))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
