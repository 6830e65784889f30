"""Outages (issue 19), each through real processes on loopback: the client rides out a
restarting exchange, a resent request whose answer was lost is not applied twice, an
exchange restart moves open deadlines by its downtime, and the CLIs facing an unreachable
exchange say one clear line with a documented exit code."""

from __future__ import annotations

import asyncio
import secrets
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from bitwrk.client import ExchangeClient
from bitwrk.errors import ExchangeUnreachable
from bitwrk.keys import PrivateKey
from tests.blender.conftest import needs_bpy, scene_dir  # noqa: F401 - a fixture
from tests.e2e.conftest import REPO, ServerProcess, free_port

pytestmark = pytest.mark.slow
ARTICLE = "net.bitwrk/blender/4.2/512M"
RESTING = "net.bitwrk/blender/4.2/2G"


async def _funded(server: ServerProcess, amount: int = 100_000) -> ExchangeClient:
    buyer = ExchangeClient(server.url, PrivateKey.generate("regtest"))
    async with ExchangeClient(server.url, server.operator_key) as op:
        await op.deposit(buyer.address, amount, kind="play", uid="t-" + secrets.token_hex(8))
    return buyer


async def test_a_client_waits_for_a_restarting_exchange(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory().start()
    client = ExchangeClient(server.url, retry_for=60.0)
    try:
        await client.info()
        server.kill()
        call = asyncio.create_task(client.info())
        await asyncio.sleep(1.5)
        assert not call.done()
        assert (client.outage() or "").startswith("exchange unreachable since ")
        await server.restart_async()
        info = await asyncio.wait_for(call, 30)
        assert info["exchange"] and client.outage() is None
    finally:
        await client.close()


async def test_giving_up_says_since_when_and_why() -> None:
    client = ExchangeClient(f"http://127.0.0.1:{free_port()}", retry_for=1.0)
    try:
        with pytest.raises(ExchangeUnreachable) as caught:
            await client.info()
    finally:
        await client.close()
    assert "unreachable for 1 s" in str(caught.value)
    assert "Cannot connect" in str(caught.value)
    assert caught.value.data["since"] <= time.time()


async def test_a_bid_whose_answer_was_lost_is_placed_once(server: ServerProcess) -> None:
    """A proxy passes the first POST on to the exchange, then drops the connection without
    an answer; the client resends the same signed bid and learns it had landed."""
    dropped: list[str] = []

    async def relay(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        async with aiohttp.ClientSession() as s, s.request(
                request.method, server.url + request.path_qs, data=body,
                headers={"Content-Type": request.content_type}) as upstream:
            data, status = await upstream.read(), upstream.status
        if request.method == "POST" and not dropped:
            dropped.append(request.path)
            assert request.transport is not None
            request.transport.close()  # the answer is lost in transit
        return web.Response(body=data, status=status, content_type="application/json")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", relay)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    buyer = await _funded(server)
    client = ExchangeClient(f"http://127.0.0.1:{port}", buyer.key, retry_for=10.0)
    try:
        bid = await client.place_bid("buy", ARTICLE, 1000)
        assert dropped == ["/api/v1/bids"]
        listed = await buyer.bids()
        assert [b.id for b in listed] == [bid.id]
        assert bid.state == "placed"
    finally:
        await client.close()
        await buyer.close()
        await runner.cleanup()


async def test_a_restart_moves_open_deadlines_by_the_downtime(server: ServerProcess) -> None:
    """--timeout-scale 0.05: establishing lasts 3 s, a bid 6 s. The exchange is down for
    longer than either; afterwards the trade goes on and the resting bid is still there."""
    buyer = await _funded(server)
    seller = ExchangeClient(server.url, PrivateKey.generate("regtest"))
    try:
        await seller.place_bid("sell", ARTICLE, 1000)
        matched = await buyer.place_bid("buy", ARTICLE, 1000)
        tx = await buyer.transaction(matched.txid)
        resting = await seller.place_bid("sell", RESTING, 700)
        killed = time.time()
        server.kill()
        await asyncio.sleep(7.0)
        await server.restart_async()
        down = time.time() - killed
        after = await buyer.transaction(tx.id)
        assert after.phase == "ESTABLISHING", after
        assert down - 1.5 <= after.timeout - tx.timeout <= down + 1.5, (after, down)
        still = await seller.bid(resting.id)
        assert still.state == "placed", still
        assert down - 1.5 <= still.expires - resting.expires <= down + 1.5, still
        await buyer.send_message(tx.id, "work", workhash="ab" * 32,
                                 worksecrethash="cd" * 32)
        view = await seller.send_message(tx.id, "endpoint",
                                         workerurl="http://127.0.0.1:9/x")
        assert view.phase == "TRANSMITTING"
        crossing = await buyer.place_bid("buy", RESTING, 800)  # the book was restored
        assert crossing.state == "matched", crossing
    finally:
        await buyer.close()
        await seller.close()


def _env(base: Path) -> dict[str, str]:
    return {"XDG_DATA_HOME": str(base / "data"), "XDG_CACHE_HOME": str(base / "cache"),
            "BLENDER_USER_RESOURCES": str(base / "user"), "PYTHONPATH": str(REPO),
            "PATH": "/usr/bin:/bin", "TMPDIR": str(base)}


def _one_error_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    lines = [ln for ln in stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, stderr
    return lines[0]


@needs_bpy
def test_a_seller_facing_no_exchange_says_so_in_one_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bitwrk.seller", "--exchange", f"http://127.0.0.1:{free_port()}",
         "--min-price", "10", "--wait-exchange", "2", "--status-port", "-1"],
        cwd=REPO, env=_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert done.returncode == 3, done.stderr
    assert "unreachable for 2 s" in _one_error_line(done.stderr)


@needs_bpy
def test_a_buyer_facing_no_exchange_says_so_in_one_line(scene_dir: Path,  # noqa: F811
                                                         tmp_path: Path) -> None:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "bitwrk.buy", str(scene_dir / "scene.blend"), "--exchange",
         f"http://127.0.0.1:{free_port()}", "--max-price", "100", "--out",
         str(tmp_path / "out"), "--wait-exchange", "2"],
        cwd=REPO, env=_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert done.returncode == 3, done.stderr
    assert "unreachable for 2 s" in _one_error_line(done.stderr)
    assert time.monotonic() - started < 60


@needs_bpy
async def test_a_buyer_that_times_out_leaves_nothing_open(
    scene_dir: Path, server: ServerProcess, tmp_path: Path  # noqa: F811
) -> None:
    """No seller at all: the run gives up at its --timeout with exit code 4, and its bids
    are withdrawn, so none of its money stays blocked."""
    env = _env(tmp_path)
    account = subprocess.run([sys.executable, "-m", "bitwrk", "account"], cwd=REPO, env=env,
                             capture_output=True, text=True, timeout=60)
    address = account.stdout.split("address", 1)[1].split()[0]
    async with ExchangeClient(server.url, server.operator_key) as op:
        await op.deposit(address, 100_000, kind="play", uid="t-" + secrets.token_hex(8))
    started = time.monotonic()
    done = await asyncio.to_thread(subprocess.run, [
        sys.executable, "-m", "bitwrk.buy", str(scene_dir / "scene.blend"), "--exchange",
        server.url, "--max-price", "100", "--out", str(tmp_path / "out"), "--timeout", "15",
        "--allow-local-sellers"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 4, done.stdout + done.stderr
    assert "not finished within --timeout" in _one_error_line(done.stderr)
    assert "cancelling" in done.stdout
    assert time.monotonic() - started < 15 + 35  # the timeout, then cancel and stop
    async with ExchangeClient(server.url) as observer:
        acct = await observer.account(address)
        assert acct.blocked == 0 and acct.available == 100_000, acct
        bids = await observer.bids(address)
        assert bids and all(b.state in ("cancelled", "expired") for b in bids), bids
