"""The OpenAPI 3.1 description of every route (a test checks it against the router)."""

from __future__ import annotations

from typing import Any

import bitwrk

_STR = {"type": "string"}
_INT = {"type": "integer", "minimum": 0}
_ENVELOPE = {
    "exchange": {**_STR, "description": "the exchange id from /api/v1/info"},
    "address": {**_STR, "description": "the signer's P2PKH address"},
    "nonce": {**_INT, "description": "greater than the signer's last accepted nonce"},
    "signature": {**_STR, "description": "Bitcoin signmessage (base64) over the document"},
}
_ERROR = {"description": "error", "content": {"application/json": {"schema": {
    "type": "object", "required": ["error", "message"],
    "properties": {"error": _STR, "message": _STR}}}}}


def _signed(action: str | list[str], **fields: dict[str, Any]) -> dict[str, Any]:
    actions = [action] if isinstance(action, str) else action
    props = {"action": {"type": "string", "enum": actions}, **_ENVELOPE, **fields}
    required = ["action", "exchange", "address", "nonce", "signature"]
    schema = {"type": "object", "properties": props, "required": required}
    return {"required": True, "content": {"application/json": {"schema": schema}},
            "description": "signed document: fields sorted by key, key=quote(value) joined by &"}


def _op(summary: str, body: dict[str, Any] | None = None, *params: str) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "responses": {"200": {"description": "OK", "content": {"application/json": {}}},
                      "4XX": _ERROR},
    }
    if body is not None:
        op["requestBody"] = body
    path_params = [{"name": p, "in": "path", "required": True, "schema": _STR} for p in params]
    if path_params:
        op["parameters"] = path_params
    return op


def _query(op: dict[str, Any], *names: str) -> dict[str, Any]:
    op.setdefault("parameters", []).extend(
        {"name": n, "in": "query", "required": False, "schema": _STR} for n in names
    )
    return op


_TX_MESSAGE = _signed(
    ["work", "endpoint", "received", "result", "accept", "dispute", "reject", "cancel",
     "resolve"],
    txid=_INT, revision=_INT, workhash=_STR, worksecrethash=_STR, workerurl=_STR,
    secretproof=_STR, encresulthash=_STR, receipt=_STR, resultkey=_STR, reason=_STR,
    outcome={"type": "string", "enum": ["seller", "buyer"]},
)

PATHS: dict[str, dict[str, Any]] = {
    "/api/v1/info": {"get": _op("exchange id, network, fee, articles, time, version")},
    "/api/v1/openapi.json": {"get": _op("this document")},
    "/api/v1/bids": {"post": _op("place a bid (buy blocks price + fee)", _signed(
        "bid", type={"type": "string", "enum": ["buy", "sell"]}, article=_STR, price=_INT))},
    "/api/v1/bids/{id}": {"get": _op("one bid", None, "id")},
    "/api/v1/bids/{id}/cancel": {"post": _op("cancel a placed bid", _signed(
        "cancel_bid", bid=_INT), "id")},
    "/api/v1/transactions/{id}": {"get": _op("a transaction with its messages", None, "id")},
    "/api/v1/transactions/{id}/messages": {
        "get": _op("the transaction's accepted messages", None, "id"),
        "post": _op("send a transaction message (DESIGN §4 table)", _TX_MESSAGE, "id"),
    },
    "/api/v1/transactions/{id}/movements": {
        "get": _op("ledger movements the transaction caused", None, "id")},
    "/api/v1/accounts/{address}": {"get": _op("balances", None, "address")},
    "/api/v1/accounts/{address}/ledger": {
        "get": _query(_op("movements, newest first", None, "address"), "before", "limit")},
    "/api/v1/accounts/{address}/bids": {
        "get": _query(_op("the account's bids, newest first", None, "address"), "state",
                      "limit")},
    "/api/v1/market/{article}": {
        "get": _query(_op("book depth, last trades, OHLC", None, "article"), "interval",
                      "limit")},
    "/api/v1/relations": {"post": _op("A trusts/worksfor B", _signed(
        "relation", target=_STR, type={"type": "string", "enum": ["trusts", "worksfor"]},
        enabled={"type": "integer", "enum": [0, 1]}))},
    "/api/v1/relations/{address}": {"get": _op("relations by source", None, "address")},
    "/api/v1/deposits": {"post": _op("operator-signed credit (idempotent by uid)", _signed(
        "deposit", uid=_STR, account=_STR, amount=_INT,
        kind={"type": "string", "enum": ["play", "bitcoin"]}, ref=_STR))},
    "/api/v1/deposits/{uid}": {"get": _op("one deposit", None, "uid")},
    "/api/v1/deposit-addresses": {"post": _op(
        "the account's unused BIP84 deposit address, or a new one (rate-limited)",
        _signed("deposit_address"))},
    "/api/v1/accounts/{address}/deposits": {"get": _query(_op(
        "Bitcoin outputs paid to the account's addresses: confirmations, state, credited",
        None, "address"), "limit")},
    "/api/v1/withdrawals": {"post": _op(
        "withdraw: available → pending until the operator's payout batch is paid", _signed(
            "withdraw", to={**_STR, "description": "bitcoin address of the exchange's network"},
            amount=_INT))},
    "/api/v1/withdrawals/{id}": {"get": _op("one withdrawal", None, "id")},
    "/api/v1/withdrawals/{id}/cancel": {"post": _op(
        "cancel a withdrawal not yet exported", _signed("cancel_withdrawal", withdrawal=_INT),
        "id")},
    "/api/v1/accounts/{address}/withdrawals": {"get": _query(_op(
        "the account's withdrawals, newest first", None, "address"), "limit")},
    "/api/v1/events": {"get": _query({
        "summary": "server-sent events (text/event-stream): bid, transaction, account, trade,"
                   " book; without address the public market stream",
        "responses": {"200": {"description": "event stream",
                              "content": {"text/event-stream": {}}}, "4XX": _ERROR}},
        "address")},
}


def openapi_document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "BitWrk exchange", "version": bitwrk.__version__},
        "paths": PATHS,
    }
