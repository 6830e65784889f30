"""Sellers behind NAT, on loopback (runs everywhere): a real exchange advertising a real
relay process; seller daemons tunnel to it, buyer daemons trade through it. The relay sees
only ciphertext, refuses strangers, and a tunnel that drops mid-unit ends in a re-trade,
never a second payment (docs/relay.md)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bitwrk.cas import JobManifest
from bitwrk.client import ExchangeClient
from bitwrk.daemon import BuyJob, Daemon, DaemonConfig, Mandate, Offer, StartSelling
from bitwrk.daemon.buyer import EXR_MAGIC
from bitwrk.daemon.events import JobDone, UnitDone
from bitwrk.daemon.peer import sign_peer
from bitwrk.keys import PrivateKey
from bitwrk.protocol import NonceSource
from bitwrk.wire import Transaction
from tests.e2e.conftest import REPO, ServerProcess
from tests.e2e.relayproc import CutProxy, RelayProcess, relay_pair
from tests.e2e.test_daemon_trading import ARTICLE, FakeRender, collect, fund, make_units

pytestmark = pytest.mark.slow


@pytest.fixture
def net(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """An exchange and its relay (timeouts scaled by 0.2, or the test's parameter) and a
    maker of daemons that trade with loopback sellers."""
    scale = float(getattr(request, "param", 0.2))
    exchange, relay = relay_pair(tmp_path, timeout_scale=scale)
    made: list[Daemon] = []

    def daemon(name: str) -> Daemon:
        d = Daemon(DaemonConfig(exchange.url, data_dir=tmp_path / name / "data",
                                cache_dir=tmp_path / name / "cache", allow_local_sellers=True))
        d.start()
        made.append(d)
        return d

    try:
        yield {"exchange": exchange, "relay": relay, "daemon": daemon, "tmp": tmp_path}
    finally:
        for d in made:
            d.stop(20)
        relay.close()
        exchange.close()


def sell(seller: Daemon, render: FakeRender, price: int = 100, reach: str = "relay",
         relay_url: str | None = None) -> str:
    url: str = seller.call(seller.start_selling(StartSelling(
        Offer((ARTICLE,), price), render, reach=reach, relay_url=relay_url)), 60)
    return url


def buy(net: dict[str, Any], buyer: Daemon, count: int, scene: bytes, name: str,
        concurrency: int = 2, timeout: float = 150) -> tuple[BuyJob, list[Any]]:
    units = make_units(net["tmp"] / name, buyer, count, scene)
    job = BuyJob(ARTICLE, Mandate(1000, 100_000, time.time() + 600), tuple(units),
                 net["tmp"] / name / "out", concurrency=concurrency)
    buyer.submit(job)
    events = collect(buyer, job.job_id, timeout)
    done = next(e for e in events if isinstance(e, JobDone))
    assert (done.done, done.failed) == (count, 0), events[-8:]
    for unit_id, raw in units:  # each result is the render of exactly that unit
        result = (job.out_dir / f"{unit_id}.exr").read_bytes()
        assert json.loads(result[len(EXR_MAGIC):])["spec"] == JobManifest.from_json(raw).spec
    return job, events


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


def check_ledger(exchange: ServerProcess, buyer: str, units: int) -> list[dict[str, Any]]:
    """Money is conserved, and each unit was paid exactly once."""
    totals = get(exchange.url + "/api/v1/info")["totals"]
    assert totals["available"] + totals["blocked"] + totals["fees"] == totals["deposits"]
    bids = get(f"{exchange.url}/api/v1/accounts/{buyer}/bids?limit=200")
    txs = [get(f"{exchange.url}/api/v1/transactions/{b['txid']}") for b in bids if b["txid"]]
    assert len([t for t in txs if t["phase"] == "FINISHED"]) == units
    return txs


def test_a_seller_via_the_relay_sells_and_the_relay_sees_only_ciphertext(
        net: dict[str, Any]) -> None:
    exchange: ServerProcess = net["exchange"]
    relay: RelayProcess = net["relay"]
    assert exchange.info["relay"] == relay.url  # advertised in /api/v1/info
    seller, buyer = net["daemon"]("seller"), net["daemon"]("buyer")
    url = sell(seller, FakeRender())
    assert url == f"{relay.url}/s/{seller.address}/bitwrk/v1"
    assert seller.seller is not None
    assert seller.seller.status()["reach"]["mode"] == "via relay"
    fund(exchange, buyer.address, 1_000_000)
    scene = os.urandom(400_000)
    _, events = buy(net, buyer, 3, scene, "job")
    assert {e.seller for e in events if isinstance(e, UnitDone)} == {seller.address}
    check_ledger(exchange, buyer.address, 3)
    # the relay forwarded the scene, sealed: none of its bytes appear in what it carried
    carried = relay.capture.read_bytes()
    assert len(carried) > len(scene)
    for start in range(0, len(scene) - 32, 40_000):
        assert scene[start:start + 32] not in carried


def test_a_stranger_without_a_trade_is_refused(net: dict[str, Any]) -> None:
    exchange: ServerProcess = net["exchange"]
    relay: RelayProcess = net["relay"]
    seller, buyer = net["daemon"]("seller"), net["daemon"]("buyer")
    base = sell(seller, FakeRender())
    fund(exchange, buyer.address, 1_000_000)
    _, events = buy(net, buyer, 1, os.urandom(50_000), "job", concurrency=1)
    txid = next(e.txid for e in events if isinstance(e, UnitDone))
    stranger = PrivateKey.generate("regtest")
    exchange_id = exchange.info["exchange"]
    cases = {
        "no header": {},
        "a stranger's signature": sign_peer(stranger, NonceSource(), exchange_id,
                                            "manifest", txid, workhash="ab" * 32),
        "the buyer's trade, another seller": None,
    }
    for what, headers in cases.items():
        target = f"{base}/tx/{txid}/manifest"
        if headers is None:  # a real buyer header sent to a seller it has no trade with
            other = PrivateKey.generate("regtest").address
            target = f"{relay.url}/s/{other}/bitwrk/v1/tx/{txid}/manifest"
            headers = sign_peer(PrivateKey.generate("regtest"), NonceSource(), exchange_id,
                                "manifest", txid)
        request = urllib.request.Request(target, data=b"x" * 1000, headers=headers)
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 403, (what, refused.value.read())
    assert relay.status()["streams"] == 0
    # the status the buyer polls is the relay's own: up while the tunnel is
    assert get(f"{base}/status")["tunnel"] == "up"


def test_auto_mode_probes_and_falls_back_to_the_relay(tmp_path: Path) -> None:
    """auto: the exchange's probe cannot reach a loopback endpoint (it calls only public
    addresses), so the seller tunnels; allowed to probe loopback, it sells directly."""
    for allow, expected in ((False, "via relay"), (True, "direct")):
        exchange, relay = relay_pair(tmp_path / str(allow), allow_local_probes=allow)
        seller = Daemon(DaemonConfig(exchange.url, data_dir=tmp_path / f"s{allow}" / "d",
                                     cache_dir=tmp_path / f"s{allow}" / "c"))
        try:
            seller.start()
            url = sell(seller, FakeRender(), reach="auto")
            assert seller.seller is not None
            reach = seller.seller.status()["reach"]
            assert reach["mode"] == expected, reach
            assert url.startswith(relay.url) == (expected == "via relay")
        finally:
            seller.stop(20)
            relay.close()
            exchange.close()


def test_tunnel_dropped_mid_transfer_then_relay_and_exchange_restart(
        net: dict[str, Any]) -> None:
    """Seller A (cheapest) sits behind a network we cut while the buyer's chunks are on
    their way; the unit is re-traded with seller B and paid once. Then the relay itself
    is killed and restarted: both sellers reconnect and trade again; then the exchange."""
    exchange: ServerProcess = net["exchange"]
    relay: RelayProcess = net["relay"]
    proxy = CutProxy(relay.port)
    try:
        a, b, buyer = (net["daemon"](n) for n in ("a", "b", "buyer"))
        sell(a, FakeRender(), price=50, relay_url=proxy.url)
        sell(b, FakeRender(), price=100)
        relay.wait_tunnels(2)
        fund(exchange, buyer.address, 1_000_000)
        assert a.seller is not None
        seller_a = a.seller

        def cut_when_receiving() -> None:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if any(t.stage == "receiving work" for t in list(seller_a.trades.values())):
                    proxy.cut()
                    return
                time.sleep(0.01)

        cutter = threading.Thread(target=cut_when_receiving)
        cutter.start()
        # big enough that the chunk stream is still flowing when the cut lands
        buy(net, buyer, 2, os.urandom(24_000_000), "job", concurrency=1)
        cutter.join()
        assert not proxy.open, "the cut never happened"
        txs = check_ledger(exchange, buyer.address, 2)
        lost = [t for t in txs if t["seller"] == a.address and t["phase"] != "FINISHED"]
        assert lost, "seller A lost no trade to the cut"
        proxy.heal()
        relay.wait_tunnels(2)  # A's tunnel came back through the healed network

        relay.kill()
        relay.restart()
        relay.wait_tunnels(2)
        buy(net, buyer, 2, os.urandom(100_000), "again", concurrency=2)
        check_ledger(exchange, buyer.address, 4)

        exchange.restart()  # SIGKILL, same database and port: the tunnels stay up
        buy(net, buyer, 2, os.urandom(100_000), "after", concurrency=2)
        check_ledger(exchange, buyer.address, 6)
        assert relay.status()["tunnels"] == 2
    finally:
        proxy.close()


@pytest.mark.parametrize("net", [0.1], indirect=True)  # working 30 s: A's trade expires soon
def test_tunnel_dropped_mid_render_ends_in_a_retrade(net: dict[str, Any]) -> None:
    exchange: ServerProcess = net["exchange"]
    relay: RelayProcess = net["relay"]
    proxy = CutProxy(relay.port)
    try:
        a, b, buyer = (net["daemon"](n) for n in ("a", "b", "buyer"))
        sell(a, FakeRender(delay=8.0), price=50, relay_url=proxy.url)
        sell(b, FakeRender(), price=100)
        relay.wait_tunnels(2)
        fund(exchange, buyer.address, 1_000_000)
        assert a.seller is not None
        seller_a = a.seller

        def cut_when_rendering() -> None:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if any(t.stage == "rendering" for t in list(seller_a.trades.values())):
                    proxy.cut()
                    return
                time.sleep(0.02)

        cutter = threading.Thread(target=cut_when_rendering)
        cutter.start()
        _, events = buy(net, buyer, 1, os.urandom(200_000), "job", concurrency=1)
        cutter.join()
        assert not proxy.open
        done = [e for e in events if isinstance(e, UnitDone)]
        assert [e.seller for e in done] == [b.address]
        txs = check_ledger(exchange, buyer.address, 1)
        assert any(t["seller"] == a.address for t in txs)

        # A's trade is never paid: it ends refunded once its deadline passes
        async def settled() -> Transaction:
            lost = next(t["id"] for t in txs if t["seller"] == a.address)
            async with ExchangeClient(exchange.url) as c:
                for _ in range(150):
                    tx = await c.transaction(lost)
                    if tx.retired is not None:
                        return tx
                    await asyncio.sleep(0.5)
            raise AssertionError("A's trade never settled")
        assert asyncio.run(settled()).phase != "FINISHED"
        check_ledger(exchange, buyer.address, 1)
    finally:
        proxy.close()



def test_relay_bench_quick_runs_and_prints_its_rows() -> None:
    """The relay rows of ``make bench`` run end to end (figures are not asserted: they
    depend on the machine's load)."""
    proc = subprocess.run([sys.executable, "-m", "bench.relay", "--quick"], cwd=REPO,
                          capture_output=True, text=True, timeout=240, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for row in ("sealed chunk stream, via relay", "relay throughput / direct",
                "per-unit overhead of the relay"):
        assert row in proc.stdout, proc.stdout
