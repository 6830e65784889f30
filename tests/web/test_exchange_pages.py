"""The exchange's pages in a real browser against a real exchange process: the market page
shows a bid placed through the API within a second, a transaction's page follows its phases
as they happen, an account's page shows its balance and ledger live."""

from __future__ import annotations

import hashlib
import secrets
import time
from typing import Any

import pytest

from bitwrk.keys import PrivateKey
from bitwrk.protocol import work_secret_hash
from bitwrk.wire import Bid, Transaction
from tests.conftest import receipt, sealed_key
from tests.e2e.conftest import ServerProcess
from tests.web.conftest import exchange_call, shot
from tests.web.conftest import fund as fund_address

ARTICLE = "net.bitwrk/blender/5.0/512M"
pytestmark = pytest.mark.slow


class Party:
    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self.key = PrivateKey.generate("regtest")

    @property
    def address(self) -> str:
        return self.key.address

    def bid(self, side: str, price: int, article: str = ARTICLE) -> Bid:
        return exchange_call(self.server.url, self.key,
                             lambda c: c.place_bid(side, article, price))

    def say(self, txid: int, action: str, **fields: Any) -> Transaction:
        return exchange_call(self.server.url, self.key,
                             lambda c: c.send_message(txid, action, **fields))


def exchange_id(server: ServerProcess) -> str:
    return exchange_call(server.url, None, lambda c: c.exchange_id())


def fund(server: ServerProcess, party: Party, amount: int) -> None:
    fund_address(server.url, server.operator_key, party.address, amount)


def wait_live(page: Any) -> None:
    """The page is subscribed to the event stream (what follows must arrive through it)."""
    page.wait_for_selector("body[data-live='1']")


def test_market_page_shows_a_bid_within_a_second(server: ServerProcess, page: Any) -> None:
    from playwright.sync_api import expect

    page.goto(server.url + "/")
    wait_live(page)
    seller, buyer = Party(server), Party(server)
    fund(server, buyer, 100_000)
    seen = time.monotonic()
    seller.bid("sell", 1234)
    expect(page.locator("[data-side='sell'][data-price='1234']")).to_be_visible(timeout=1000)
    assert time.monotonic() - seen < 1.5  # the bid's round trip plus the page's update
    expect(page.locator(".best-ask")).to_have_text("1,234 sat")
    # a buyer takes it: the trade shows as the last price and in the last trades
    seen = time.monotonic()
    bid = buyer.bid("buy", 1500)
    expect(page.locator(f"tr[data-txid='{bid.txid}']")).to_be_visible(timeout=1000)
    expect(page.locator(".last-price")).to_have_text("1,234 sat")
    expect(page.locator("[data-side='sell']")).to_have_count(0)
    for price in (1100, 1250, 1400):  # more trades for the chart
        seller.bid("sell", price)
        buyer.bid("buy", price)
    for side, price in (("sell", 1500), ("sell", 1500), ("sell", 1650), ("buy", 1000),
                        ("buy", 900)):
        (seller if side == "sell" else buyer).bid(side, price)
    expect(page.locator("[data-side='buy'][data-price='900']")).to_be_visible(timeout=1000)
    expect(page.locator(".chart circle")).to_have_count(4)
    expect(page.locator(".best-bid")).to_have_text("1,000 sat")
    shot(page, "exchange-market")


def test_market_page_names_cpu_and_gpu_articles(server: ServerProcess, page: Any) -> None:
    from playwright.sync_api import expect

    seller = Party(server)
    seller.bid("sell", 500)
    seller.bid("sell", 600, article=ARTICLE + "~gpu")
    page.goto(server.url + "/")
    wait_live(page)
    expect(page.locator("h2", has_text="Blender 5.0 · 512M · GPU")).to_be_visible(timeout=3000)
    expect(page.locator("h2", has_text="Blender 5.0 · 512M · CPU")).to_be_visible()


def test_transaction_page_follows_the_phases(server: ServerProcess, page: Any) -> None:
    from playwright.sync_api import expect

    seller, buyer = Party(server), Party(server)
    fund(server, buyer, 100_000)
    seller.bid("sell", 2000)
    txid = buyer.bid("buy", 2000).txid
    assert txid is not None
    page.goto(f"{server.url}/tx/{txid}")
    wait_live(page)
    phase = page.locator("#phase")
    expect(phase).to_have_text("ESTABLISHING")
    workhash = hashlib.sha256(secrets.token_bytes(16)).hexdigest()
    proof = hashlib.sha256(secrets.token_bytes(32)).hexdigest()  # SHA256(buyer secret)
    digest = work_secret_hash(workhash, proof)
    enc = hashlib.sha256(secrets.token_bytes(8)).hexdigest()
    steps = [
        (buyer, "work", {"workhash": workhash, "worksecrethash": digest}, "ESTABLISHING"),
        (seller, "endpoint", {"workerurl": f"http://127.0.0.1:9/bitwrk/v1/tx/{txid}"},
         "TRANSMITTING"),
        (seller, "received", {"secretproof": proof}, "WORKING"),
        (seller, "result", {"encresulthash": enc, "receipt": receipt(
            buyer.key, exchange_id(server), txid, seller.address, enc),
                            "resultkey": sealed_key()}, "UNVERIFIED"),
        (buyer, "accept", {}, "FINISHED"),
    ]
    for count, (party, action, fields, after) in enumerate(steps, 1):
        party.say(txid, action, **fields)
        expect(page.locator(".message")).to_have_count(count, timeout=1000)
        expect(phase).to_have_text(after)
        message = page.locator(".message").nth(count - 1)
        expect(message.locator(".action")).to_contain_text(action)
        expect(message.locator(".document")).to_contain_text(f"action={action}&")
        expect(message.locator(".sig")).to_contain_text("signature ")
        expect(message.locator(".addr")).to_have_attribute("title", party.address)
        if after == "WORKING":
            expect(page.locator(".timeline .step.current")).to_have_attribute(
                "data-phase", "WORKING")
            shot(page, "exchange-transaction-working")
    for name in ("ESTABLISHING", "TRANSMITTING", "WORKING", "UNVERIFIED", "FINISHED"):
        step = page.locator(f".timeline .step[data-phase='{name}']")
        expect(step).to_have_class("step done")
        expect(step.locator(".when")).not_to_be_empty()
    expect(page.locator("#movements tr[data-kind='settle']")).to_have_count(1)
    expect(page.locator("#movements")).to_contain_text("+2,000 sat")
    shot(page, "exchange-transaction")


def test_account_page_shows_balances_and_ledger_live(server: ServerProcess, page: Any) -> None:
    from playwright.sync_api import expect

    seller, buyer = Party(server), Party(server)
    fund(server, buyer, 50_000)
    seller.bid("sell", 700)
    buyer.bid("buy", 700)
    page.goto(f"{server.url}/account/{buyer.address}")
    wait_live(page)
    expect(page.locator("#available")).to_have_text("49,279 sat")  # 700 + 3 % fee (21) blocked
    expect(page.locator("#blocked")).to_have_text("721 sat")
    expect(page.locator("#ledger tr[data-kind]")).to_have_count(2)
    fund(server, buyer, 1_000)
    expect(page.locator("#available")).to_have_text("50,279 sat", timeout=1000)
    expect(page.locator("#ledger tr[data-kind]")).to_have_count(3)
    buyer.bid("buy", 650)
    expect(page.locator("tr[data-state='placed']")).to_have_count(1, timeout=1000)
    shot(page, "exchange-account")
    page.goto(f"{server.url}/account/not-an-address")
    assert "not_an_address" not in page.content()  # a JSON error, not a page
