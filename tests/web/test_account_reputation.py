"""The account page shows the exchange's public seller record (issue 10 item 4), live:
a trade the seller lets expire without sending its endpoint counts as a missed one."""

from __future__ import annotations

from typing import Any

from tests.e2e.conftest import ServerProcess
from tests.web.test_exchange_pages import Party, fund, wait_live


def test_account_page_shows_the_seller_record(server: ServerProcess, page: Any) -> None:
    from playwright.sync_api import expect

    seller, buyer = Party(server), Party(server)
    fund(server, buyer, 50_000)
    page.goto(f"{server.url}/account/{seller.address}")
    wait_live(page)
    expect(page.locator("#rep-finished")).to_have_text("0")
    expect(page.locator("#rep-establish-timeouts")).to_have_text("0")
    seller.bid("sell", 700)
    buyer.bid("buy", 700)  # nobody sends anything: ESTABLISHING expires (3 s scaled)
    expect(page.locator("#rep-establish-timeouts")).to_have_text("1", timeout=30_000)
    expect(page.locator("#rep-disputes-lost")).to_have_text("0")
