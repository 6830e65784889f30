"""Cheating sellers against a real exchange, an honest seller and the headless buyer, all
real processes: every lazy or hostile result is disputed with evidence and never paid,
its seller is blocked, the unit is bought again, and the frame is still bit-identical to
a local render."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest

from tests.blender.conftest import needs_bpy
from tests.blender.test_render_exact import assert_identical
from tests.blender.test_swarm import Node, credit, get
from tests.e2e.conftest import ServerProcess

pytestmark = [needs_bpy, pytest.mark.slow]
GROUPS = [("black", "other_tile", "fewer_samples"), ("lower_res", "wrong_frame", "wrong_size"),
          ("junk", "bomb", "most_samples")]
HONEST_PRICE = 50


@pytest.fixture(scope="module")
def market(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    base = tmp_path_factory.mktemp("market")
    exchange = ServerProcess(base / "exchange", timeout_scale=0.5).start()
    honest = Node(base / "honest")
    honest.start("bitwrk.seller", "--exchange", exchange.url, "--cpus", "0",
                 "--min-price", str(HONEST_PRICE), "--classes", "512M", "--status-port", "-1")
    honest.wait_for(r"seller \S+ on http", 120)
    buyer = Node(base / "buyer")
    credit(exchange, buyer.address(), 1_000_000)
    try:
        yield {"exchange": exchange, "honest": honest, "buyer": buyer, "base": base}
    finally:
        honest.stop()
        exchange.close()


def wait_for_bid(exchange: ServerProcess, address: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if get(exchange, f"/api/v1/accounts/{address}/bids?state=placed"):
            return
        time.sleep(0.2)
    raise AssertionError(f"{address} placed no bid")


def trades_of(exchange: ServerProcess, address: str) -> list[dict[str, Any]]:
    bids = get(exchange, f"/api/v1/accounts/{address}/bids?limit=200")
    return [get(exchange, f"/api/v1/transactions/{b['txid']}") for b in bids if b["txid"]]


def dispute_evidence(exchange: ServerProcess, txid: int) -> dict[str, Any]:
    messages = get(exchange, f"/api/v1/transactions/{txid}/messages")
    dispute = next(m for m in messages if m["action"] == "dispute")
    evidence: dict[str, Any] = json.loads(dict(parse_qsl(dispute["document"]))["evidence"])
    return evidence


@pytest.mark.parametrize("modes", GROUPS, ids=["+".join(g) for g in GROUPS])
def test_cheaters_are_disputed_blocked_and_never_paid(
        market: dict[str, Any], modes: tuple[str, ...], scene_dir: Path, references: Path,
        tmp_path: Path) -> None:
    exchange: ServerProcess = market["exchange"]
    buyer: Node = market["buyer"]
    cheaters = [Node(tmp_path / mode) for mode in modes]
    addresses = [c.address() for c in cheaters]  # the identity exists before the process
    try:
        for price, (mode, cheater) in enumerate(zip(modes, cheaters, strict=True), start=1):
            cheater.start("tests.blender.cheating_seller", mode, "--exchange", exchange.url,
                          "--cpus", str(price % 2), "--min-price", str(price),
                          "--classes", "512M", "--status-port", "-1")
        for cheater, address in zip(cheaters, addresses, strict=True):
            cheater.wait_for(r"seller \S+ on http", 120)
            wait_for_bid(exchange, address)
        honest = market["honest"].address()
        paid_before = sum(t["phase"] == "FINISHED" for t in trades_of(exchange, honest))
        result = buyer.run("bitwrk.buy", str(scene_dir / "scene.blend"), "--exchange",
                           exchange.url, "--max-price", "100", "--tiles", "4",
                           "--concurrency", "4", "--out", str(tmp_path / "out"),
                           "--allow-local-sellers", timeout=600)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        assert "done: 4 units" in result.stdout
        assert_identical(tmp_path / "out" / "Shot_0001", references, "plain")
        for mode, address in zip(modes, addresses, strict=True):
            trades = trades_of(exchange, address)
            disputed = [t for t in trades if t["phase"] == "RESULT_DISPUTED"]
            assert disputed, (mode, [t["phase"] for t in trades])
            assert not [t for t in trades if t["phase"] == "FINISHED"], mode
            account = get(exchange, f"/api/v1/accounts/{address}")
            assert (account["available"], account["blocked"]) == (0, 0), (mode, account)
            evidence = dispute_evidence(exchange, disputed[0]["id"])
            assert evidence["encresulthash"] == disputed[0]["encresulthash"], mode
            assert len(evidence["resulthash"]) == 64, mode
            kept = buyer.base / "data" / "bitwrk" / "evidence" / f"tx{disputed[0]['id']}"
            assert (kept / "evidence.json").is_file(), mode
        paid = sum(t["phase"] == "FINISHED" for t in trades_of(exchange, honest))
        assert paid - paid_before == 4  # every unit bought again from the honest seller
        totals = get(exchange, "/api/v1/info")["totals"]
        assert totals["available"] + totals["blocked"] + totals["fees"] == totals["deposits"]
    finally:
        for cheater in cheaters:
            cheater.stop()
