"""The panel's *Quote* button, headless, against a real exchange with two sellers: one
sample tile rendered in a separate Blender process, the market's asks read, nothing bought,
the artist's scene untouched."""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path

import pytest

from tests.extension.conftest import HAVE_BPY, HERE, ROOT, bpy_run, run_report, scratch_env

pytestmark = [pytest.mark.skipif(not HAVE_BPY, reason="the bpy module is not installed"),
              pytest.mark.slow]


def test_quote_button_prices_the_frame_range_and_buys_nothing(
        extension_zip: Path, exchange_with_sellers: str, tmp_path: Path) -> None:
    env = scratch_env(tmp_path / "buyer")
    bpy_run([str(ROOT / "tests/data/scenes/make_scene.py"), str(tmp_path / "job")], env)
    report = run_report([str(HERE / "quote_check.py"), str(extension_zip),
                         str(tmp_path / "job/scene.blend"), exchange_with_sellers, "1", "3",
                         "2"], env)
    assert report["result"] == ["FINISHED"], report
    # 3 frames x 2 tiles; the two sellers ask 10 and 11 sat; fees rounded up per trade
    with urllib.request.urlopen(exchange_with_sellers + "/api/v1/info", timeout=10) as resp:
        fee = int(json.loads(resp.read())["fee_bps"])
    expected = sum(p + -(-p * fee // 10_000) for p in (10, 11) * 3)
    assert re.fullmatch(rf"Quote: 6 units, about \d+ s, about {expected} sat \(at most \d+\)",
                        report["notice"]), report
    assert report["samples_unchanged"], report  # the sample rendered elsewhere
    assert report["stopped"]
    with urllib.request.urlopen(exchange_with_sellers + "/api/v1/info", timeout=10) as resp:
        assert json.loads(resp.read())["totals"]["blocked"] == 0
