"""Selling this computer's CPU cores from Blender, with or without its UI (no bpy in
here): a worker pool, the daemon's seller agent and its endpoint."""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

from .addresses import reachable

if TYPE_CHECKING:
    from ..bitwrk.daemon import Daemon
    from .bridge import Bridge

log = logging.getLogger("bitwrk.extension")


class Selling:
    """Owns the render worker pool while this Blender sells."""

    def __init__(self, bridge: Bridge) -> None:
        self._bridge = bridge
        self.pool: Any = None  # a WorkerPool while selling

    def start(self, cores: int, min_price: int, classes: tuple[str, ...], blender: str,
              python: str | None = None, host: str | None = None, port: int = 0,
              public_url: str | None = None, unsandboxed: bool = False,
              device: str = "cpu") -> str:
        """Sell this computer's CPU cores (or, with ``device`` ``gpu[:BACKEND][:N]``, its
        GPU: the ``~gpu`` articles); returns the worker endpoint URL buyers are told
        (``public_url``, else ``http://host:port``). ``host`` None: ``$BITWRK_SELL_HOST``
        (tests and the demo set 127.0.0.1), else this computer's LAN address.

        Workers run in the OS sandbox; where there is none this raises
        ``SandboxUnavailable`` unless the user opted out (``unsandboxed``)."""
        if host is None:
            host = reachable(os.environ.get("BITWRK_SELL_HOST", ""))
        from ..bitwrk.articles import article_id
        from ..bitwrk.daemon import Offer, StartSelling
        from ..bitwrk.seller.executor import RenderExecutor
        from ..bitwrk.seller.pool import WorkerPool, allowed_cpus, blender_binary

        daemon = self._bridge.daemon
        if daemon is None:
            raise RuntimeError("connect to an exchange first")
        cpus = set(sorted(allowed_cpus())[:max(1, cores)])
        largest = classes[-1]
        kwargs: dict[str, Any] = {"python": python} if python else {}
        # Inside a Blender binary sys.executable is Blender's bundled Python, which has no
        # bpy: workers then run as `blender -b` (bpy module mode: sys.executable as before).
        pool = WorkerPool(cpus, 1, cost_class=largest, blender=blender_binary(),
                          unsandboxed=unsandboxed, device=device, **kwargs)
        if pool.device.gpu:  # a missing GPU fails here, not at the first buyer's unit
            daemon.call(pool.detect(), 120)
        self.pool = pool
        articles = tuple(article_id(blender, c, gpu=pool.device.gpu) for c in classes)
        url: str = daemon.call(daemon.start_selling(
            StartSelling(Offer(articles, min_price, 1), RenderExecutor(pool), host, port,
                         public_url)), 60)
        self._bridge.status.selling = True
        return url

    def stop(self, daemon: Daemon, timeout: float) -> None:
        """Stop the seller (a short grace for trades in flight) and close the pool."""
        if self.pool is None:
            return
        try:
            if daemon.seller is not None:
                daemon.call(daemon.seller.stop(grace=5.0), timeout)
            daemon.call(self.pool.close(), timeout)
        except Exception:
            log.exception("stopping the seller")
        self.pool = None
