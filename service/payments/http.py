"""The HTTP transport both chain backends share: one aiohttp session, bounded concurrency,
and retries with exponential backoff and jitter for transient failures (after ElectrumX's
daemon client). What is not transient raises at once."""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import Any

import aiohttp

from .errors import BackendUnavailable

log = logging.getLogger("bitwrk.payments")
TRANSIENT_STATUS = frozenset({429, 502, 503, 504})


class HttpTransport:
    def __init__(self, name: str, *, timeout: float = 10.0, attempts: int = 3,
                 backoff: float = 0.5, concurrency: int = 4,
                 headers: dict[str, str] | None = None) -> None:
        self.name = name
        self.attempts = max(1, attempts)
        self.backoff = backoff
        self._timeout = aiohttp.ClientTimeout(total=timeout, connect=min(timeout, 5.0))
        self._headers = headers or {}
        self._limit = asyncio.Semaphore(concurrency)
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(self, method: str, url: str, **kwargs: Any) -> tuple[int, bytes]:
        """(status, body); BackendUnavailable once every attempt timed out, failed to
        connect or got a transient status."""
        delay = self.backoff
        for attempt in range(1, self.attempts + 1):
            try:
                return await self._once(method, url, **kwargs)
            except (aiohttp.ClientError, TimeoutError, BackendUnavailable) as exc:
                reason = getattr(exc, "message", None) or type(exc).__name__
                if attempt == self.attempts:
                    raise BackendUnavailable(f"{self.name}: {reason}", backend=self.name,
                                             url=url, attempts=attempt) from exc
                wait = delay * (1 + secrets.randbelow(250) / 1000)
                log.warning("%s %s failed (%s); retry %d/%d in %.2f s", self.name, url,
                            reason, attempt, self.attempts - 1, wait)
                await asyncio.sleep(wait)
                delay *= 2
        raise AssertionError("unreachable")

    async def _once(self, method: str, url: str, **kwargs: Any) -> tuple[int, bytes]:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout, headers=self._headers)
        async with self._limit, self._session.request(method, url, **kwargs) as resp:
            body = await resp.read()
            if resp.status in TRANSIENT_STATUS:
                raise BackendUnavailable(f"HTTP {resp.status}", backend=self.name)
            return resp.status, body
