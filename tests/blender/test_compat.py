"""The version differences in :mod:`bitwrk.render.compat`: Blender 4.x's one-part multilayer
EXR reads as 5.0's one part per pass; output formats set on either line; article lines."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from bitwrk.render import compat, exr
from tests.blender.conftest import needs_bpy

CHANNELS_43 = [  # as Blender 4.3 writes them: one part, sorted names, no part name
    "ViewLayer.Combined.A", "ViewLayer.Combined.B", "ViewLayer.Combined.G",
    "ViewLayer.Combined.R", "ViewLayer.Denoising Depth.Z", "ViewLayer.Denoising Normal.X",
    "ViewLayer.Denoising Normal.Y", "ViewLayer.Denoising Normal.Z"]


def test_one_part_of_several_passes_splits_in_blenders_channel_order() -> None:
    groups = compat.split_groups("", CHANNELS_43)
    assert groups == {"ViewLayer.Combined": [3, 2, 1, 0], "ViewLayer.Denoising Depth": [4],
                      "ViewLayer.Denoising Normal": [5, 6, 7]}


def test_a_part_per_pass_stays_as_it_is() -> None:
    assert compat.split_groups("ViewLayer.Combined", [f"ViewLayer.Combined.{c}"
                                                      for c in "RGBA"]) is None
    assert compat.split_groups("", ["R", "G", "B", "A"]) is None  # a plain image
    # a lone pass without its part name (a 4.x file with only Combined) gets the name
    assert compat.split_groups("", [f"ViewLayer.Combined.{c}" for c in "RGBA"]) == {
        "ViewLayer.Combined": [0, 1, 2, 3]}


def test_output_format_sets_media_type_first_only_where_it_exists() -> None:
    set_order: list[str] = []

    class Settings50:
        media_type, file_format, color_depth = "IMAGE", "PNG", "8"

        def __setattr__(self, key: str, value: object) -> None:
            set_order.append(key)
            object.__setattr__(self, key, value)

    ims = Settings50()
    with compat.output_format(ims, "OPEN_EXR_MULTILAYER", color_depth="32"):
        assert (ims.media_type, ims.file_format, ims.color_depth) == (
            "MULTI_LAYER_IMAGE", "OPEN_EXR_MULTILAYER", "32")
    assert (ims.media_type, ims.file_format, ims.color_depth) == ("IMAGE", "PNG", "8")
    assert set_order[:2] == ["media_type", "file_format"]
    old = SimpleNamespace(file_format="PNG", color_depth="8")  # 4.x: no media_type
    compat.set_output_format(old, "OPEN_EXR_MULTILAYER", color_depth="32")
    assert not hasattr(old, "media_type") and old.file_format == "OPEN_EXR_MULTILAYER"
    assert compat.media_type(old) == "MULTI_LAYER_IMAGE"


def test_compositor_tree_on_both_lines() -> None:
    tree = object()
    assert compat.compositor_tree(SimpleNamespace(compositing_node_group=tree)) is tree
    assert compat.compositor_tree(SimpleNamespace(compositing_node_group=None)) is None
    assert compat.compositor_tree(SimpleNamespace(use_nodes=True, node_tree=tree)) is tree
    assert compat.compositor_tree(SimpleNamespace(use_nodes=False, node_tree=tree)) is None
    assert compat.blender_line((4, 2, 23)) == "4.2" and compat.blender_line((5, 1, 0)) == "5.1"


@needs_bpy
@pytest.mark.parametrize("layout", ["one part (4.x)", "part per pass (5.0)"])
def test_both_exr_layouts_read_the_same(tmp_path: Path, layout: str) -> None:
    io = exr.oiio()
    rng = np.random.default_rng(7)
    combined = rng.random((4, 6, 4), dtype=np.float32)
    normal = rng.random((4, 6, 3), dtype=np.float32)
    path = tmp_path / "tile.exr"
    if layout.startswith("one"):  # write it as 4.x does: every channel in one part
        names = CHANNELS_43[:4] + CHANNELS_43[5:]
        data = np.concatenate([combined[:, :, ::-1], normal], axis=2)  # A B G R, X Y Z
        spec = io.ImageSpec(6, 4, 7, "float")
        spec.channelnames = tuple(names)
        out = io.ImageOutput.create(str(path))
        assert out.open(str(path), spec) and out.write_image(np.ascontiguousarray(data[::-1]))
        out.close()
    else:
        exr.write(path, exr.MultiLayer(6, 4, [
            exr.Part("ViewLayer.Combined", [f"ViewLayer.Combined.{c}" for c in "RGBA"],
                     combined),
            exr.Part("ViewLayer.Denoising Normal",
                     [f"ViewLayer.Denoising Normal.{c}" for c in "XYZ"], normal)]))
    image = exr.read(path)
    assert [p.name for p in image.parts] == ["ViewLayer.Combined",
                                             "ViewLayer.Denoising Normal"]
    assert image.part("ViewLayer.Combined").channels[0] == "ViewLayer.Combined.R"
    assert np.array_equal(image.part("ViewLayer.Combined").pixels, combined)
    assert np.array_equal(image.part("ViewLayer.Denoising Normal").pixels, normal)
