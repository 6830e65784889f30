"""BitWrk — render on a marketplace from inside Blender (Blender 4.2+ extension root).

Nothing from ``bpy`` is imported at module level, so ``import bitwrk`` and ``import service``
work with plain Python next to this file. ``register()`` starts no network and no daemon;
``unregister()`` removes the event-pump timer first, then stops the daemon (bounded join).
"""

from __future__ import annotations

from typing import Any


def register() -> None:
    from . import engine, operators, panels

    engine.register()
    operators.register()
    panels.register()


def unregister() -> None:
    from . import engine, operators, panels

    operators.timer.remove()  # before anything else: no pump may run into a stopping daemon
    panels.unregister()
    operators.unregister()
    engine.unregister()  # stops the daemon with a bounded join


def sell(exchange: str, cores: int = 1, min_price: int = 10, cost_class: str = "512M",
         duration: float | None = None) -> int:
    """Run a headless seller in this process until Ctrl-C (or ``duration`` seconds).

    Timers never fire headless, so this loop pumps the daemon's events itself.
    """
    import time

    import bpy

    from .engine import bridge

    b = bridge.get()
    b.connect(exchange)
    url = b.start_selling(cores, min_price, (cost_class,), "{}.{}".format(*bpy.app.version[:2]))
    print(f"seller {b.status.address} on {url}: min {min_price} sat, {cores} core(s)",
          flush=True)
    end = None if duration is None else time.monotonic() + duration
    earned = -1
    try:
        while end is None or time.monotonic() < end:
            b.pump(0.05)
            if b.status.earned != earned:
                earned = b.status.earned
                print(f"earned {earned} sat this session", flush=True)
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        bridge.shutdown()
    return 0


__all__: list[Any] = ["register", "sell", "unregister"]
