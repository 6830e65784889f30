"""BitWrk — render on a marketplace from inside Blender (Blender 4.2+ extension root).

Nothing from ``bpy`` is imported at module level, so ``import bitwrk`` and ``import service``
work with plain Python next to this file. ``register()`` starts no network and no daemon;
``unregister()`` removes the event-pump timer first, then stops the daemon (bounded join).
"""

from __future__ import annotations

from typing import Any


def register() -> None:
    from . import blender, operators, panels

    blender.register()
    operators.register()
    panels.register()


def unregister() -> None:
    from . import blender, operators, panels

    operators.timer.remove()  # before anything else: no pump may run into a stopping daemon
    panels.unregister()
    operators.unregister()
    blender.unregister()  # stops the daemon with a bounded join


def sell(exchange: str, cores: int = 1, min_price: int = 10, cost_class: str = "512M",
         duration: float | None = None, unsandboxed: bool = False, host: str | None = None,
         public_url: str | None = None, device: str = "cpu") -> int:
    """Sell this computer's CPU cores (or, with ``device`` ``gpu[:BACKEND][:N]``, its GPU)
    from a headless Blender until Ctrl-C or SIGTERM (or ``duration`` seconds); returns 0
    after a clean stop. See :func:`.blender.headless.sell`."""
    from .blender import headless

    return headless.sell(exchange, cores, min_price, cost_class, duration, unsandboxed,
                         host, public_url, device)


__all__: list[Any] = ["register", "sell", "unregister"]
