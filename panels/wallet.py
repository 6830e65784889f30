"""3D Viewport sidebar → BitWrk: the wallet (account, balances, deposit QR, ledger)."""

from __future__ import annotations

from typing import Any

import bpy

from ..bitwrk.money import format_amount
from ..blender import bridge, wallet


class BITWRK_PT_wallet(bpy.types.Panel):  # type: ignore[misc]
    bl_idname = "BITWRK_PT_wallet"
    bl_label = "BitWrk wallet"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "BitWrk"

    def draw(self, context: Any) -> None:
        layout, status = self.layout, bridge.get().status
        from .render import draw_busy

        draw_busy(layout, status)
        if not status.address:
            layout.label(text="not connected")
            layout.operator("bitwrk.refresh_wallet", text="Connect", icon="URL")
            self.draw_withdraw(layout, status, context.scene.bitwrk)
            return
        row = layout.row(align=True)
        row.label(text=status.address)
        row.operator("bitwrk.copy_account", text="", icon="COPYDOWN")
        if status.available is not None:
            layout.label(text=f"available {format_amount(status.available)}")
            layout.label(text=f"blocked {format_amount(status.blocked or 0)}")
        layout.operator("bitwrk.refresh_wallet", icon="FILE_REFRESH")
        self.draw_deposit(layout, status)
        box = layout.box()
        box.label(text="Recent movements")
        for entry in status.ledger:
            box.label(text=f"{entry.get('kind', entry.get('type', '?'))}"
                           f" {format_amount(int(entry.get('amount', 0)))}")
        self.draw_withdraw(layout, status, context.scene.bitwrk)

    @staticmethod
    def draw_withdraw(layout: Any, status: Any, settings: Any) -> None:
        """The withdrawal form, off with its reason when not connected or without payments;
        then the open withdrawals, each with Cancel while still pending."""
        from ..operators.wallet import form_off_reason

        box = layout.box()
        box.label(text="Withdraw", icon="EXPORT")
        reason = form_off_reason()
        if reason:
            box.label(text=reason, icon="INFO")
        col = box.column(align=True)
        col.enabled = not reason
        col.prop(settings, "withdraw_to")
        row = col.row(align=True)
        row.prop(settings, "withdraw_amount")
        row.prop(settings, "withdraw_unit", text="")
        col.operator("bitwrk.withdraw", icon="EXPORT")
        if reason:
            return
        if status.pending_withdrawals:
            box.label(text=f"pending {format_amount(status.pending_withdrawals)}")
        for w in status.withdrawals:
            row = box.row(align=True)
            row.label(text=f"#{w.get('id')} {format_amount(int(w.get('amount', 0)))} → "
                           f"{w.get('destination', '?')} ({w.get('state', '?')})")
            if w.get("state") == "pending":
                op = row.operator("bitwrk.cancel_withdrawal", text="Cancel", icon="CANCEL")
                op.withdrawal_id = int(w.get("id", 0))

    @staticmethod
    def draw_deposit(layout: Any, status: Any) -> None:
        if not status.deposit_address:
            if status.payments is False:
                layout.label(text=f"no deposit address: {status.payments_reason}",
                             icon="INFO")
                return
            layout.label(text="no deposit address", icon="INFO")
            layout.operator("bitwrk.request_deposit_address")
            return
        layout.label(text=wallet.bitcoin_uri(status.deposit_address))
        image = bpy.data.images.get(wallet.IMAGE_NAME)
        if image is not None and image.preview is not None and image.preview.icon_id:
            layout.template_icon(icon_value=image.preview.icon_id,
                                 scale=wallet.panel_scale(image))


CLASSES = (BITWRK_PT_wallet,)
