"""Drive a real Blender window (run inside the trixie chroot under Xvfb).

``blender --factory-startup --online-mode --python gui_driver.py -- CONFIG.json``

Installs the extension zip through the extension system, opens the scene (scripts off),
chooses the BitWrk engine and presses F12 the way a user does (``render.render`` with
``INVOKE_DEFAULT`` from a timer: the engine runs on Blender's render thread). Then the
wallet panel with a deposit QR is drawn and the X screen saved; then Blender is asked to
quit. Every step writes its outcome and time into ``REPORT.json`` beside the config.
Timers fire in a real window (unlike the bpy module), so the steps are a timer chain.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import bpy

MODULE = "bl_ext.user_default.bitwrk"
CONFIG = json.loads(Path(sys.argv[sys.argv.index("--") + 1]).read_text())
OUT = Path(CONFIG["out"])
REPORT: dict[str, Any] = {"steps": [], "blender": bpy.app.version_string,
                          "online_access": bpy.app.online_access}
T0 = time.monotonic()


def note(event: str, **data: Any) -> None:
    REPORT["steps"].append({"step": event, "t": round(time.monotonic() - T0, 2), **data})
    (OUT / "REPORT.json").write_text(json.dumps(REPORT, indent=1))
    print(f"GUI {event} {data}", flush=True)


def shot(name: str) -> None:
    """The X screen (``screen.screenshot`` comes out black under Xvfb)."""
    subprocess.run(["import", "-window", "root", str(OUT / name)], check=False, timeout=60)


def window_override() -> dict[str, Any]:
    window = bpy.context.window_manager.windows[0]
    return {"window": window, "screen": window.screen}


def install_and_open() -> None:
    result = bpy.ops.extensions.package_install_files(
        filepath=CONFIG["zip"], repo="user_default", enable_on_install=True)
    note("installed", result=sorted(result), enabled=MODULE in bpy.context.preferences.addons)
    bpy.context.preferences.filepaths.use_scripts_auto_execute = False
    bpy.ops.wm.open_mainfile(filepath=CONFIG["blend"], use_scripts=False)


def setup_scene() -> None:
    scene = bpy.context.scene
    scene.render.engine = "BITWRK"
    settings = scene.bitwrk
    settings.exchange_url, settings.tiles, settings.max_price = CONFIG["exchange"], 4, 100.0
    settings.allow_local_sellers = True  # the seller is on loopback
    note("scene", engine=scene.render.engine, layers=[v.name for v in scene.view_layers])


RENDER: dict[str, Any] = {}


@bpy.app.handlers.persistent  # type: ignore[untyped-decorator]
def on_render_end(*_args: Any) -> None:
    RENDER.setdefault("ended", time.monotonic())


def press_f12() -> None:
    for handlers in (bpy.app.handlers.render_complete, bpy.app.handlers.render_cancel):
        handlers.append(on_render_end)
    bpy.context.preferences.view.render_display_type = "NONE"  # the main window stays
    RENDER["started"] = time.monotonic()
    with bpy.context.temp_override(**window_override()):
        result = bpy.ops.render.render("INVOKE_DEFAULT")
    note("f12", result=sorted(result))


def render_done() -> bool:
    return "ended" in RENDER and not bpy.app.is_job_running("RENDER")


def save_result() -> None:
    scene = bpy.context.scene
    image = bpy.data.images["Render Result"]
    ims = scene.render.image_settings
    if hasattr(ims, "media_type"):
        ims.media_type = "MULTI_LAYER_IMAGE"
    ims.file_format, ims.color_depth, ims.exr_codec = "OPEN_EXR_MULTILAYER", "32", "ZIP"
    image.save_render(filepath=str(OUT / "result.exr"), scene=scene)
    bridge = sys.modules[MODULE + ".blender.bridge"]
    p = bridge.get().status.progress
    engine = sys.modules[MODULE + ".blender.render_engine"]
    note("rendered", seconds=round(RENDER["ended"] - RENDER["started"], 2), done=p.done,
         failed=p.failed, spent=p.spent, tiles=len([e for e in engine.RESULT_LOG
                                                    if e[5] == "tile"]))
    shot("render.png")


def show_wallet() -> None:
    bridge = sys.modules[MODULE + ".blender.bridge"]
    bridge.get().status.deposit_address = CONFIG["deposit_address"]
    for area in bpy.context.window_manager.windows[0].screen.areas:
        if area.type == "VIEW_3D":
            area.spaces[0].show_region_ui = True
            area.tag_redraw()
    note("wallet", address=bridge.get().status.address)


def choose_tab() -> None:
    """After the sidebar has been drawn once (before, its tab reads "UNSUPPORTED")."""
    for area in bpy.context.window_manager.windows[0].screen.areas:
        if area.type == "VIEW_3D":
            for region in area.regions:
                if region.type == "UI":
                    show_in_active_tab(region)
            area.tag_redraw()


def show_in_active_tab(region: Any) -> None:
    """Selecting the sidebar's BitWrk tab takes a mouse click (``active_panel_category``
    is read-only): the wallet panel is re-registered under the tab that is open instead."""
    panel = bpy.types.BITWRK_PT_wallet
    tab = region.active_panel_category or "Tool"
    if tab != panel.bl_category:
        bpy.utils.unregister_class(panel)
        panel.bl_category = tab
        bpy.utils.register_class(panel)
    note("tab", tab=tab)


def wallet_shot() -> None:
    image = bpy.data.images.get("BitWrk deposit QR")
    note("qr", uri=image.get("bitwrk_uri") if image else None,
         preview=list(image.preview.image_size) if image and image.preview else None)
    shot("wallet.png")


def bridge_status() -> Any:
    return sys.modules[MODULE + ".blender.bridge"].get().status


def wallet_now() -> dict[str, int]:
    """Balances straight from the exchange (the harness may block; a user's click may not)."""
    b = sys.modules[MODULE + ".blender.bridge"].get()
    b.account.refresh()
    return {"available": int(b.status.available or 0), "blocked": int(b.status.blocked or 0)}


CANCEL: dict[str, Any] = {}


def slow_f12() -> None:
    """F12 again with slow tiles (8 tiles, many samples, one seller core): cancelled below
    once the first tile has landed, the way the panel's cancel button does it."""
    scene = bpy.context.scene
    scene.cycles.samples, scene.bitwrk.tiles = CONFIG["slow_samples"], 8
    CANCEL["before"] = wallet_now()
    engine = sys.modules[MODULE + ".blender.render_engine"]
    CANCEL["log_start"] = len(engine.RESULT_LOG)
    RENDER.clear()
    press_f12()


def first_tile_landed() -> bool:
    engine = sys.modules[MODULE + ".blender.render_engine"]
    return any(e[5] == "tile" for e in engine.RESULT_LOG[CANCEL["log_start"]:])


def press_cancel() -> None:
    with bpy.context.temp_override(**window_override()):
        bpy.ops.bitwrk.cancel("INVOKE_DEFAULT")
    CANCEL["at"] = time.monotonic()


def settled() -> bool:
    """Render over and no money blocked any more (trades in flight ended or refunded)."""
    if not render_done():
        return False
    CANCEL["after"] = wallet_now()
    return CANCEL["after"]["blocked"] == 0


def report_cancel() -> None:
    engine = sys.modules[MODULE + ".blender.render_engine"]
    tiles = [e for e in engine.RESULT_LOG[CANCEL["log_start"]:] if e[5] == "tile"]
    p = bridge_status().progress
    note("cancelled", stop_s=round(RENDER["ended"] - CANCEL["at"], 2), tiles=len(tiles),
         done=p.done, total=p.total, spent=p.spent, before=CANCEL["before"],
         after=CANCEL["after"])


ANIM: dict[str, Any] = {}


def start_animation() -> None:
    scene = bpy.context.scene
    scene.frame_start, scene.frame_end, scene.bitwrk.tiles = 1, 4, 1
    scene.render.filepath = CONFIG["anim_out"] + "/shot_"
    with bpy.context.temp_override(**window_override()):
        result = bpy.ops.bitwrk.render("INVOKE_DEFAULT", animation=True)
    note("animation", result=sorted(result))


def animation_buying() -> bool:
    job = sys.modules[MODULE + ".blender.animation"].ACTIVE
    if job is not None and job.job_id:
        ANIM["job_id"] = job.job_id
    return bool(ANIM.get("job_id")) and bridge_status().progress.done >= 1


def open_another_file() -> None:
    ANIM["frames_before"] = bridge_status().progress.frames_written
    bpy.ops.wm.open_mainfile(filepath=CONFIG["blend"], use_scripts=False)
    note("opened", job_id=ANIM["job_id"], stage=bridge_status().progress.stage)


def animation_over() -> bool:
    return not sys.modules[MODULE + ".operators.animation_runs"].RUNS


def report_animation() -> None:
    p = bridge_status().progress
    note("animation_over", stage=p.stage, frames_written=p.frames_written, done=p.done,
         total=p.total, notice=bridge_status().notice)


def start_second_animation() -> None:
    """The file was reopened (settings as saved): slow tiles again, then quit mid-job."""
    ANIM.clear()
    setup_scene()  # the reopened file has none of the settings made above
    bpy.context.scene.cycles.samples = CONFIG["slow_samples"]
    start_animation()


def units_in_flight() -> bool:
    """Trades under way (or the run already over: then the test fails on the report)."""
    started = animation_buying() or bool(ANIM.get("job_id"))
    p = bridge_status().progress
    over = not sys.modules[MODULE + ".operators.animation_runs"].RUNS
    return over or (started and p.in_flight >= 1 and p.stage == "buying")


def quit_mid_job() -> None:
    status = bridge_status()
    p = status.progress
    note("quit_mid_job", job_id=ANIM.get("job_id"), in_flight=p.in_flight, done=p.done,
         stage=p.stage, notice=status.notice, error=status.error)
    quit_blender()


def quit_blender() -> None:
    note("quit")
    with bpy.context.temp_override(**window_override()):
        bpy.ops.wm.quit_blender()


STEPS: list[tuple[str, Callable[[], Any], Callable[[], bool], float]] = [
    # (name, action, ready-to-go-on check, timeout seconds)
    ("install", install_and_open, lambda: True, 60),
    ("setup", setup_scene, lambda: True, 10),
    ("f12", press_f12, render_done, 600),
    ("save", save_result, lambda: True, 30),
    ("wallet", show_wallet, lambda: True, 10),
    ("tab", choose_tab, lambda: True, 5),
    ("redraw", lambda: None, lambda: True, 5),
    ("wallet_shot", wallet_shot, lambda: True, 10),
    ("slow_f12", slow_f12, first_tile_landed, 600),
    ("cancel", press_cancel, settled, 300),
    ("cancel_report", report_cancel, lambda: True, 10),
    ("animation", start_animation, animation_buying, 600),
    ("open_file", open_another_file, animation_over, 300),
    ("animation_over", report_animation, lambda: True, 10),
    ("animation2", start_second_animation, units_in_flight, 600),
    ("quit", quit_mid_job, lambda: True, 10),
]
STATE = {"index": 0, "since": time.monotonic(), "acted": False}


def tick() -> float | None:
    index = STATE["index"]
    if index >= len(STEPS):
        return None
    name, action, ready, timeout = STEPS[index]
    try:
        if not STATE["acted"]:
            STATE["acted"], STATE["since"] = True, time.monotonic()
            action()
            return 0.5
        if ready():
            STATE["index"], STATE["acted"] = index + 1, False
            return 1.0
        if time.monotonic() - STATE["since"] > timeout:
            note("timeout", at=name)
            quit_blender()
            return None
    except Exception:
        note("error", at=name, traceback=traceback.format_exc())
        quit_blender()
        return None
    return 0.25


bpy.app.timers.register(tick, first_interval=2.0, persistent=True)
