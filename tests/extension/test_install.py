"""The built zip installs through Blender's extension system, registers everything, imports
its bundled wheels, draws its panels, round-trips register/unregister — and its wallet QR
decodes (zxing-cpp) to the exact ``bitcoin:`` URI."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.extension.conftest import HAVE_BPY, HERE, run_report, scratch_env

pytestmark = [pytest.mark.skipif(not HAVE_BPY, reason="the bpy module is not installed"),
              pytest.mark.slow]
ALL = {"operators": ["connect", "render", "cancel", "estimate", "refresh_wallet",
                     "request_deposit_address", "copy_account", "withdraw",
                     "cancel_withdrawal", "sell"],
       "panels": ["BITWRK_PT_render", "BITWRK_PT_sell", "BITWRK_PT_wallet"],
       "scene_prop": True, "engine": True}
NONE = {"operators": [], "panels": [], "scene_prop": False, "engine": False}


@pytest.fixture(scope="module")
def report(extension_zip: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    base = tmp_path_factory.mktemp("install")
    result = run_report([str(HERE / "install_check.py"), str(extension_zip),
                         str(base / "qr.npy")], scratch_env(base))
    result["qr_pixels"] = str(base / "qr.npy")
    return result


def test_the_zip_holds_the_extension_and_nothing_of_the_server(extension_zip: Path) -> None:
    names = zipfile.ZipFile(extension_zip).namelist()
    assert "blender_manifest.toml" in names and "__init__.py" in names
    for package in ("bitwrk/", "blender/", "operators/", "panels/"):
        assert any(n.startswith(package) for n in names), package
    assert not any(n.startswith(("service/", "tests/", "bench/", "tools/")) for n in names)
    assert any(n.startswith("wheels/coincurve-") for n in names)
    for tag in ("cp311", "cp313"):  # Blender 4.2 LTS-5.0 and 5.1+ (and Debian's 4.3)
        assert any(n.startswith("wheels/coincurve-") and f"-{tag}-" in n for n in names), tag
    manifest = zipfile.ZipFile(extension_zip).read("blender_manifest.toml").decode()
    assert 'clipboard = "' in manifest and 'blender_version_min = "4.2.0"' in manifest


def test_installs_enables_and_registers_everything(report: dict[str, Any]) -> None:
    assert report["install"] == ["FINISHED"] and report["enabled"]
    assert report["first"] == ALL
    assert report["daemon_after_register"] is False  # register() starts no network


def test_bundled_wheels_are_extracted_onto_blenders_path(report: dict[str, Any]) -> None:
    assert report["wheel_site_on_path"]
    assert set(report["wheel_site_has"]) >= {"aiohttp", "coincurve", "cryptography",
                                             "qrcode", "pyfastcdc", "blender_asset_tracer"}
    assert all(report["wheels"].values())  # every one imports


def test_unregister_register_round_trip(report: dict[str, Any]) -> None:
    assert report["after_disable"] == NONE
    assert report["second"] == ALL
    assert report["third_off"] == NONE
    assert report["unregister_s"] < 5


def test_panels_draw_against_the_registered_classes(report: dict[str, Any]) -> None:
    assert "operator" in report["draw"]["BITWRK_PT_render"]
    assert "label:not connected" in report["draw"]["BITWRK_PT_wallet"]
    assert "label:no deposit address" in report["draw_no_deposit"]  # no API: said plainly
    assert any(x.startswith("label:bitcoin:tb1q") for x in report["draw_deposit"])


def test_wallet_panel_lists_open_withdrawals(report: dict[str, Any]) -> None:
    drawn = report["draw_withdrawals"]
    assert "label:Withdraw" in drawn and "label:pending 900 µBTC" in drawn, drawn
    assert any(x.startswith("label:#7 ") and "(pending)" in x for x in drawn)
    assert any(x.startswith("label:#6 ") and "(exported)" in x for x in drawn)
    assert not any(x.startswith("label:Withdrawals off") for x in drawn)


def test_wallet_panel_says_why_the_form_is_off(report: dict[str, Any]) -> None:
    drawn = report["draw_no_payments"]
    assert "label:Withdrawals off: this exchange takes no Bitcoin payments" in drawn
    assert "label:no deposit address: this exchange takes no Bitcoin payments" in drawn
    assert not any(x.startswith("label:#") for x in drawn)  # no list while off
    assert "label:connect to an exchange to withdraw" in report["draw"]["BITWRK_PT_wallet"]


def test_render_panel_shows_the_lan_hub(report: dict[str, Any]) -> None:
    drawn = report["draw_lan"]
    assert "label:LAN hub: http://192.168.1.5:4711" in drawn
    assert any(x.startswith("label:serving 2 worker(s) first") for x in drawn)
    assert not any(x.startswith("label:LAN hub") for x in report["draw"]["BITWRK_PT_render"])


def test_wallet_qr_decodes_to_the_exact_uri(report: dict[str, Any]) -> None:
    zxingcpp = pytest.importorskip("zxingcpp")
    pixels = np.load(report["qr_pixels"])  # Blender order: bottom row first, RGBA float
    gray = (np.flipud(pixels[:, :, 0]) * 255).round().astype(np.uint8)
    found = zxingcpp.read_barcodes(np.ascontiguousarray(gray))
    assert [r.text for r in found] == [report["qr"]["uri"]]
    assert report["qr"]["uri"] == ("bitcoin:tb1qw508d6qejxtdg4y5r3zarvary0c5xw7kxpjzsx"
                                   "?amount=0.0012345")
