"""Several scenes in one ``python -m bitwrk.buy`` run (``--then``), through real processes:
their jobs trade side by side under one daemon, each scene's frames equal a local render,
and a bad later scene stops the run before anything at all is bought."""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tests.blender.conftest import needs_bpy
from tests.blender.test_render_exact import assert_identical
from tests.blender.test_swarm import Node, credit, get, swarm  # noqa: F401 - the fixture
from tests.e2e.conftest import ServerProcess

pytestmark = [needs_bpy, pytest.mark.slow]


def second_file(scene_dir: Path, tmp_path: Path) -> Path:
    """The bundled scene under another name (its textures beside it)."""
    blend = tmp_path / "job" / "second.blend"
    blend.parent.mkdir()
    shutil.copytree(scene_dir / "textures", blend.parent / "textures")
    shutil.copy(scene_dir / "scene.blend", blend)
    return blend


def test_two_scenes_in_one_run_each_equal_a_local_render(swarm: dict[str, Any],  # noqa: F811
                                                         scene_dir: Path, references: Path,
                                                         tmp_path: Path) -> None:
    exchange: ServerProcess = swarm["exchange"]
    buyer: Node = swarm["buyer"]
    second = second_file(scene_dir, tmp_path)
    result = buyer.run("bitwrk.buy", str(scene_dir / "scene.blend"), "--exchange",
                       exchange.url, "--max-price", "100", "--allow-local-sellers",
                       "--tiles", "2", "--out", str(tmp_path / "still"),
                       "--then", str(second), "--frames", "3", "--tiles", "1",
                       "--out", str(tmp_path / "frame3"))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    print(out)  # shown with -rP: what a user sees
    # each scene's lines carry its file's name; the first scene's options (--tiles 2) are
    # its own, the second's (--frames 3 --tiles 1) its own
    assert re.search(r"^scene buying 2 units of \S+ for 1 frame\(s\)", out, re.M), out
    assert re.search(r"^second buying 1 units of \S+ for 1 frame\(s\)", out, re.M), out
    assert re.search(r"^scene \[#{20}\] 2/2 f00001_t00[01] from ", out, re.M), out
    assert re.search(r"^second \[#{20}\] 1/1 f00003_t000 from ", out, re.M), out
    assert re.search(r"^scene done: 2 units in [\d.]+ s, spent \d+ sat$", out, re.M), out
    assert re.search(r"^second done: 1 units in [\d.]+ s, spent \d+ sat$", out, re.M), out
    assert_identical(tmp_path / "still" / "Shot_0001", references, "plain")
    assert_identical(tmp_path / "frame3" / "Shot_0003", references, "frame3")
    assert sorted(p.name for p in (tmp_path / "frame3").iterdir()) == [
        "Shot_0003.exr", "Shot_0003.png"]
    # one daemon: both jobs ended, nothing left open
    assert get(exchange, f"/api/v1/accounts/{buyer.address()}/bids?state=placed") == []


def bids_ever(exchange: ServerProcess, address: str) -> int:
    """Every buy bid the exchange ever took from ``address`` (closed ones included)."""
    db = sqlite3.connect(f"file:{exchange.db_path}?mode=ro", uri=True)
    try:
        return int(db.execute("SELECT count(*) FROM bids WHERE address = ?",
                              (address,)).fetchone()[0])
    finally:
        db.close()


def test_a_bad_later_scene_stops_the_run_before_anything_is_bought(scene_dir: Path,
                                                                   tmp_path: Path) -> None:
    """The first scene is fine; the second is broken, needs Python drivers, or would
    overwrite the first's files: the run says which and why, and bids on nothing."""
    exchange = ServerProcess(tmp_path / "exchange").start()
    try:
        buyer = Node(tmp_path / "buyer")
        address = buyer.address()
        credit(exchange, address, 10_000)
        before = get(exchange, f"/api/v1/accounts/{address}")
        corrupt = tmp_path / "corrupt.blend"
        corrupt.write_bytes(b"BLENDER-v500" + os.urandom(4000))
        good = str(scene_dir / "scene.blend")
        out = tmp_path / "out"
        cases = {
            "corrupt": ([str(corrupt)], r"error: cannot read \S*corrupt\.blend"),
            "drivers": ([str(scene_dir / "evil.blend"), "--out", str(tmp_path / "evil")],
                        r"error: \S*evil\.blend: the scene is not farm-ready: these drivers"
                        r" need Python"),
            "overwrite": ([good], r"error: \S*scene\.blend and \S*scene\.blend would both"
                                  r" write \S*Shot_0001\.exr"),
        }
        for name, (then, expected) in cases.items():
            result = buyer.run("bitwrk.buy", good, "--exchange", exchange.url, "--max-price",
                               "100", "--out", str(out), "--then", *then)
            assert result.returncode == 1, (name, result.stdout, result.stderr[-3000:])
            assert re.search(f"^{expected}", result.stderr, re.M), (name, result.stderr)
            assert "buying" not in result.stdout, (name, result.stdout)
            assert bids_ever(exchange, address) == 0, name
            after = get(exchange, f"/api/v1/accounts/{address}")
            assert (after["available"], after["blocked"]) == (
                before["available"], before["blocked"]), name
            assert not out.exists() and not (tmp_path / "evil").exists(), name
    finally:
        exchange.close()
