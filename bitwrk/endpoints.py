"""Which worker endpoints a buyer may talk to.

A seller names its endpoint in a signed ``endpoint`` message and the buyer then POSTs its
manifest there, so the URL is attacker-chosen input. The exchange and the buyer accept only
``http(s)://host[:port]/path``: no user info (``user@host`` hides the real host from a
hasty reader), no query or fragment, no whitespace or control characters. The buyer also
refuses hosts that resolve to loopback, link-local, private or otherwise non-global
addresses (a seller must not aim the buyer at the buyer's own router or services), unless
the user allowed local sellers (tests, demos, a LAN) — ``--allow-local-sellers``.

The address check resolves the name once before connecting; a name whose DNS answer
changes between that check and aiohttp's own lookup (DNS rebinding) is not caught here.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import SplitResult, urlsplit

from .errors import InvalidRequest

__all__ = ["MAX_URL", "EndpointRefused", "check_endpoint_url", "check_public_host",
           "is_public_address"]

MAX_URL = 256
_SCHEMES = ("http", "https")


class EndpointRefused(InvalidRequest):
    """A seller endpoint the buyer will not connect to."""

    code = "endpoint_refused"


def check_endpoint_url(url: object) -> SplitResult:
    """The parsed URL if it is ``http(s)://host[:port]/path`` and nothing more."""
    if not isinstance(url, str) or not 0 < len(url) <= MAX_URL:
        raise EndpointRefused(f"an endpoint is a URL of at most {MAX_URL} characters")
    if not url.isascii() or any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        raise EndpointRefused("an endpoint URL has no spaces, control or non-ASCII characters")
    if "?" in url or "#" in url:
        raise EndpointRefused("an endpoint URL has no query or fragment")
    parts = urlsplit(url)
    if parts.scheme not in _SCHEMES or not url.startswith(parts.scheme + "://"):
        raise EndpointRefused("an endpoint URL starts with http:// or https://")
    if "@" in parts.netloc:
        raise EndpointRefused("an endpoint URL has no user info (user@host)")
    if parts.path and not parts.path.startswith("/"):
        raise EndpointRefused("an endpoint URL's path starts with /")
    try:
        port = parts.port
    except ValueError:
        raise EndpointRefused("an endpoint URL's port is a number 1-65535") from None
    if not parts.hostname or port == 0 or "\\" in url:
        raise EndpointRefused("an endpoint URL names a host")
    return parts


def is_public_address(address: str) -> bool:
    """True for a globally routable unicast address (not loopback, private, link-local,
    multicast, reserved, unspecified, or an IPv4-mapped/6to4 form of one)."""
    ip = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


async def check_public_host(url: str) -> None:
    """Refuse ``url`` unless every address its host resolves to is public."""
    parts = check_endpoint_url(url)
    host = parts.hostname
    assert host is not None
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, parts.port or 80, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise EndpointRefused(f"cannot resolve the endpoint's host {host!r}: {exc}") from None
    addresses = sorted({str(info[4][0]) for info in infos})
    local = [a for a in addresses if not is_public_address(a)]
    if local or not addresses:
        raise EndpointRefused(
            f"the endpoint's host {host!r} is a local or private address ({', '.join(local)});"
            " allow local sellers (--allow-local-sellers, or LAN mode) to trade with it",
            host=host, addresses=addresses)
