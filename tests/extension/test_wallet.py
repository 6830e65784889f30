"""The wallet against real exchange processes: one with payments (the test xpub of
``tests/payments`` and its fake chain behind a local Esplora server), a funded account, a
deposit address whose QR decodes (zxing-cpp) to ``bitcoin:<address>``, a withdrawal listed
as pending with the balance down, cancelled and restored; and one without payments, where
the form is off and says why."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiohttp import web

from tests.e2e.conftest import ServerProcess
from tests.extension.conftest import HAVE_BPY, HERE, fund_buyer, run_report, scratch_env

pytestmark = [pytest.mark.skipif(not HAVE_BPY, reason="the bpy module is not installed"),
              pytest.mark.slow]
FUNDS = 1_000_000  # what fund_buyer credits
AMOUNT = 60_000  # 600 µBTC, as the check enters it


@pytest.fixture
def esplora() -> Iterator[str]:
    """The payments tests' fake chain, served as an Esplora API from a thread."""
    from tests.payments.fakechain import FakeChain, esplora_app

    loop = asyncio.new_event_loop()
    runner = web.AppRunner(esplora_app(FakeChain()), access_log=None)
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", 0).start())
    port = runner.addresses[0][1]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.run_until_complete(runner.cleanup())
        loop.close()


def wallet_report(zip_path: Path, url: str, mode: str, base: Path, to: str = ""
                  ) -> dict[str, Any]:
    return run_report([str(HERE / "wallet_check.py"), str(zip_path), url, mode, to,
                       str(base / "qr.npy")], scratch_env(base), timeout=300)


def test_deposit_withdraw_and_cancel_against_an_exchange_with_payments(
        extension_zip: Path, esplora: str, tmp_path: Path) -> None:
    from tests.payments.conftest import REGTEST_ELSEWHERE, XPUB

    exchange = ServerProcess(tmp_path / "exchange", timeout_scale=0.5, extra_args=(
        "--xpub", XPUB, "--chain-backend", "esplora", "--chain-url", esplora,
        "--poll-seconds", "0.5")).start()
    base = tmp_path / "blender"
    base.mkdir()
    try:
        fund_buyer(exchange.url, exchange.db_path, scratch_env(base))
        r = wallet_report(extension_zip, exchange.url, "payments", base, REGTEST_ELSEWHERE)
    finally:
        exchange.close()
    assert r["connect"] == ["FINISHED"] and r["payments"] is True
    assert r["available0"] == FUNDS
    assert r["request"] == ["FINISHED"] and r["deposit_address"].startswith("bcrt1q")
    assert f"label:bitcoin:{r['deposit_address']}" in r["draw_deposit"]
    assert "enabled:False" not in r["draw_deposit"] and r["withdraw_poll"]
    zxingcpp = pytest.importorskip("zxingcpp")
    pixels = np.load(base / "qr.npy")  # Blender order: bottom row first, RGBA float
    gray = (np.flipud(pixels[:, :, 0]) * 255).round().astype(np.uint8)
    found = zxingcpp.read_barcodes(np.ascontiguousarray(gray))
    assert [x.text for x in found] == [f"bitcoin:{r['deposit_address']}"]

    assert r["withdraw"] == ["FINISHED"]
    after = r["after_withdraw"]
    assert after["available"] == FUNDS - AMOUNT and after["pending"] == AMOUNT
    [w] = after["withdrawals"]
    assert (w["state"], w["amount"], w["destination"]) == ("pending", AMOUNT,
                                                           REGTEST_ELSEWHERE)
    assert any(x.startswith(f"label:#{w['id']} ") and REGTEST_ELSEWHERE in x
               for x in r["draw_pending"])
    assert "operator:bitwrk.cancel_withdrawal" in r["draw_pending"]
    assert r["withdraw_too_much"][0] == "ERROR" and "balance" in r["withdraw_too_much"][1]

    assert r["cancel"] == ["FINISHED"]
    assert r["after_cancel"] == {"available": FUNDS, "pending": 0, "withdrawals": []}
    assert "operator:bitwrk.cancel_withdrawal" not in r["draw_cancelled"]
    assert r["stopped"] is True


def test_the_form_is_off_with_its_reason_without_payments(extension_zip: Path,
                                                          tmp_path: Path) -> None:
    exchange = ServerProcess(tmp_path / "exchange", timeout_scale=0.5).start()
    base = tmp_path / "blender"
    base.mkdir()
    try:
        r = wallet_report(extension_zip, exchange.url, "none", base)
    finally:
        exchange.close()
    unconnected = r["draw_unconnected"]
    assert "label:connect to an exchange to withdraw" in unconnected
    assert "enabled:False" in unconnected and "off:operator:bitwrk.withdraw" in unconnected
    assert r["connect"] == ["FINISHED"] and r["payments"] is False
    drawn = r["draw_connected"]
    reason = "label:Withdrawals off: this exchange takes no Bitcoin payments"
    assert reason in drawn
    assert "enabled:False" in drawn and "off:operator:bitwrk.withdraw" in drawn
    assert "off:prop:withdraw_to" in drawn and "off:prop:withdraw_amount" in drawn
    assert "operator:bitwrk.request_deposit_address" not in drawn
    assert r["request"] == ["CANCELLED"] and r["deposit_address"] is None
    assert r["withdraw_poll"] is False
