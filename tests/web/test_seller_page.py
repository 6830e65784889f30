"""The headless seller's status page in a real browser: a unit in progress, its earnings
after, the balance from the exchange, and the pause/resume button (which a foreign page
cannot press)."""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bitwrk.daemon import BuyJob, Daemon, DaemonConfig, Mandate, Offer, StartSelling
from tests.e2e.conftest import ServerProcess
from tests.e2e.test_daemon_trading import FakeRender, make_units
from tests.web.conftest import exchange_call, fund, shot

ARTICLE = "net.bitwrk/blender/5.0/512M"
pytestmark = pytest.mark.slow


@pytest.fixture
def daemons(tmp_path: Path, server_factory: Callable[..., ServerProcess]
            ) -> Iterator[tuple[ServerProcess, Callable[[str], Daemon]]]:
    exchange = server_factory(timeout_scale=0.2).start()
    made: list[Daemon] = []

    def make(name: str) -> Daemon:
        daemon = Daemon(DaemonConfig(exchange.url, data_dir=tmp_path / name / "data",
                                     cache_dir=tmp_path / name / "cache",
                                     allow_local_sellers=True))  # sellers on loopback
        daemon.start()
        made.append(daemon)
        return daemon

    yield exchange, make
    for daemon in made:
        assert daemon.stop(20), "daemon thread did not stop"


def post_pause(url: str, headers: dict[str, str]) -> int:
    request = urllib.request.Request(url + "api/pause", data=b'{"paused": true}',
                                     headers={"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def open_sell_bids(exchange: ServerProcess, address: str) -> int:
    bids = exchange_call(exchange.url, None, lambda c: c.bids(address, state="placed"))
    return len(bids)


def wait_until(check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)


def test_seller_page_shows_units_earnings_and_pauses(
    tmp_path: Path, daemons: tuple[ServerProcess, Callable[[str], Daemon]], page: Any
) -> None:
    from playwright.sync_api import expect

    exchange, make = daemons
    seller, buyer = make("seller"), make("buyer")
    seller.call(seller.start_selling(StartSelling(Offer((ARTICLE,), 100), FakeRender(2.5))), 30)
    url = seller.call(seller.start_status_page(), 10)
    assert url.startswith("http://127.0.0.1:")
    page.goto(url)
    expect(page.locator("#state")).to_have_text("selling")
    expect(page.locator("#available")).to_have_text("0 sat")
    fund(exchange.url, exchange.operator_key, buyer.address, 100_000)
    units = make_units(tmp_path / "job", buyer, 1, os.urandom(20_000))
    buyer.submit(BuyJob(ARTICLE, Mandate(1000, 10_000, time.time() + 600), tuple(units),
                        tmp_path / "out", concurrency=1))
    # the unit in progress: its slot, transaction, buyer and stage
    rendering = page.locator("tr[data-slot='0'][data-stage='rendering']")
    expect(rendering).to_be_visible(timeout=20_000)
    expect(rendering).to_contain_text("working")
    expect(rendering.locator("td.mono")).to_have_attribute("title", buyer.address)
    expect(rendering.locator("a")).to_have_attribute(
        "href", f"{exchange.url}/tx/1")
    shot(page, "seller-working")
    # and after: paid, earned, the balance from the exchange
    expect(page.locator("#units tr[data-stage='paid']")).to_have_count(1, timeout=30_000)
    expect(page.locator("#units tr[data-stage='paid'] .earned")).to_have_text("+100 sat")
    expect(page.locator("#earned")).to_have_text("100 sat")
    expect(page.locator("#available")).to_have_text("100 sat", timeout=5_000)
    expect(page.locator("tr[data-slot='0']")).not_to_have_attribute("data-stage", "rendering")
    shot(page, "seller-paid")
    # pause: the open sell bid is withdrawn; resume: it comes back
    wait_until(lambda: open_sell_bids(exchange, seller.address) == 1, 10)
    page.locator("#pause").click()
    expect(page.locator("#state")).to_have_text("paused")
    expect(page.locator("#pause")).to_have_text("Resume selling")
    wait_until(lambda: open_sell_bids(exchange, seller.address) == 0, 5)
    expect(page.locator("tr[data-slot='0']")).to_have_attribute("data-stage", "paused",
                                                                timeout=5_000)
    shot(page, "seller-paused")
    page.locator("#pause").click()
    expect(page.locator("#state")).to_have_text("selling")
    wait_until(lambda: open_sell_bids(exchange, seller.address) == 1, 10)


def test_pause_needs_the_pages_token_and_a_local_origin(
    daemons: tuple[ServerProcess, Callable[[str], Daemon]], page: Any
) -> None:
    _, make = daemons
    seller = make("seller")
    seller.call(seller.start_selling(StartSelling(Offer((ARTICLE,), 100), FakeRender())), 30)
    url = seller.call(seller.start_status_page(), 10)
    page.goto(url)
    token = page.locator("meta[name='bitwrk-token']").get_attribute("content")
    assert token
    host = url.split("/")[2]
    assert post_pause(url, {}) == 403
    assert post_pause(url, {"X-BitWrk-Token": "guess"}) == 403
    assert post_pause(url, {"X-BitWrk-Token": token, "Origin": "http://evil.example"}) == 403
    assert post_pause(url, {"X-BitWrk-Token": token, "Host": "evil.example"}) == 403
    assert seller.seller is not None and seller.seller.selling.is_set()
    # a page on another origin cannot press the button: its fetch is refused by CORS
    page.goto("about:blank")
    outcome = page.evaluate("""async (url) => {
        try {
            const r = await fetch(url + "api/pause", {method: "POST",
                headers: {"Content-Type": "application/json"}, body: '{"paused": true}'});
            return r.status;
        } catch (e) { return "blocked"; }
    }""", url)
    assert outcome in ("blocked", 403)
    assert seller.seller.selling.is_set()
    assert post_pause(url, {"X-BitWrk-Token": token, "Origin": f"http://{host}"}) == 200
    assert not seller.seller.selling.is_set()
    status = json.loads(urllib.request.urlopen(url + "api/status", timeout=5).read())
    assert status["paused"] is True and status["address"] == seller.address
