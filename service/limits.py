"""Bounded connections and logs for the serving process (issue 11).

- At most ``max_connections`` connections in total and ``max_connections_per_ip`` per
  client address; the total is also kept below the process's file-descriptor limit, so
  accepting can never run out of descriptors (1,100 idle streams once starved ``/info``
  and filled the log with ``accept()`` tracebacks). A connection over a cap is closed
  right after it is accepted.
- A request's headers must arrive within ``header_timeout`` of the connection opening or
  of the previous response (aiohttp's keep-alive timer closes a connection whose next
  request is not complete when it fires); bodies are read with ``body_timeout`` by the
  handlers (``service.api.read_body``).
- A logging filter lets each distinct message through at most ``burst`` times per
  ``window`` seconds and then says how many were dropped.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from collections import Counter
from typing import Any

from aiohttp import web

from .config import Limits

log = logging.getLogger("bitwrk.exchange")
_NO_DIGITS = str.maketrans("", "", "0123456789")
BACKLOG = 128  # asyncio accepts up to this many at once, before any can be refused
# Descriptors kept for the store, the WAL, logs and outgoing sockets, plus one accept burst.
FD_RESERVE = 64 + BACKLOG


def raise_fd_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; the usable connection count."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return max(1, soft - FD_RESERVE)


class ConnectionGuard:
    """Counts open connections per client IP on an aiohttp ``web.Server``."""

    def __init__(self, limits: Limits, fd_room: int) -> None:
        self.max_total = min(limits.max_connections, fd_room)
        self.max_per_ip = limits.max_connections_per_ip
        self.total = 0
        self.per_ip: Counter[str] = Counter()
        self.refused = 0
        self._ip_of: dict[int, str] = {}

    def install(self, server: web.Server) -> None:
        made, lost = server.connection_made, server.connection_lost

        def connection_made(handler: Any, transport: asyncio.Transport) -> None:
            made(handler, transport)
            self.opened(id(handler), transport)

        def connection_lost(handler: Any, exc: BaseException | None = None) -> None:
            self.closed(id(handler))
            lost(handler, exc)

        # Instance attributes shadow the methods aiohttp's RequestHandler calls.
        setattr(server, "connection_made", connection_made)  # noqa: B010
        setattr(server, "connection_lost", connection_lost)  # noqa: B010

    def opened(self, key: int, transport: asyncio.Transport) -> None:
        peer = transport.get_extra_info("peername")
        ip = str(peer[0]) if isinstance(peer, tuple) and peer else "?"
        self._ip_of[key] = ip
        self.total += 1
        self.per_ip[ip] += 1
        if self.total > self.max_total or self.per_ip[ip] > self.max_per_ip:
            self.refused += 1
            log.warning("connection from %s refused: %d open (%d from it)", ip, self.total,
                        self.per_ip[ip])
            # Next turn of the loop, once aiohttp has set the connection up (aborting inside
            # connection_made leaves its handler task without a manager); frees the
            # descriptor at once, connection_lost follows.
            asyncio.get_running_loop().call_soon(transport.abort)

    def closed(self, key: int) -> None:
        ip = self._ip_of.pop(key, None)
        if ip is None:
            return
        self.total -= 1
        self.per_ip[ip] -= 1
        if self.per_ip[ip] <= 0:
            del self.per_ip[ip]


def quiet_accept_errors(loop: asyncio.AbstractEventLoop) -> None:
    """A burst of connects can still reach the descriptor limit before the guard refuses
    them; asyncio then pauses accepting for a second and recovers by itself. Log that as
    one line (rate-limited like every message), not a traceback per attempt."""
    def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if isinstance(exc, OSError) and "accept" in str(context.get("message", "")):
            log.warning("accept paused: %s", exc.strerror or exc)
            return
        loop.default_exception_handler(context)

    loop.set_exception_handler(handle)


class RateLimitFilter(logging.Filter):
    """At most ``burst`` records per distinct (logger, message template) per ``window``."""

    def __init__(self, burst: int = 5, window: float = 60.0) -> None:
        super().__init__()
        self.burst, self.window = burst, window
        self._seen: dict[tuple[str, str], list[float]] = {}  # key -> [window start, count]
        self._clock = time.monotonic

    def filter(self, record: logging.LogRecord) -> bool:
        # The first line without digits: task names, ports and counts vary per record.
        first = str(record.msg).split("\n", 1)[0][:120]
        key = (record.name, first.translate(_NO_DIGITS))
        now = self._clock()
        seen = self._seen.get(key)
        if seen is None or now - seen[0] >= self.window:
            dropped = 0 if seen is None else int(seen[1]) - self.burst
            if len(self._seen) > 10_000:  # bounded: forget everything rather than grow
                self._seen.clear()
            self._seen[key] = [now, 1]
            if dropped > 0:
                record.msg = f"{record.msg} [{dropped} similar messages suppressed]"
            return True
        seen[1] += 1
        return seen[1] <= self.burst


def quiet_logs(burst: int = 5, window: float = 60.0) -> None:
    """Install the rate limit on every handler of the root logger (after basicConfig)."""
    limiter = RateLimitFilter(burst, window)
    for handler in logging.getLogger().handlers:
        handler.addFilter(limiter)
