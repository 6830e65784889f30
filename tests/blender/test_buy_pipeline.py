"""The headless buyer's pipeline and quote, through real processes (issue 17): frames are
composed while later units still trade, and ``--quote`` buys nothing."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from bitwrk.render import exr
from tests.blender.conftest import needs_bpy, run_bpy
from tests.blender.test_render_exact import REGION, assert_identical
from tests.blender.test_swarm import Node, credit, get, swarm  # noqa: F401 - the fixture
from tests.e2e.conftest import ServerProcess

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [needs_bpy, pytest.mark.slow]


def test_frames_are_composed_while_later_units_trade(swarm: dict[str, Any],  # noqa: F811
                                                     scene_dir: Path, references: Path,
                                                     tmp_path: Path) -> None:
    exchange: ServerProcess = swarm["exchange"]
    buyer: Node = swarm["buyer"]
    out = tmp_path / "anim"
    # one unit at a time: frame 1 is complete long before frame 3 is bought
    proc = subprocess.Popen(
        [sys.executable, "-m", "bitwrk.buy",
         str(scene_dir / "scene.blend"), "--exchange", exchange.url, "--max-price", "100",
         "--out", str(out), "--frames", "1-3", "--tiles", "1", "--concurrency", "1",
         "--allow-local-sellers"], env=buyer.env, cwd=ROOT, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    lines = [(time.time(), line) for line in proc.stdout]
    assert proc.wait(300) == 0, "".join(line for _t, line in lines)
    last_unit = max(t for t, line in lines if re.match(r"\[#*\s*\] \d+/3 ", line))
    first_file = min(p.stat().st_mtime for p in out.iterdir())
    assert first_file < last_unit, "no frame was written before the last unit landed"
    # the pipelined frames are the very pixels of a local render
    assert_identical(out / "Shot_0001", references, "plain")
    assert_identical(out / "Shot_0003", references, "frame3")


def test_quote_estimates_time_and_price_and_buys_nothing(swarm: dict[str, Any],  # noqa: F811
                                                         scene_dir: Path,
                                                         tmp_path: Path) -> None:
    exchange: ServerProcess = swarm["exchange"]
    buyer: Node = swarm["buyer"]
    before = get(exchange, f"/api/v1/accounts/{buyer.address()}")
    result = buyer.run("bitwrk.buy", str(scene_dir / "scene.blend"), "--exchange",
                       exchange.url, "--max-price", "100", "--out", str(tmp_path / "out"),
                       "--frames", "1-3", "--tiles", "2", "--quote")
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    text = result.stdout
    print(text)  # shown with -rP: what a user sees
    assert re.search(r"^quote: 6 units of net\.bitwrk/blender/\S+ for 3 frame\(s\)$", text,
                     re.M), text
    assert re.search(r"sample: \d+ px rendered here on one core in [\d.]+ s, after [\d.]+ s"
                     r" of set-up", text), text
    # the two sellers ask 10 and 11 sat; 6 units spread over them, 1 % fee rounded up
    assert "market: 2 ask(s) at or below 100 sat (1 x 10, 1 x 11 sat)" in text, text
    assert re.search(r"time: about \d+ s with 2 seller\(s\)", text), text
    fee = int(get(exchange, "/api/v1/info")["fee_bps"])
    expected = sum(p + -(-p * fee // 10_000) for p in (10, 11, 10, 11, 10, 11))
    assert f"cost: about {expected} sat" in text, text
    assert text.rstrip().endswith("nothing bought (--quote)")
    assert get(exchange, f"/api/v1/accounts/{buyer.address()}/bids") == []
    assert get(exchange, f"/api/v1/accounts/{buyer.address()}") == before
    assert not (tmp_path / "out").exists()


def test_quote_without_sellers_says_nothing_would_match(scene_dir: Path,
                                                        tmp_path: Path) -> None:
    exchange = ServerProcess(tmp_path / "exchange").start()
    try:
        buyer = Node(tmp_path / "buyer")
        credit(exchange, buyer.address(), 10_000)
        result = buyer.run("bitwrk.buy", str(scene_dir / "scene.blend"), "--exchange",
                           exchange.url, "--max-price", "100", "--out", str(tmp_path / "out"),
                           "--quote")
        assert result.returncode == 0, result.stderr[-3000:]
        assert "no ask at or below 100 sat now" in result.stdout, result.stdout
        assert get(exchange, f"/api/v1/accounts/{buyer.address()}/bids") == []
    finally:
        exchange.close()


def test_a_scene_with_a_render_region_buys_only_the_region(swarm: dict[str, Any],  # noqa: F811
                                                           scene_dir: Path,
                                                           tmp_path: Path) -> None:
    """``bitwrk.buy`` of a file saved with a render region (crop to it): 2 units inside
    the region, and the files equal a local render of that file."""
    blend = tmp_path / "job" / "region.blend"
    blend.parent.mkdir()
    shutil.copytree(scene_dir / "textures", blend.parent / "textures")
    run_bpy(["-c", REGION, str(scene_dir / "scene.blend"), str(blend), "crop"], tmp_path)
    reference = tmp_path / "reference"
    reference.mkdir()
    run_bpy([str(Path(__file__).parent / "reference_render.py"), str(blend), str(reference),
             "region:1:0"], tmp_path)
    exchange: ServerProcess = swarm["exchange"]
    result = swarm["buyer"].run("bitwrk.buy", str(blend), "--exchange", exchange.url,
                                "--max-price", "100", "--out", str(tmp_path / "out"),
                                "--tiles", "2", "--allow-local-sellers")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "buying 2 units" in result.stdout
    assert_identical(tmp_path / "out" / "Shot_0001", reference, "region")
    assert exr.read(tmp_path / "out" / "Shot_0001.exr").width == 50  # the region's width
