"""Run under the bpy module: install the built zip, check what registered, round trip.

``python install_check.py ZIP`` prints one JSON line with what it found. BLENDER_USER_RESOURCES
and XDG_CACHE_HOME must point at scratch dirs (the test sets them).
"""

from __future__ import annotations

import importlib
import json
import sys
import time
from typing import Any

# isort: off
import bpy  # first: importing it puts addon_utils on sys.path
import addon_utils
# isort: on

MODULE = "bl_ext.user_default.bitwrk"
OPERATORS = ["connect", "render", "cancel", "estimate", "refresh_wallet",
             "request_deposit_address", "copy_account", "withdraw", "cancel_withdrawal", "sell"]
PANELS = ["BITWRK_PT_render", "BITWRK_PT_sell", "BITWRK_PT_wallet"]
WHEEL_MODULES = ["aiohttp", "multidict", "yarl", "coincurve", "cryptography", "cffi",
                 "platformdirs", "pyfastcdc", "blender_asset_tracer", "qrcode"]


class StubLayout:
    """Records what a panel's draw() asks for; every call returns a layout again."""

    def __init__(self, log: list[str]) -> None:
        self.log = log
        self.enabled = True

    def __getattr__(self, name: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            self.log.append(f"label:{kwargs.get('text')}" if name == "label" else name)
            if name == "prop":
                getattr(args[0], args[1])  # the property must exist
            if name == "operator":
                op_id = args[0]
                category, _, op = op_id.partition(".")
                assert hasattr(getattr(bpy.ops, category), op), op_id
            return StubLayout(self.log)

        return call


def registered() -> dict[str, Any]:
    ops = [name for name in OPERATORS if hasattr(bpy.types, f"BITWRK_OT_{name}")]
    panels = [name for name in PANELS if hasattr(bpy.types, name)]
    props = set(bpy.types.Scene.bl_rna.properties.keys())
    return {"operators": ops, "panels": panels, "scene_prop": "bitwrk" in props,
            "engine": any(getattr(c, "bl_idname", "") == "BITWRK" and c.is_registered
                          for c in bpy.types.RenderEngine.__subclasses__())}


def draw_panels() -> dict[str, list[str]]:
    out = {}
    for name in PANELS:
        cls = getattr(bpy.types, name)
        log: list[str] = []
        ctx = type("Ctx", (), {"scene": bpy.context.scene})()
        cls.draw(_Self(StubLayout(log)), ctx)
        out[name] = log
    return out


class _Self:
    def __init__(self, layout: StubLayout) -> None:
        self.layout = layout

    def __getattr__(self, name: str) -> Any:  # the panel's static helpers
        return getattr(bpy.types.BITWRK_PT_wallet, name)


def main(zip_path: str) -> None:
    report: dict[str, Any] = {}
    t0 = time.perf_counter()
    report["install"] = sorted(bpy.ops.extensions.package_install_files(
        filepath=zip_path, repo="user_default", enable_on_install=True))
    report["install_s"] = round(time.perf_counter() - t0, 2)
    report["enabled"] = MODULE in bpy.context.preferences.addons
    report["first"] = registered()
    ext = importlib.import_module(MODULE)
    bridge = importlib.import_module(MODULE + ".blender.bridge")
    report["daemon_after_register"] = bridge._BRIDGE is not None and bridge.get().daemon is not None
    wheels = {}
    for name in WHEEL_MODULES:
        module = importlib.import_module(name)
        wheels[name] = getattr(module, "__file__", "") or ""
    report["wheels"] = wheels
    site = bpy.utils.user_resource("EXTENSIONS", path=".local/lib/python3.11/site-packages")
    report["wheel_site"] = site
    report["wheel_site_on_path"] = site in sys.path
    import os

    report["wheel_site_has"] = sorted(n for n in WHEEL_MODULES
                                      if os.path.isdir(os.path.join(site, n)))
    report["draw"] = draw_panels()
    status = bridge.get().status
    status.address, status.available, status.blocked = "tb1qexample", 1500, 20
    status.ledger = [{"kind": "deposit", "amount": 1520}]
    report["draw_no_deposit"] = draw_panels()["BITWRK_PT_wallet"]
    status.deposit_address = "tb1qw508d6qejxtdg4y5r3zarvary0c5xw7kxpjzsx"
    report["draw_deposit"] = draw_panels()["BITWRK_PT_wallet"]
    status.connected, status.payments, status.pending_withdrawals = True, True, 90_000
    status.withdrawals = [
        {"id": 7, "amount": 60_000, "destination": "tb1qdest", "state": "pending"},
        {"id": 6, "amount": 30_000, "destination": "tb1qdest", "state": "exported"}]
    report["draw_withdrawals"] = draw_panels()["BITWRK_PT_wallet"]
    status.payments, status.payments_reason = False, "this exchange takes no Bitcoin payments"
    status.deposit_address, status.withdrawals = None, []
    report["draw_no_payments"] = draw_panels()["BITWRK_PT_wallet"]
    status.lan_url, status.lan_workers = "http://192.168.1.5:4711", ("tb1qa", "tb1qb")
    report["draw_lan"] = draw_panels()["BITWRK_PT_render"]
    bridge.shutdown()
    # the wallet QR through the real extension code
    wallet = importlib.import_module(MODULE + ".blender.wallet")
    uri = wallet.bitcoin_uri("tb1qw508d6qejxtdg4y5r3zarvary0c5xw7kxpjzsx", 123_450)
    image = wallet.qr_image(bpy, uri)
    import numpy as np

    pixels = np.empty(image.size[0] * image.size[1] * 4, dtype=np.float32)
    image.pixels.foreach_get(pixels)
    np.save(sys.argv[2], pixels.reshape(image.size[1], image.size[0], 4))
    report["qr"] = {"uri": uri, "size": list(image.size)}
    t0 = time.perf_counter()
    addon_utils.disable(MODULE, default_set=True)
    report["unregister_s"] = round(time.perf_counter() - t0, 2)
    report["after_disable"] = registered()
    addon_utils.enable(MODULE, default_set=True)
    report["second"] = registered()
    addon_utils.disable(MODULE, default_set=True)
    report["third_off"] = registered()
    del ext
    print("REPORT " + json.dumps(report), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
