"""The GUI's event pump: a persistent ``bpy.app.timers`` callback (never fires headless)."""

from __future__ import annotations

import logging

import bpy

from ..blender import bridge

log = logging.getLogger("bitwrk.extension")
INTERVAL = 0.1  # s between pumps
BUDGET = 0.005  # s of Blender's thread per pump


def _tick() -> float:
    try:
        _pump()
    except Exception:  # a timer that raises is dropped by Blender: log, keep pumping
        log.exception("BitWrk pump")
    return INTERVAL


def _pump() -> None:
    b = bridge.get()
    busy, notice = b.status.busy, b.status.notice
    b.pump(BUDGET)
    from .animation_runs import RUNS, poll_all

    if RUNS:  # progress shows in the BitWrk panel (status_text_set from a timer crashes 4.3)
        poll_all()
        redraw_needed = True
    else:
        redraw_needed = False
    sync_qr(b.status.deposit_address)
    if redraw_needed or (b.status.busy, b.status.notice) != (busy, notice):
        from .background import redraw

        redraw()


def sync_qr(address: str | None) -> None:
    """Keep the deposit QR image equal to the address shown (it changes with a refresh)."""
    from ..blender import wallet

    image = bpy.data.images.get(wallet.IMAGE_NAME)
    uri = wallet.bitcoin_uri(address) if address else None
    if uri is None or (image is not None and image.get("bitwrk_uri") == uri):
        return
    wallet.qr_image(bpy, uri)


def ensure() -> None:
    if not bpy.app.timers.is_registered(_tick):
        bpy.app.timers.register(_tick, first_interval=INTERVAL, persistent=True)


def remove() -> None:
    if bpy.app.timers.is_registered(_tick):
        bpy.app.timers.unregister(_tick)


def registered() -> bool:
    return bool(bpy.app.timers.is_registered(_tick))
