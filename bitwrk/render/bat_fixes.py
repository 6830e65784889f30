"""Fixes for blender-asset-tracer (BAT) 1.23 with Blender 5.0 files, applied for the
length of one BAT run (:func:`bat_session`); docs/measured-facts.md P1.

- BAT missed the node-tree images of linked libraries (:func:`expand_nodetree_id`);
- BAT crashed on Geometry Nodes modifiers without bakes (:func:`walk_nodes_modifier`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from blender_asset_tracer import blendfile, cdefs
from blender_asset_tracer.trace import expanders, modifier_walkers, result

__all__ = ["bat_session", "expand_nodetree_id", "walk_nodes_modifier"]


def expand_nodetree_id(
        block: blendfile.BlendFileBlock) -> Iterator[blendfile.BlendFileBlock]:
    """The node tree of a material, world, light, texture or scene, and what it uses.

    BAT 1.20-1.23 read ``compositing_node_group`` for every ID type in Blender >= 5.0
    files, but only Scene has that field (Blender commit bd61e69be5a7 moved the
    compositor there); materials, worlds, lights and textures still keep ``nodetree``.
    So the images used by node trees of *linked* data were never found (the main file's
    images are found anyway, as BAT scans all of its blocks). docs/measured-facts.md P1.
    """
    field = b"nodetree"
    if block.code == b"SC" and block.dna_type.has_field(b"compositing_node_group"):
        field = b"compositing_node_group"
    ntree = block.get_pointer(field, None)
    if ntree is not None:
        yield from expanders._expand_generic_nodetree(ntree)


_BAT_NODES_WALKER = modifier_walkers.modifier_handlers[cdefs.eModifierType_Nodes]


def walk_nodes_modifier(ctx: modifier_walkers.ModifierContext,
                         modifier: blendfile.BlendFileBlock,
                         block_name: bytes) -> Iterator[result.BlockUsage]:
    """BAT's Geometry Nodes modifier walker, minus its crash on a modifier without bakes.

    Blender 5.0 saves such a modifier with ``bakes_num == 0`` but a non-null ``bakes``
    pointer to nothing written; BAT 1.23 follows it and raises SegmentationFault, so any
    scene with a plain Geometry Nodes modifier could not be traced at all.
    """
    if modifier.get(b"bakes_num", default=0):
        yield from _BAT_NODES_WALKER(ctx, modifier, block_name)


# BAT keeps module-level state: the tables we patch and a cache of open .blend files
# that would serve stale data to the next run. One BAT run at a time, then.
_BAT_LOCK = threading.RLock()


@contextmanager
def bat_session() -> Iterator[None]:
    """Run BAT with the fixes applied and a fresh file cache; restores all afterwards."""
    with _BAT_LOCK:
        if expanders._expand_generic_nodetree_id is expand_nodetree_id:  # nested
            yield
            return
        handlers = modifier_walkers.modifier_handlers
        original = expanders._expand_generic_nodetree_id, handlers[cdefs.eModifierType_Nodes]
        expanders._expand_generic_nodetree_id = expand_nodetree_id
        handlers[cdefs.eModifierType_Nodes] = walk_nodes_modifier
        blendfile.close_all_cached()
        try:
            yield
        finally:
            blendfile.close_all_cached()
            expanders._expand_generic_nodetree_id = original[0]
            handlers[cdefs.eModifierType_Nodes] = original[1]
