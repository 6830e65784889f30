"""Wallet: refresh, copy the account id, request a deposit address (and its QR), withdraw
and cancel a pending withdrawal, sell."""

from __future__ import annotations

from typing import Any

import bpy

from ..bitwrk.money import format_amount
from ..bitwrk.render import compat
from ..blender import bridge, wallet
from . import background, timer


def _connected(op: Any, context: Any) -> bool:
    if background.refuse_offline(op):
        return False
    try:
        bridge.get().connect(context.scene.bitwrk.exchange_url)
    except Exception as exc:
        op.report({"ERROR"}, f"BitWrk: cannot connect: {exc}")
        return False
    timer.ensure()
    return True


def _refresh_work(url: str) -> Any:
    def work() -> tuple[str, None]:
        b = bridge.get()
        b.connect(url)
        b.account.refresh()
        return "wallet refreshed", None

    return work


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

    def invoke(self, context: Any, event: Any) -> set[str]:
        return background.start(self, "wallet", _refresh_work(context.scene.bitwrk.exchange_url))

    def execute(self, context: Any) -> set[str]:
        if not _connected(self, context):
            return {"CANCELLED"}
        bridge.get().account.refresh()
        show_deposit_qr()
        return {"FINISHED"}


class BITWRK_OT_request_deposit_address(bpy.types.Operator):  # type: ignore[misc]
    """Ask the exchange for this account's Bitcoin deposit address"""

    bl_idname = "bitwrk.request_deposit_address"
    bl_label = "Request deposit address"

    def invoke(self, context: Any, event: Any) -> set[str]:
        url = context.scene.bitwrk.exchange_url

        def work() -> tuple[str, None]:
            b = bridge.get()
            b.connect(url)
            found = b.account.request_deposit_address()
            why = b.status.payments_reason or b.status.error
            return (f"deposit address {found}" if found else
                    f"no deposit address: {why}"), None

        return background.start(self, "deposit address", work)

    def execute(self, context: Any) -> set[str]:
        if not _connected(self, context):
            return {"CANCELLED"}
        if bridge.get().account.request_deposit_address() is None:
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

    def invoke(self, context: Any, event: Any) -> set[str]:
        settings = context.scene.bitwrk
        to, amount = settings.withdraw_to, settings.withdraw_amount_sat()

        def work() -> tuple[str, None]:
            found = bridge.get().account.withdraw(to, amount)
            return (f"withdrawal {found.get('id')} of {format_amount(amount)} pending",
                    None)

        def then(outcome: Any) -> None:
            if outcome.ok:
                settings.withdraw_amount = 0.0

        return background.start(self, "withdraw", work, then)

    def execute(self, context: Any) -> set[str]:
        settings = context.scene.bitwrk
        amount = settings.withdraw_amount_sat()
        try:
            found = bridge.get().account.withdraw(settings.withdraw_to, amount)
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

    def invoke(self, context: Any, event: Any) -> set[str]:
        wid = self.withdrawal_id

        def work() -> tuple[str, None]:
            bridge.get().account.cancel_withdrawal(wid)
            return f"withdrawal {wid} cancelled", None

        return background.start(self, "cancel withdrawal", work)

    def execute(self, context: Any) -> set[str]:
        try:
            bridge.get().account.cancel_withdrawal(self.withdrawal_id)
        except Exception as exc:
            self.report({"ERROR"}, f"BitWrk: cannot cancel: {exc}")
            return {"CANCELLED"}
        return {"FINISHED"}


class BITWRK_OT_sell(bpy.types.Operator):  # type: ignore[misc]
    """Sell render time on this computer while Blender runs"""

    bl_idname = "bitwrk.sell"
    bl_label = "Start selling"

    def invoke(self, context: Any, event: Any) -> set[str]:
        url, args = context.scene.bitwrk.exchange_url, _sell_args(context.scene.bitwrk)

        def work() -> tuple[str, None]:
            bridge.get().connect(url)
            return f"selling on {bridge.get().selling.start(*args[0], **args[1])}", None

        return background.start(self, "sell", work)

    def execute(self, context: Any) -> set[str]:
        settings = context.scene.bitwrk
        if not _connected(self, context):
            return {"CANCELLED"}
        try:
            args, kwargs = _sell_args(settings)
            url = bridge.get().selling.start(*args, **kwargs)
        except Exception as exc:
            self.report({"ERROR"}, f"BitWrk: cannot sell: {exc}")
            return {"CANCELLED"}
        self.report({"INFO"}, f"BitWrk: selling on {url}")
        return {"FINISHED"}


def _sell_args(settings: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """start_selling's arguments from the settings: bound to the chosen host (default this
    computer's LAN address) and announced as the public URL when one is set."""
    args = (settings.sell_cores, settings.sell_min_price, (settings.cost_class,),
            compat.blender_line(bpy.app.version))
    device = {"CPU": "cpu", "GPU": "gpu"}.get(settings.sell_device,
                                             f"gpu:{settings.sell_device.lower()}")
    return args, {"host": settings.sell_host.strip() or None,
                  "public_url": settings.sell_public_url.strip() or None,
                  "unsandboxed": settings.sell_unsandboxed, "device": device}


CLASSES = (BITWRK_OT_refresh_wallet, BITWRK_OT_request_deposit_address,
           BITWRK_OT_copy_account, BITWRK_OT_withdraw, BITWRK_OT_cancel_withdrawal,
           BITWRK_OT_sell)
