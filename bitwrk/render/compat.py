"""Every difference between the Blender lines BitWrk supports, in one place (no bpy import).

Tested lines: 4.2 LTS (Python 3.11), 4.3 (Debian's build, Python 3.13), 5.0 (3.11) and
5.1+ (3.13). What changed between them that BitWrk touches:

- the scene's compositor tree: ``scene.compositing_node_group`` (5.0+) replaced
  ``scene.use_nodes`` + ``scene.node_tree`` (4.x);
- ``ImageFormatSettings.media_type`` (5.0+) must be set **before** ``file_format``, or the
  multilayer EXR enum value is not offered; 4.x has no such property;
- the 4.2 ``bpy`` module crashes at exit after a file with Python drivers
  (:func:`close_file`);
- a multilayer EXR: 5.0 writes one part per pass (part ``ViewLayer.Combined`` with
  channels ``ViewLayer.Combined.R`` ...); 4.x writes **one** part holding every channel,
  named ``ViewLayer.Combined.R`` ... as well. :func:`split_passes` turns the 4.x layout
  into the 5.0 one so the rest of the code sees one layout.

Articles name the Blender major.minor (:func:`blender_line`): a 4.2 buyer trades with
4.2 sellers only, because Cycles' noise and sampling change between lines.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

# Channel order of a pass inside Blender's render result: what ``foreach_set`` expects.
_CHANNEL_ORDER = "RGBAXYZWUV"


def blender_line(version: tuple[int, ...]) -> str:
    """``"4.2"`` for ``bpy.app.version == (4, 2, 23)``: the article's Blender field."""
    return f"{version[0]}.{version[1]}"


def compositor_tree(scene: Any) -> Any | None:
    """The scene's compositor node tree, or None when the scene composites nothing."""
    if hasattr(scene, "compositing_node_group"):  # 5.0+
        return scene.compositing_node_group
    if not getattr(scene, "use_nodes", False):  # 4.x: the tree exists but is off
        return None
    return getattr(scene, "node_tree", None)


def composites(scene: Any) -> bool:
    """Whether a render of ``scene`` runs its compositor."""
    return bool(scene.render.use_compositing and compositor_tree(scene) is not None)


def media_type(image_settings: Any) -> str:
    """5.0's ``media_type`` of an output format; derived from ``file_format`` on 4.x."""
    if hasattr(image_settings, "media_type"):
        return str(image_settings.media_type)
    return media_type_for(str(image_settings.file_format))


def media_type_for(file_format: str) -> str:
    if file_format == "OPEN_EXR_MULTILAYER":
        return "MULTI_LAYER_IMAGE"
    if file_format in {"FFMPEG", "AVI_JPEG", "AVI_RAW"}:
        return "VIDEO"
    return "IMAGE"


def format_settings(file_format: str, **settings: Any) -> dict[str, Any]:
    """Attribute values for ``ImageFormatSettings`` in the order they must be set."""
    return {"media_type": media_type_for(file_format), "file_format": file_format, **settings}


def assign(owner: Any, **values: Any) -> None:
    """Write only the settings of ``owner`` (a bpy struct) that differ, floats compared as
    the float32 Blender stores. A setting written again, even unchanged, tags the scene:
    Cycles then re-syncs every object before the next render (docs/measured-facts.md R7)
    and may rebuild its device, which a warm worker's next tile would pay for nothing."""
    for name, value in values.items():
        current = getattr(owner, name)
        if isinstance(value, float) and isinstance(current, float):
            same = _float32(value) == _float32(current)
        else:
            same = current == value
        if not same:
            setattr(owner, name, value)


def _float32(value: float) -> float:
    return float(struct.unpack("f", struct.pack("f", value))[0])


def set_output_format(image_settings: Any, file_format: str, **settings: Any) -> None:
    """Set an output format on any line: ``media_type`` first where it exists (only the
    values that differ are written, :func:`assign`)."""
    for key, value in format_settings(file_format, **settings).items():
        if key == "media_type" and not hasattr(image_settings, "media_type"):
            continue
        assign(image_settings, **{key: value})


@contextmanager
def output_format(image_settings: Any, file_format: str, **settings: Any) -> Iterator[None]:
    """Set an output format for a while; the previous values are put back after."""
    keys = [k for k in format_settings(file_format, **settings)
            if hasattr(image_settings, k)]
    saved = {k: getattr(image_settings, k) for k in keys}
    try:
        set_output_format(image_settings, file_format, **settings)
        yield
    finally:
        for key, value in saved.items():  # media_type first again: it gates file_format
            with suppress(TypeError, ValueError, AttributeError):
                setattr(image_settings, key, value)


def close_file(bpy: Any) -> None:
    """Load an empty file before a bpy process exits.

    The 4.2 ``bpy`` module segfaults at interpreter exit when the open file has Python
    drivers (even blocked ones); with an empty file loaded it exits cleanly. Harmless on
    every other line, so it is not gated on the version.
    """
    bpy.ops.wm.read_factory_settings(use_empty=True)


def pass_of(channel: str) -> tuple[str, str] | None:
    """``("ViewLayer.Combined", "R")`` for ``"ViewLayer.Combined.R"``; None for a channel
    that belongs to no layer (``R`` of a plain image)."""
    layer_pass, dot, chan = channel.rpartition(".")
    if not dot or "." not in layer_pass:
        return None
    return layer_pass, chan


def _channel_key(chan: str) -> tuple[int, str]:
    index = _CHANNEL_ORDER.find(chan) if len(chan) == 1 else -1
    return (index if index >= 0 else len(_CHANNEL_ORDER), chan)


def split_groups(part_name: str, channels: list[str]) -> dict[str, list[int]] | None:
    """For one part holding several passes (Blender 4.x, whose single part has no name):
    pass name -> channel indices in Blender's order (R G B A, X Y Z ...). None when the
    part is one pass, named after it and in order already (5.0's layout)."""
    groups: dict[str, list[tuple[str, int]]] = {}
    for index, channel in enumerate(channels):
        found = pass_of(channel)
        if found is None:
            return None
        groups.setdefault(found[0], []).append((found[1], index))
    if list(groups) == [part_name] and not _unordered(groups[part_name]):
        return None
    return {name: [i for _c, i in sorted(g, key=lambda ci: _channel_key(ci[0]))]
            for name, g in groups.items()}


def _unordered(group: list[tuple[str, int]]) -> bool:
    return [c for c, _i in group] != [c for c, _i in sorted(group,
                                                          key=lambda ci: _channel_key(ci[0]))]


__all__ = ["assign", "blender_line", "close_file", "compositor_tree", "format_settings",
           "media_type", "media_type_for", "output_format", "set_output_format", "split_groups"]
