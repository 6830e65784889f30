"""Which address a seller or LAN hub listens on and announces (no bpy in here)."""

from __future__ import annotations

import contextlib


def lan_ip() -> str:
    """This computer's address on its LAN: the interface outgoing traffic would use
    (127.0.0.1 when there is none)."""
    import socket

    ip = "127.0.0.1"
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("10.255.255.255", 1))  # UDP: picks the outgoing interface, sends nothing
        ip = s.getsockname()[0]
    return str(ip)


def reachable(host: str) -> str:
    """The address to bind and announce for a setting: "" means this computer's LAN
    address (never 127.0.0.1 by default: no other machine could reach it)."""
    return host.strip() or lan_ip()


def shown_url(url: str) -> str:
    """A hub bound to every interface, as other computers reach it (this one's LAN IP)."""
    if "://0.0.0.0:" not in url:
        return url
    return url.replace("0.0.0.0", lan_ip(), 1)
