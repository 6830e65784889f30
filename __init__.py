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
         duration: float | None = None, unsandboxed: bool = False, host: str | None = None,
         public_url: str | None = None, reach: str = "auto") -> int:
    """Sell this computer's CPU cores from a headless Blender until Ctrl-C or SIGTERM
    (or ``duration`` seconds); returns 0 after a clean stop.

    Works inside a Blender binary (``blender -b --python-expr``; render workers then run as
    ``blender -b`` processes too) and with the ``bpy`` module (workers run under
    ``sys.executable``). Timers never fire headless, so this loop pumps the daemon's events
    itself. On a stop signal no new bids are placed, trades in flight get a short grace,
    the workers are stopped and the daemon thread is joined (bounded).

    Render workers run in the OS sandbox (Linux: bubblewrap). Where there is none, selling
    is refused unless ``unsandboxed=True`` — then buyers' scenes run as your user.

    The endpoint listens on ``host`` (default: this computer's LAN address, or
    ``$BITWRK_SELL_HOST``) and is announced as ``public_url`` when given (port forwarding).
    ``reach``: "auto" (the exchange probes that URL; behind NAT the seller falls back to the
    exchange's relay by itself), "direct" or "relay" (docs/relay.md).
    """
    import signal
    import threading
    import time

    import bpy

    from .engine import bridge

    stop = threading.Event()
    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        # Explicit handlers: Blender's own Python may not turn SIGINT into KeyboardInterrupt.
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, lambda *_: stop.set())
    b = bridge.get()
    try:
        b.connect(exchange)
        url = b.start_selling(cores, min_price, (cost_class,),
                              "{}.{}".format(*bpy.app.version[:2]), host=host,
                              public_url=public_url, unsandboxed=unsandboxed, reach=reach)
        if unsandboxed:
            print("WARNING: selling without a sandbox: buyers' scenes run as your user",
                  flush=True)
        print(f"seller {b.status.address} on {url}: min {min_price} sat, {cores} core(s),"
              f" {b.status.sell_reach}", flush=True)
        end = None if duration is None else time.monotonic() + duration
        earned = -1
        while not stop.is_set() and (end is None or time.monotonic() < end):
            b.pump(0.05)
            if b.status.earned != earned:
                earned = b.status.earned
                print(f"earned {earned} sat this session", flush=True)
            stop.wait(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        print("stopping the seller", flush=True)
        stopped = bridge.shutdown()
        for signum, handler in previous.items():
            if handler is not None:  # None: set from C (Blender's own); cannot be restored
                signal.signal(signum, handler)
    print("seller stopped" if stopped else "seller stopped (daemon thread still ending)",
          flush=True)
    return 0


__all__: list[Any] = ["register", "sell", "unregister"]
