"""Packing a scene with blender-asset-tracer: every dependency found, packed and resolvable.

The project comes from ``tests/data/scenes/packing_project.py`` (relative, absolute,
sequence, linked-library, missing, font, sound, clip, volume and IES dependencies). The
oracle for "the pack works" is Blender itself: the packed .blend is opened by bpy with
the originals moved away, and a seller's own check (``check_external_files``) runs on it.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from bitwrk.cas.manifest import JobManifest
from bitwrk.cas.paths import check_names
from bitwrk.cas.store import ChunkStore
from bitwrk.render import bat_fixes, pack_names, packing
from bitwrk.render.packing import MissingFiles, PackError, PackResult
from tests.blender.conftest import BLENDER_LINE, HAVE_BPY, ROOT, run_bpy

SCRIPT = ROOT / "tests/data/scenes/packing_project.py"
OUT = packing.OUTSIDE_DIR
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"

# name in the pack -> the original, relative to the project's base folder
EXPECTED = {
    "scenes/main.blend": "proj/scenes/main.blend",
    "libs/lib.blend": "proj/libs/lib.blend",
    "libs/tex/lib_tex.png": "proj/libs/tex/lib_tex.png",  # only via the library's node tree
    "textures/WOOD.png": "proj/textures/WOOD.png",
    "textures/a_b.png": "proj/textures/a:b.png",  # ":" is refused by sellers
    "textures/_aux.png": "proj/textures/aux.png",  # a Windows device name
    **{f"seq/frame_{i:04d}.png": f"proj/seq/frame_{i:04d}.png" for i in range(1, 6)},
    "audio/beep.wav": "proj/audio/beep.wav",
    **{f"clips/shot_{i:04d}.png": f"proj/clips/shot_{i:04d}.png" for i in range(1, 4)},
    "fonts/font.woff2": "proj/fonts/font.woff2",
    "vdb/smoke.vdb": "proj/vdb/smoke.vdb",
    "ies/lamp.ies": "proj/ies/lamp.ies",
}
# wood.png clashes with WOOD.png ignoring case; abs_tex.png is outside the project
MOVED = {"wood.png": "proj/textures/wood.png", "abs_tex.png": "outside/abs_tex.png"}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not HAVE_BPY:
        pytest.skip("the bpy module is not installed")
    base = tmp_path_factory.mktemp("packing")
    run_bpy([str(SCRIPT), "make", str(base / "project")], base)
    return base / "project"


@pytest.fixture(scope="module")
def packed(project: Path, tmp_path_factory: pytest.TempPathFactory) -> PackResult:
    return packing.pack(project / "proj/scenes/main.blend",
                        tmp_path_factory.mktemp("packed") / "job")


@contextmanager
def moved_away(folder: Path) -> Iterator[None]:
    away = folder.with_name(folder.name + "-away")
    folder.rename(away)
    try:
        yield
    finally:
        away.rename(folder)


def originals(result: PackResult, project: Path) -> dict[str, Path]:
    """Name in the pack -> original file, for every file of the project's scene."""
    found = {name: project / path for name, path in EXPECTED.items()}
    for name in result.files:
        if name.startswith(OUT + "/"):
            found[name] = project / MOVED[name.rsplit("/", 1)[1]]
    return found


def test_every_dependency_is_packed(packed: PackResult, project: Path) -> None:
    assert packed.blend == "scenes/main.blend"
    assert set(EXPECTED) < set(packed.files)
    outside = sorted(n.rsplit("/", 1)[1] for n in packed.files if n not in EXPECTED)
    assert outside == sorted(MOVED)
    assert all(n.startswith(OUT + "/") for n in packed.files if n not in EXPECTED)
    assert packed.missing == sorted([str(project / "outside/gone.png"),
                                     str(project / "proj/textures/missing.png")])
    check_names(packed.files)  # what JobManifest.from_files and every seller demand
    assert all(p.is_file() for p in packed.files.values())
    assert packed.total_bytes == sum(p.stat().st_size for p in packed.files.values())
    assert not (packed.files[packed.blend].parents[1] / "pack-info.txt").exists()


def test_packed_files_hold_the_original_bytes(packed: PackResult, project: Path) -> None:
    for name, original in originals(packed, project).items():
        if not name.endswith(".blend"):
            assert packed.files[name].read_bytes() == original.read_bytes(), name
    # main.blend was rewritten: zstd in, uncompressed .blend out (see packing.py)
    assert (project / "proj/scenes/main.blend").read_bytes()[:4] == ZSTD_MAGIC
    header = b"BLENDER17-01" if int(BLENDER_LINE.split(".")[0]) >= 5 else b"BLENDER-v"
    assert packed.files["scenes/main.blend"].read_bytes().startswith(header)


def open_moved(packed: PackResult, project: Path) -> tuple[Path, dict[str, Any]]:
    """Open the packed .blend in bpy (scripts off) with the project moved away."""
    job = packed.files[packed.blend].parents[packed.blend.count("/")].resolve()
    with moved_away(project):
        answer = run_bpy([str(SCRIPT), "inspect", str(job / packed.blend), str(job)], job)
    info: dict[str, Any] = json.loads(answer.stdout.strip().splitlines()[-1])
    pack_file = {str(p.resolve()) for p in packed.files.values()}
    assert info["refused"] is None  # a seller accepts it: nothing outside the job
    assert [lib["path"] in pack_file and not lib["missing"]
            for lib in info["libraries"].values()] == [True]
    assert info["missing_ids"] == []
    assert info["images"]["lib_tex.png"]["library"] is not None
    for name, image in info["images"].items():
        if image["packed"]:
            assert name == "Packed" and image["has_data"]
        elif name.startswith("Missing"):
            assert not image["exists"] and image["path"].startswith(f"{job}/"), image
        else:
            assert image["path"] in pack_file and image["exists"], (name, image)
            if image["source"] == "FILE":
                assert image["has_data"], (name, image)
    for path, exists in info["paths"]:  # every external path Blender knows of
        assert path.startswith(f"{job}/")
        assert exists == (path in pack_file), path
    return job, info


def test_packed_scene_opens_with_everything_resolved(packed: PackResult,
                                                     project: Path) -> None:
    job, info = open_moved(packed, project)
    assert info["libraries"]["lib.blend"]["path"] == str(job / "libs/lib.blend")
    original = originals(packed, project)
    by_path = {str(p.resolve()): n for n, p in packed.files.items()}
    assert original[by_path[info["images"]["Upper"]["path"]]].name == "WOOD.png"
    assert original[by_path[info["images"]["Wood"]["path"]]].name == "wood.png"


def test_files_outside_a_narrow_root_move_and_still_resolve(project: Path,
                                                           tmp_path: Path) -> None:
    """With the root at scenes/, the library and its texture both move: both rewritten."""
    packed = packing.pack(project / "proj/scenes/main.blend", tmp_path / "job",
                          project_root=project / "proj/scenes")
    assert packed.blend == "main.blend"
    assert all(n.startswith(OUT + "/") for n in packed.files if n != "main.blend")
    assert len(packed.files) == len(EXPECTED) + len(MOVED)
    open_moved(packed, project)


def test_check_names_the_missing_files(project: Path) -> None:
    problems = packing.check(project / "proj/scenes/main.blend")
    assert problems == [
        f"missing file {project / 'outside/gone.png'} (used by IMMissingAbs in main.blend)",
        f"missing file {project / 'proj/textures/missing.png'} "
        "(used by IMMissing in main.blend)"]
    with pytest.raises(MissingFiles) as caught:
        PackResult("main.blend", {}, [str(project / "x.png")], 0).require_complete()
    assert caught.value.data["missing"] == [str(project / "x.png")]
    PackResult("main.blend", {}, [], 0).require_complete()


def test_the_bat_fixes_are_needed_and_scoped(project: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """BAT 1.23 on 5.0 files: crashes on Geometry Nodes modifiers, misses library images."""
    from blender_asset_tracer import blendfile, cdefs, trace
    from blender_asset_tracer.blendfile.exceptions import SegmentationFault
    from blender_asset_tracer.trace import expanders, modifier_walkers

    def traced() -> set[str]:
        try:
            usages = trace.deps(project / "proj/scenes/main.blend")
            return {usage.abspath.name for usage in usages}
        finally:
            blendfile.close_all_cached()

    originals = (expanders._expand_generic_nodetree_id,
                 modifier_walkers.modifier_handlers[cdefs.eModifierType_Nodes])
    with pytest.raises(SegmentationFault):  # if not: BAT is fixed, drop the walker
        traced()
    with monkeypatch.context() as patch:
        patch.setitem(modifier_walkers.modifier_handlers, cdefs.eModifierType_Nodes,
                      bat_fixes.walk_nodes_modifier)
        if int(BLENDER_LINE.split(".")[0]) >= 5:  # the bug reads a 5.0-only field
            assert "lib_tex.png" not in traced(), "BAT is fixed: drop expand_nodetree_id"
    with bat_fixes.bat_session(), bat_fixes.bat_session():  # nests
        assert "lib_tex.png" in traced()
    assert originals == (expanders._expand_generic_nodetree_id,
                         modifier_walkers.modifier_handlers[cdefs.eModifierType_Nodes])


def test_packing_again_gives_identical_files(packed: PackResult, project: Path,
                                             tmp_path: Path) -> None:
    started = time.perf_counter()
    again = packing.pack(project / "proj/scenes/main.blend", tmp_path / "again",
                         project_root=project / "proj")  # the root it guessed before
    elapsed = time.perf_counter() - started
    assert again.files.keys() == packed.files.keys()
    for name, path in again.files.items():
        assert path.read_bytes() == packed.files[name].read_bytes(), name
    spec = {"blend": packed.blend}
    with ChunkStore(tmp_path / "store") as store:
        first = JobManifest.from_files(spec, packed.files, store)
        second = JobManifest.from_files(spec, again.files, store)
    assert first.workhash == second.workhash  # a seller needs no new chunk at all
    assert elapsed < 5


def test_refuses_bad_inputs(project: Path, tmp_path: Path) -> None:
    blend = project / "proj/scenes/main.blend"
    (tmp_path / "full").mkdir()
    (tmp_path / "full/old.txt").write_text("stale")
    with pytest.raises(PackError, match="new or empty"):
        packing.pack(blend, tmp_path / "full")
    with pytest.raises(PackError, match="not inside the project root"):
        packing.pack(blend, tmp_path / "a", project_root=project / "proj/libs")
    with pytest.raises(PackError, match="no such"):
        packing.check(tmp_path / "nothing.blend")
    (tmp_path / "fake.blend").write_bytes(b"not a blend file at all")
    with pytest.raises(PackError, match="cannot pack"):
        packing.pack(tmp_path / "fake.blend", tmp_path / "b")


@pytest.mark.parametrize(("part", "safe"), [
    ("wood.png", "wood.png"), ("a:b.png", "a_b.png"), ("back\\slash", "back_slash"),
    ("NUL", "_NUL"), ("com1.txt", "_com1.txt"), ("dots...", "dots..._"), ("..", "_"),
    ("tab\there", "tab_here")])
def test_unsafe_name_parts_are_mapped(part: str, safe: str) -> None:
    assert pack_names.safe_part(part) == safe
    long = pack_names.safe_part("x" * 300 + ".png")
    assert long.endswith(".png") and len(long) == 16


def test_name_table_refuses_what_check_names_refuses() -> None:
    table = pack_names.NameTable()
    assert table.claim("tex/Wood.png") == "tex/Wood.png"
    assert table.claim("tex/wood.png", "x/wood.png") == "x/wood.png"  # case clash
    assert table.claim("tex", "tex2") == "tex2"  # a folder already
    assert table.claim("tex2/a.png", "b/a.png") == "b/a.png"  # tex2 is a file
    assert table.claim("tex/e\u0301.png") == "tex/e\u0301.png"
    assert not table.free("TEX/\u00e9.png")  # the same name, NFC-normalized
    assert not table.free("c:d.png")
    check_names(["tex/Wood.png", "x/wood.png", "tex2", "b/a.png", "tex/e\u0301.png"])


def test_a_copy_of_the_files_is_the_whole_job(packed: PackResult, tmp_path: Path) -> None:
    """Only the names in ``files`` travel; the copy still finds all but the missing two."""
    job = tmp_path / "copy"
    for name, path in packed.files.items():
        (job / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, job / name)
    digest = next(n.split("/")[1] for n in packed.files if n.endswith("/abs_tex.png"))
    assert packing.check(job / packed.blend) == [
        f"missing file {job}/{OUT}/{digest}/gone.png (used by IMMissingAbs in main.blend)",
        f"missing file {job}/textures/missing.png (used by IMMissing in main.blend)"]
