"""Files a scene reads while it is evaluated, checked before rendering (runs under bpy).

``bpy.utils.blend_paths()`` lists the paths a .blend *stores* (images, libraries, fonts,
caches). Geometry nodes can also read files at evaluation time through importer nodes
(Import CSV / OBJ / PLY / STL / Text / VDB in Blender 4.3–5.x, all ``GeometryNodeImport*``)
whose ``Path`` input may be computed by string nodes — a path no listing shows. Bake
directories of geometry-node and fluid modifiers are read at evaluation too.

Rule: every such path must be a constant (an unlinked socket) that resolves inside the
job's folder; anything computed is refused. The OS sandbox is the real wall (a path
outside the job does not exist there); this check gives the buyer a clear reason instead
of a silently different image.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..render.errors import RenderError

PATH_SOCKET = "NodeSocketStringFilePath"
IMPORT_PREFIX = "GeometryNodeImport"
EMBEDDED_TREE_OWNERS = ("materials", "worlds", "lights", "textures", "linestyles", "scenes")


class ComputedPathRefused(RenderError):
    """The scene reads a file whose path is computed, or lies outside the job."""

    code = "computed_path_refused"


def node_trees(bpy: Any) -> Iterator[Any]:
    """Every node tree of the file: node groups and the trees embedded in data-blocks."""
    yield from bpy.data.node_groups
    for owner in EMBEDDED_TREE_OWNERS:
        for block in getattr(bpy.data, owner, ()):
            tree = getattr(block, "node_tree", None)
            if tree is not None:
                yield tree


def inside(path: str, root: str) -> bool:
    real = os.path.realpath(path)
    return os.path.commonpath([real, root]) == root


def resolve(bpy: Any, value: str, root: str) -> bool:
    """True when the constant path ``value`` names a file inside ``root``.

    ``//`` is relative to the .blend; any other relative path would depend on the
    worker's working directory, so it must name the job folder from there too.
    """
    if value.startswith("//"):
        return inside(bpy.path.abspath(value), root)
    if not os.path.isabs(value):
        return inside(os.path.join(root, value), root) and inside(os.path.abspath(value), root)
    return inside(value, root)


def node_problems(bpy: Any, root: str) -> list[str]:
    problems = []
    for tree in node_trees(bpy):
        for node in tree.nodes:
            reads = node.bl_idname.startswith(IMPORT_PREFIX)
            for socket in node.inputs:
                # An importer's "Path" counts even where a version types it as a plain string.
                if socket.bl_idname != PATH_SOCKET and not (reads and socket.name == "Path"):
                    continue
                where = f"{tree.name}/{node.name}.{socket.name}"
                if socket.is_linked:
                    problems.append(f"{where}: path computed at render time")
                elif socket.default_value and not resolve(bpy, socket.default_value, root):
                    problems.append(f"{where}: {socket.default_value!r} is outside the job")
    return problems


def bake_paths(bpy: Any) -> Iterator[tuple[str, str]]:
    """(where, path) of every cache directory a modifier reads while evaluated."""
    for ob in bpy.data.objects:
        for md in ob.modifiers:
            if md.type == "NODES":
                yield f"{ob.name}/{md.name}", md.bake_directory
                for bake in md.bakes:
                    if getattr(bake, "use_custom_path", False):
                        yield f"{ob.name}/{md.name} bake", bake.directory
            elif md.type == "FLUID" and md.fluid_type == "DOMAIN":
                yield f"{ob.name}/{md.name}", md.domain_settings.cache_directory


def check_evaluated_paths(bpy: Any, root: Path) -> None:
    """Raise :class:`ComputedPathRefused` listing every offending node or cache path."""
    root_real = os.path.realpath(root)
    problems = node_problems(bpy, root_real)
    for where, path in bake_paths(bpy):
        if path and not resolve(bpy, path, root_real):
            problems.append(f"{where}: cache {path!r} is outside the job")
    if problems:
        raise ComputedPathRefused("the scene reads files at render time from paths that are "
                                  "computed or outside the job; refused",
                                  problems=problems[:20])
