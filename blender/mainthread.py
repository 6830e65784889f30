"""Run a function on Blender's main thread and wait for it (from a render thread).

F12 runs ``RenderEngine.render()`` on a render job thread; bpy data and operators such as
``wm.save_as_mainfile`` belong to the main thread (cursor, notifiers, edit-mode flush and
other add-ons' save handlers all run there). The GUI's main thread runs ``bpy.app.timers``
while the render job works, so a one-shot timer carries the call over. In ``bpy`` module
mode and ``blender -b`` engines already run on the main thread: the call is direct.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from ..bitwrk.errors import BitwrkError

T = TypeVar("T")
WAIT = 120.0  # s; saving a large scene takes a while, a main thread that never answers not


def call(fn: Callable[[], T], cancelled: Callable[[], bool] = lambda: False,
         timeout: float = WAIT) -> T:
    """``fn()`` on the main thread; its exception is raised here."""
    if threading.current_thread() is threading.main_thread():
        return fn()
    import bpy

    done = threading.Event()
    box: dict[str, Any] = {}

    def on_main() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed back to the waiting thread, raised there
            box["error"] = exc
        finally:
            done.set()

    bpy.app.timers.register(on_main, first_interval=0.0)
    deadline = time.monotonic() + timeout
    while not done.wait(0.05):
        if cancelled() or time.monotonic() > deadline:
            if bpy.app.timers.is_registered(on_main):
                bpy.app.timers.unregister(on_main)
            if done.is_set():
                break
            raise BitwrkError("cancelled before the scene was read" if cancelled() else
                              f"Blender's main thread did not answer in {timeout:.0f} s")
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]
