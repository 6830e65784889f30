"""Render Properties → BitWrk: exchange, mode, prices, progress, selling."""

from __future__ import annotations

from typing import Any

import bpy

from ..bitwrk.money import format_amount
from ..blender import bridge


class BITWRK_PT_render(bpy.types.Panel):  # type: ignore[misc]
    bl_idname = "BITWRK_PT_render"
    bl_label = "BitWrk"
    bl_space_type = "PROPERTIES"
    bl_region_type = "WINDOW"
    bl_context = "render"

    def draw(self, context: Any) -> None:
        layout, settings = self.layout, context.scene.bitwrk
        status = bridge.get().status
        row = layout.row(align=True)
        row.prop(settings, "exchange_url", text="")
        row.operator("bitwrk.connect", text="", icon="URL")
        state = "connected" if status.connected else "not connected"
        layout.label(text=f"{state} {status.error}".strip(),
                     icon="CHECKMARK" if status.connected else "ERROR")
        if status.outage:
            layout.label(text=status.outage, icon="ERROR")
        draw_busy(layout, status)
        layout.prop(settings, "mode", expand=True)
        col = layout.column(align=True)
        row = col.row(align=True)
        row.prop(settings, "max_price")
        row.prop(settings, "price_unit", text="")
        col.prop(settings, "budget")
        col.prop(settings, "tiles")
        col.prop(settings, "cost_class")
        col.prop(settings, "concurrency")
        layout.prop(settings, "trusted_only")
        layout.prop(settings, "min_seller_finished")
        layout.prop(settings, "exclude_sellers")
        layout.prop(settings, "accept_gpu")
        layout.prop(settings, "allow_local_sellers")
        layout.prop(settings, "lan_workers")
        if settings.lan_workers.strip():
            layout.prop(settings, "lan_host")
        if status.lan_url:
            box = layout.box()
            box.label(text=f"LAN hub: {status.lan_url}", icon="NETWORK_DRIVE")
            box.label(text=f"serving {len(status.lan_workers)} worker(s) first; on each, "
                           "join with this URL (JoinLan)")
        layout.prop(settings, "allow_missing")
        row = layout.row()
        row.operator("bitwrk.estimate")
        row.operator("bitwrk.quote", text="", icon="TIME")
        if status.estimate is not None:
            units, most = status.estimate
            row.label(text=f"{units} units, ≤ {format_amount(most)}")
        row = layout.row(align=True)
        row.operator("bitwrk.render", text="Render frame", icon="RENDER_STILL")
        row.operator("bitwrk.render", text="Render animation",
                     icon="RENDER_ANIMATION").animation = True
        row.operator("bitwrk.cancel", text="", icon="CANCEL")
        draw_progress(layout, status.progress)


def draw_busy(layout: Any, status: Any) -> None:
    """What runs in the background now (connect, wallet, ...) and the last outcome."""
    if status.busy:
        layout.label(text=f"working: {', '.join(status.busy)}…", icon="SORTTIME")
    elif status.notice:
        layout.label(text=status.notice, icon="INFO")


def draw_progress(layout: Any, p: Any) -> None:
    if not p.job_id:
        return
    box = layout.box()
    box.label(text=f"done {p.done}/{p.total} · in flight {p.in_flight} · failed {p.failed}")
    box.label(text=f"spent {format_amount(p.spent)}")
    if p.frames:
        box.label(text=f"{p.stage} · frames written {p.frames_written}/{p.frames}")


class BITWRK_PT_sell(bpy.types.Panel):  # type: ignore[misc]
    bl_idname = "BITWRK_PT_sell"
    bl_label = "Also sell on this computer"
    bl_space_type = "PROPERTIES"
    bl_region_type = "WINDOW"
    bl_context = "render"
    bl_parent_id = "BITWRK_PT_render"
    bl_options = {"DEFAULT_CLOSED"}  # noqa: RUF012 - Blender reads a plain set

    def draw(self, context: Any) -> None:
        layout, settings = self.layout, context.scene.bitwrk
        status = bridge.get().status
        layout.prop(settings, "sell_device")
        layout.prop(settings, "sell_cores")
        layout.prop(settings, "sell_min_price")
        layout.prop(settings, "sell_unsandboxed")
        if settings.sell_unsandboxed:
            layout.label(text="No sandbox: buyers' scenes could read your files",
                         icon="ERROR")
        layout.prop(settings, "sell_host")
        layout.prop(settings, "sell_public_url")
        if status.selling:
            layout.label(text=f"selling {status.sell_reach} · earned"
                              f" {format_amount(status.earned)}",
                         icon="CHECKMARK")
        else:
            layout.operator("bitwrk.sell")


CLASSES = (BITWRK_PT_render, BITWRK_PT_sell)
