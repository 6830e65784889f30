"""Browser fixtures: Playwright driving Debian's ``/usr/bin/chromium`` headless on loopback.

``playwright install`` (a browser download) is not used: Playwright's driver comes from PyPI
and the browser from the distribution (``make test`` installs it when missing, as root).
Tests skip with the reason when either is absent. Screenshots land in
``artifacts/screenshots/``.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest

from bitwrk.client import ExchangeClient
from bitwrk.keys import PrivateKey
from tests.e2e.conftest import server, server_factory  # noqa: F401 - fixtures used here

CHROMIUM = Path(os.environ.get("BITWRK_CHROMIUM", "/usr/bin/chromium"))
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
T = TypeVar("T")


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A fresh Chromium profile per test module (a persistent context on a new directory)."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium (make test does, as root)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    with sync_api.sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=str(CHROMIUM),
            headless=True, args=ARGS, viewport={"width": 1280, "height": 900},
        )
        context.set_default_timeout(10_000)
        yield context
        context.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A new tab; JavaScript errors and CSP violations on it fail the test."""
    tab = browser.new_page()
    problems: list[str] = []
    tab.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    tab.on("console", lambda msg: problems.append(f"console: {msg.text}")
           if msg.type == "error" and "Content Security Policy" in msg.text else None)
    yield tab
    tab.close()
    assert not problems, problems


def shot(page: Any, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def exchange_call(url: str, key: PrivateKey | None,
                  work: Callable[[ExchangeClient], Awaitable[T]]) -> T:
    """Run one client call from a synchronous (browser) test. On a thread of its own:
    Playwright's sync API keeps an event loop running on the test's thread."""
    async def go() -> T:
        async with ExchangeClient(url, key) as client:
            return await work(client)
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, go()).result(timeout=30)


def fund(server_url: str, operator: PrivateKey, address: str, amount: int) -> None:
    """Credit play money (the operator's deposit)."""
    async def deposit(client: ExchangeClient) -> Any:
        return await client.deposit(address, amount, kind="play",
                                    uid="web-" + secrets.token_hex(6))
    exchange_call(server_url, operator, deposit)
