"""Selling from a headless Blender (``blender -b`` or the ``bpy`` module): the blocking
loop behind the extension's ``sell()``. Timers never fire headless, so it pumps the
daemon's events itself."""

from __future__ import annotations

import signal
import threading
import time
from typing import Any

from . import bridge


def sell(exchange: str, cores: int = 1, min_price: int = 10, cost_class: str = "512M",
         duration: float | None = None, unsandboxed: bool = False, host: str | None = None,
         public_url: str | None = None, device: str = "cpu") -> int:
    """Sell this computer's CPU cores from a headless Blender until Ctrl-C or SIGTERM
    (or ``duration`` seconds); returns 0 after a clean stop. ``device``: ``cpu``, or
    ``gpu`` / ``gpu:N`` / ``gpu:optix`` ... to sell GPU time (the ``~gpu`` articles).

    Works inside a Blender binary (``blender -b --python-expr``; render workers then run as
    ``blender -b`` processes too) and with the ``bpy`` module (workers run under
    ``sys.executable``). Timers never fire headless, so this loop pumps the daemon's events
    itself. On a stop signal no new bids are placed, trades in flight get a short grace,
    the workers are stopped and the daemon thread is joined (bounded).

    Render workers run in the OS sandbox (Linux: bubblewrap). Where there is none, selling
    is refused unless ``unsandboxed=True`` — then buyers' scenes run as your user.

    The endpoint listens on ``host`` (default: this computer's LAN address, or
    ``$BITWRK_SELL_HOST``) and is announced as ``public_url`` when given (port forwarding).
    """
    import bpy

    stop = threading.Event()
    previous = _stop_on_signals(stop)
    b = bridge.get()
    try:
        b.connect(exchange)
        url = b.selling.start(cores, min_price, (cost_class,),
                              "{}.{}".format(*bpy.app.version[:2]), host=host,
                              public_url=public_url, unsandboxed=unsandboxed,
                              device=device)
        if unsandboxed:
            print("WARNING: selling without a sandbox: buyers' scenes run as your user",
                  flush=True)
        print(f"seller {b.status.address} on {url}: min {min_price} sat, {cores} core(s),"
              f" device {device}",
              flush=True)
        _pump_until(b, stop, duration)
    except KeyboardInterrupt:
        pass
    finally:
        print("stopping the seller", flush=True)
        stopped = bridge.shutdown()
        _restore(previous)
    print("seller stopped" if stopped else "seller stopped (daemon thread still ending)",
          flush=True)
    return 0


def _stop_on_signals(stop: threading.Event) -> dict[int, Any]:
    """SIGINT and SIGTERM set ``stop`` (main thread only); the handlers they replace.
    Explicit handlers: Blender's own Python may not turn SIGINT into KeyboardInterrupt."""
    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, lambda *_: stop.set())
    return previous


def _restore(previous: dict[int, Any]) -> None:
    for number, handler in previous.items():
        if handler is not None:  # None: set from C (Blender's own); cannot be restored
            signal.signal(number, handler)


def _pump_until(b: bridge.Bridge, stop: threading.Event, duration: float | None) -> None:
    """Pump the daemon's events until ``stop`` (or ``duration`` seconds), printing the
    session's earnings as they change."""
    end = None if duration is None else time.monotonic() + duration
    earned = -1
    while not stop.is_set() and (end is None or time.monotonic() < end):
        b.pump(0.05)
        if b.status.earned != earned:
            earned = b.status.earned
            print(f"earned {earned} sat this session", flush=True)
        stop.wait(0.2)
