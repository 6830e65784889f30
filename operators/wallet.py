"""Wallet: refresh, copy the account id, request a deposit address (and its QR), withdraw
and cancel a pending withdrawal, sell."""

from __future__ import annotations

from typing import Any

import bpy

from ..bitwrk.money import format_amount
from ..bitwrk.render import compat
from ..engine import bridge, wallet
from . import timer


def _connected(op: Any, context: Any) -> bool:
    try:
        bridge.get().connect(context.scene.bitwrk.exchange_url)
    except Exception as exc:
        op.report({"ERROR"}, f"BitWrk: cannot connect: {exc}")
        return False
    timer.ensure()
    return True


def show_deposit_qr() -> Any:
    """The QR image of the deposit address, or None when there is no address."""
    address = bridge.get().status.deposit_address
    if not address:
        return None
    image = wallet.qr_image(bpy, wallet.bitcoin_uri(address))
    image.preview_ensure()
    return image


class BITWRK_OT_refresh_wallet(bpy.types.Operator):  # type: ignore[misc]
    """Fetch balances, recent ledger movements and the deposit address"""

    bl_idname = "bitwrk.refresh_wallet"
    bl_label = "Refresh"

    def execute(self, context: Any) -> set[str]:
        if not _connected(self, context):
            return {"CANCELLED"}
        bridge.get().refresh_wallet()
        show_deposit_qr()
        return {"FINISHED"}


class BITWRK_OT_request_deposit_address(bpy.types.Operator):  # type: ignore[misc]
    """Ask the exchange for this account's Bitcoin deposit address"""

    bl_idname = "bitwrk.request_deposit_address"
    bl_label = "Request deposit address"

    def execute(self, context: Any) -> set[str]:
        if not _connected(self, context):
            return {"CANCELLED"}
        if bridge.get().request_deposit_address() is None:
            why = bridge.get().status.payments_reason or bridge.get().status.error
            self.report({"WARNING"}, f"BitWrk: no deposit address: {why}")
            return {"CANCELLED"}
        show_deposit_qr()
        return {"FINISHED"}


class BITWRK_OT_copy_account(bpy.types.Operator):  # type: ignore[misc]
    """Copy the account id (Bitcoin address) to the clipboard"""

    bl_idname = "bitwrk.copy_account"
    bl_label = "Copy account id"

    @classmethod
    def poll(cls, context: Any) -> bool:
        return bool(bridge.get().status.address)

    def execute(self, context: Any) -> set[str]:
        context.window_manager.clipboard = bridge.get().status.address
        return {"FINISHED"}


def form_off_reason() -> str:
    """Why the withdrawal form is off ("" when it is on): not connected, or no payments."""
    status = bridge.get().status
    if not status.connected or not status.address:
        return "connect to an exchange to withdraw"
    if status.payments is False:
        return f"Withdrawals off: {status.payments_reason or bridge.NO_PAYMENTS}"
    return ""


class BITWRK_OT_withdraw(bpy.types.Operator):  # type: ignore[misc]
    """Pay bitcoin out of the available balance to an address (pending until the exchange
    operator's next payout; cancellable until then)"""

    bl_idname = "bitwrk.withdraw"
    bl_label = "Withdraw"

    @classmethod
    def poll(cls, context: Any) -> bool:
        return not form_off_reason()

    def execute(self, context: Any) -> set[str]:
        settings = context.scene.bitwrk
        amount = settings.withdraw_amount_sat()
        try:
            found = bridge.get().withdraw(settings.withdraw_to, amount)
        except Exception as exc:
            self.report({"ERROR"}, f"BitWrk: withdrawal refused: {exc}")
            return {"CANCELLED"}
        self.report({"INFO"}, f"BitWrk: withdrawal {found.get('id')} of "
                              f"{format_amount(amount)} pending")
        settings.withdraw_amount = 0.0
        return {"FINISHED"}


class BITWRK_OT_cancel_withdrawal(bpy.types.Operator):  # type: ignore[misc]
    """Cancel this pending withdrawal: the amount returns to the available balance"""

    bl_idname = "bitwrk.cancel_withdrawal"
    bl_label = "Cancel withdrawal"
    withdrawal_id: bpy.props.IntProperty(name="Withdrawal", min=0)  # type: ignore[valid-type]

    def execute(self, context: Any) -> set[str]:
        try:
            bridge.get().cancel_withdrawal(self.withdrawal_id)
        except Exception as exc:
            self.report({"ERROR"}, f"BitWrk: cannot cancel: {exc}")
            return {"CANCELLED"}
        return {"FINISHED"}


class BITWRK_OT_sell(bpy.types.Operator):  # type: ignore[misc]
    """Sell render time on this computer while Blender runs"""

    bl_idname = "bitwrk.sell"
    bl_label = "Start selling"

    def execute(self, context: Any) -> set[str]:
        settings = context.scene.bitwrk
        if not _connected(self, context):
            return {"CANCELLED"}
        try:
            url = bridge.get().start_selling(settings.sell_cores, settings.sell_min_price,
                                             (settings.cost_class,),
                                             compat.blender_line(bpy.app.version))
        except Exception as exc:
            self.report({"ERROR"}, f"BitWrk: cannot sell: {exc}")
            return {"CANCELLED"}
        self.report({"INFO"}, f"BitWrk: selling on {url}")
        return {"FINISHED"}


CLASSES = (BITWRK_OT_refresh_wallet, BITWRK_OT_request_deposit_address,
           BITWRK_OT_copy_account, BITWRK_OT_withdraw, BITWRK_OT_cancel_withdrawal,
           BITWRK_OT_sell)
