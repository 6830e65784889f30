"""Run under the bpy module: install the zip, connect the wallet to a real exchange, and
drive the withdrawal form through the registered operators; draw the wallet panel with a
recording stub layout at each step.

``python wallet_check.py ZIP EXCHANGE_URL MODE WITHDRAW_TO QR_NPY`` (MODE ``payments`` or
``none``) prints ``REPORT {json}``.
"""

from __future__ import annotations

import importlib
import json
import sys
from typing import Any

# isort: off
import bpy  # first: importing it puts addon_utils on sys.path
import addon_utils  # noqa: F401 - the extension system needs it loaded
# isort: on

MODULE = "bl_ext.user_default.bitwrk"


class Stub:
    """Records labels, operators and every ``enabled = False`` a panel asks for."""

    def __init__(self, log: list[str], off: bool = False) -> None:
        object.__setattr__(self, "log", log)
        object.__setattr__(self, "off", off)  # inside a disabled layout

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "enabled" and not value:
            object.__setattr__(self, "off", True)
            self.log.append("enabled:False")

    def __getattr__(self, name: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            tag = "off:" if self.off else ""
            if name == "label":
                self.log.append(f"{tag}label:{kwargs.get('text')}")
            elif name in ("operator", "prop"):
                self.log.append(f"{tag}{name}:{args[0] if name == 'operator' else args[1]}")
                if name == "prop":
                    getattr(args[0], args[1])  # the property must exist
            else:
                self.log.append(name)
            return Stub(self.log, self.off)

        return call


class _Self:
    def __init__(self, layout: Stub) -> None:
        self.layout = layout

    def __getattr__(self, name: str) -> Any:
        return getattr(bpy.types.BITWRK_PT_wallet, name)


def draw(panel: str = "BITWRK_PT_wallet") -> list[str]:
    log: list[str] = []
    ctx = type("Ctx", (), {"scene": bpy.context.scene})()
    getattr(bpy.types, panel).draw(_Self(Stub(log)), ctx)
    return log


def call(op: Any, **kwargs: Any) -> list[str]:
    try:
        return sorted(op(**kwargs))
    except RuntimeError as exc:  # an operator that reports ERROR raises here
        return ["ERROR", str(exc)]


def main(zip_path: str, exchange: str, mode: str, to: str, qr_npy: str) -> None:
    bpy.ops.extensions.package_install_files(filepath=zip_path, repo="user_default",
                                             enable_on_install=True)
    bridge = importlib.import_module(MODULE + ".blender.bridge")
    report: dict[str, Any] = {"draw_unconnected": draw()}
    settings = bpy.context.scene.bitwrk
    settings.exchange_url = exchange
    report["connect"] = call(bpy.ops.bitwrk.connect)
    status = bridge.get().status
    report["payments"] = status.payments
    report["available0"] = status.available
    report["draw_connected"] = draw()
    report["request"] = call(bpy.ops.bitwrk.request_deposit_address)
    report["deposit_address"] = status.deposit_address
    report["withdraw_poll"] = bpy.ops.bitwrk.withdraw.poll()
    if mode == "payments":
        image = bpy.data.images["BitWrk deposit QR"]
        import numpy as np

        pixels = np.empty(image.size[0] * image.size[1] * 4, dtype=np.float32)
        image.pixels.foreach_get(pixels)
        np.save(qr_npy, pixels.reshape(image.size[1], image.size[0], 4))
        report["draw_deposit"] = draw()
        settings.withdraw_to, settings.withdraw_unit = to, "UBTC"
        settings.withdraw_amount = 600.0  # µBTC = 60 000 sat
        report["withdraw"] = call(bpy.ops.bitwrk.withdraw)
        report["after_withdraw"] = {"available": status.available,
                                    "pending": status.pending_withdrawals,
                                    "withdrawals": status.withdrawals}
        report["draw_pending"] = draw()
        settings.withdraw_amount = 1e9  # more than the balance: refused with the reason
        report["withdraw_too_much"] = call(bpy.ops.bitwrk.withdraw)
        wid = status.withdrawals[0]["id"]
        report["cancel"] = call(bpy.ops.bitwrk.cancel_withdrawal, withdrawal_id=wid)
        report["after_cancel"] = {"available": status.available,
                                  "pending": status.pending_withdrawals,
                                  "withdrawals": status.withdrawals}
        report["draw_cancelled"] = draw()
    report["stopped"] = bridge.shutdown()
    print("REPORT " + json.dumps(report), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:6])
