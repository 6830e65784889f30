"""A dispute may carry the buyer's spot-check evidence; it is kept in the signed trail."""

from __future__ import annotations

import json
from urllib.parse import parse_qsl

from tests.conftest import Party
from tests.service.conftest import Api

FUNDS = 1_000_000


async def test_dispute_evidence_is_kept_in_the_message_trail(
    api: Api, buyer: Party, seller: Party
) -> None:
    txid = await api.trade(buyer, seller)
    await api.to_unverified(buyer, seller, txid)
    evidence = json.dumps({"v": 1, "resulthash": "ab" * 32, "patches": [[1, 7, 2, 8]]})
    tx = await api.msg(buyer, txid, "dispute", reason="spot check failed", evidence=evidence)
    assert tx["phase"] == "RESULT_DISPUTED"
    messages = await api.get(f"/api/v1/transactions/{txid}/messages")
    last = messages[-1]
    assert last["action"] == "dispute"
    fields = dict(parse_qsl(last["document"]))
    assert fields["evidence"] == evidence and fields["reason"] == "spot check failed"
    await api.check_invariant()


async def test_oversized_or_foreign_dispute_fields_are_refused(
    api: Api, buyer: Party, seller: Party
) -> None:
    txid = await api.trade(buyer, seller)
    await api.to_unverified(buyer, seller, txid)
    err = await api.msg(buyer, txid, "dispute", status=400, reason="x", evidence="e" * 12_001)
    assert err["error"] == "invalid_request"
    err = await api.msg(buyer, txid, "dispute", status=400, reason="x", blame="everyone")
    assert "unexpected fields" in err["message"]
    err = await api.msg(buyer, txid, "accept", status=400, evidence="{}")
    assert "unexpected fields" in err["message"]
    assert (await api.get(f"/api/v1/transactions/{txid}"))["phase"] == "UNVERIFIED"
    await api.check_invariant()
