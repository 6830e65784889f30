"""The buyer's LAN hub from Blender's side: trusted worker computers get units first
(no bpy in here). The hub itself runs in the daemon (``bitwrk/daemon/lan.py``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..bitwrk.daemon import StartLanHub
from ..bitwrk.errors import BitwrkError
from .addresses import shown_url
from .status import NOT_CONNECTED

if TYPE_CHECKING:
    from .bridge import Bridge


class LanHubControl:
    """Owns the hub's URL for the running daemon (one hub per daemon)."""

    def __init__(self, bridge: Bridge) -> None:
        self._bridge = bridge
        self.url = ""  # as the hub was bound ("" when none runs)

    def forget(self) -> None:
        """The daemon stopped, and its hub with it."""
        self.url = ""
        self._bridge.status.lan_url, self._bridge.status.lan_workers = "", ()

    def start(self, workers: tuple[str, ...], host: str = "127.0.0.1", port: int = 0,
              timeout: float = 30.0) -> str:
        """Serve units to these trusted worker addresses first (the daemon's LAN hub); the
        URL workers join with. Started once per daemon; later calls replace the list."""
        daemon = self._bridge.daemon
        if daemon is None:
            raise BitwrkError(NOT_CONNECTED)
        workers = tuple(dict.fromkeys(workers))
        if self.url:
            hub = daemon.buyer.lan if daemon.buyer is not None else None
            if hub is not None:
                async def retrust() -> None:  # on the daemon's loop, which reads it
                    hub.trusted = set(workers)

                daemon.call(retrust(), timeout)
        else:
            url: str = daemon.call(daemon.start_lan_hub(StartLanHub(workers, host, port)),
                                   timeout)
            self.url = url
        status = self._bridge.status
        status.lan_workers = workers
        status.lan_url = shown_url(self.url)
        return status.lan_url
