"""The exchange's HTML pages as HTTP resources (the browser tests are in tests/web/): served
with a same-origin-only CSP, static files shipped in the repo, unknown ids refused."""

from __future__ import annotations

import re

from service.web.pages import STATIC
from tests.conftest import Party
from tests.service.conftest import Api


async def test_pages_are_served_with_a_self_only_policy(
    api: Api, buyer: Party, seller: Party
) -> None:
    txid = await api.trade(buyer, seller)
    for path in ("/", f"/tx/{txid}", f"/account/{buyer.address}"):
        resp = await api.client.get(path)
        assert resp.status == 200, path
        assert resp.content_type == "text/html"
        assert "default-src 'self'" in resp.headers["Content-Security-Policy"]
        html = await resp.text()
        assert "<script" in html and "http" not in html.replace("http-equiv", "")


async def test_every_asset_a_page_names_is_shipped(api: Api) -> None:
    for page in STATIC.glob("*.html"):
        for asset in re.findall(r'(?:src|href)="(/static/[^"]+)"', page.read_text()):
            resp = await api.client.get(asset)
            assert resp.status == 200, asset
    scripts = " ".join(p.read_text() for p in STATIC.glob("*.js"))
    assert ".innerHTML" not in scripts  # server data goes in as text only


async def test_unknown_transaction_and_bad_address_are_refused(api: Api) -> None:
    for path, status in (("/tx/999", 404), ("/tx/abc", 404), ("/tx/0", 404),
                         ("/account/not-an-address", 400)):
        resp = await api.client.get(path)
        assert resp.status == status, path
        assert (await resp.json())["error"]
