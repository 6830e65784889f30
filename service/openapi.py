"""The OpenAPI 3.1 description of every route (a test checks it against the router, and
``tests/service/test_schemathesis.py`` fuzzes a real server with it: every documented
status and response shape must hold for any input)."""

from __future__ import annotations

from typing import Any

import bitwrk
from bitwrk.protocol import MAX_EXCLUDED, MAX_MIN_FINISHED
from bitwrk.wire import BidState, BidType

_STR = {"type": "string"}
_INT64 = {"type": "integer", "minimum": 0, "maximum": 2**63 - 1}
_NUM = {"type": "number"}
_NULL_STR = {"type": ["string", "null"]}
_NULL_INT = {"type": ["integer", "null"]}
_NULL_NUM = {"type": ["number", "null"]}
_ADDRESS_PATTERN = "^[1-9A-HJ-NP-Za-km-z]{25,35}$"
_ID = {"name": "id", "in": "path", "required": True,
       "schema": {"type": "string", "pattern": "^[1-9][0-9]{0,17}$"}}
_ADDRESS = {"name": "address", "in": "path", "required": True,
            "schema": {"type": "string", "pattern": _ADDRESS_PATTERN}}
_ARTICLE_PATTERN = "^net\\.bitwrk/blender/[1-9][0-9]?\\.[0-9]{1,2}/(512M|2G|8G|32G)(~trusted)?$"
_ARTICLE = {"name": "article", "in": "path", "required": True,
            "schema": {"type": "string", "pattern": _ARTICLE_PATTERN}}
_NEW_UID = {"type": "string", "pattern": "^[A-Za-z0-9-]{8,64}$"}
_HEX64 = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
_ADDR = {"type": "string", "pattern": _ADDRESS_PATTERN}
_ARTICLE_ID = {"type": "string", "pattern": _ARTICLE_PATTERN}
_PRICE = {"type": "integer", "minimum": 0, "maximum": 10**12,
          "description": "satoshi, at most the exchange's max_price (/api/v1/info)"}
_UID = {"name": "uid", "in": "path", "required": True,
        "schema": {"type": "string",
                   "pattern": "^([A-Za-z0-9-]{8,64}|btc:[0-9a-f]{64}:[0-9]{1,10})$"}}
_ENVELOPE = {
    "exchange": {**_STR, "description": "the exchange id from /api/v1/info"},
    "address": {**_STR, "description": "the signer's P2PKH address"},
    "nonce": {"type": "integer", "minimum": 1, "maximum": 2**63 - 1,
              "description": "greater than the signer's last accepted nonce"},
    "signature": {**_STR, "description": "Bitcoin signmessage (base64) over the document"},
}
_ERROR_SCHEMA = {"type": "object", "required": ["error", "message"],
                 "properties": {"error": _STR, "message": _STR}}
_ERRORS = {
    "400": "malformed request: bad JSON, fields, types or values",
    "401": "the signature does not verify",
    "402": "the available balance does not cover the bid",
    "403": "not allowed: wrong party, not trusted, barred, too many open bids, a limit",
    "404": "no such object, or payments are disabled",
    "405": "method not allowed",
    "408": "the request body did not arrive in time",
    "409": "replayed nonce, stale revision, wrong phase, self-trade or conflicting data",
    "413": "request body too large",
    "429": "rate limited, or too many event streams",
    "503": "the store is busy (locked by another connection): nothing changed, send again",
}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _object(required: list[str], **props: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": props}


_BID = _object(
    ["id", "address", "type", "article", "price", "fee", "state", "created", "expires"],
    id=_INT64, address=_STR, type={"enum": [str(t) for t in BidType]}, article=_STR, price=_INT64,
    fee=_INT64, state={"enum": [str(s) for s in BidState]},
    created=_NUM, expires=_NUM, closed=_NULL_NUM, txid=_NULL_INT)
_TX = _object(
    ["id", "article", "buyer", "seller", "price", "fee", "phase", "revision"],
    id=_INT64, article=_STR, buyer=_STR, seller=_STR, buy_bid=_INT64, sell_bid=_INT64,
    price=_INT64, fee=_INT64, matched=_NUM, phase=_STR, revision=_INT64,
    timeout=_NULL_NUM, retired=_NULL_NUM)
_COUNT = {"type": "integer", "minimum": 0}
_REPUTATION = _object(["finished", "disputed", "disputes_lost", "establish_timeouts"],
                      finished=_COUNT, disputed=_COUNT, disputes_lost=_COUNT,
                      establish_timeouts=_COUNT)
_ACCOUNT = _object(
    ["address", "available", "blocked", "last_nonce", "reputation", "barred_until"],
    address=_STR, available=_COUNT, blocked=_COUNT, last_nonce=_COUNT,
    reputation=_REPUTATION, barred_until=_NULL_NUM)
_ANY_OBJECT = {"type": "object"}
_LIST = {"type": "array", "items": _ANY_OBJECT}


def _signed(action: str | list[str], **fields: dict[str, Any]) -> dict[str, Any]:
    """A signed request body: exactly the envelope and these fields (all required for a
    single action; a transaction message needs its action's, see docs/protocol.md)."""
    actions = [action] if isinstance(action, str) else action
    props = {"action": {"type": "string", "enum": actions}, **_ENVELOPE, **fields}
    required = ["action", "exchange", "address", "nonce", "signature"]
    if isinstance(action, str):
        required += list(fields)
    schema = {"type": "object", "properties": props, "required": required,
              "additionalProperties": False}
    return {"required": True, "content": _json(schema),
            "description": "signed document: fields sorted by key, key=quote(value) joined by &"}


def _op(summary: str, result: dict[str, Any], body: dict[str, Any] | None = None,
        *params: dict[str, Any]) -> dict[str, Any]:
    responses: dict[str, Any] = {"200": {"description": "OK", "content": _json(result)}}
    responses.update({code: {"description": text, "content": _json(_ERROR_SCHEMA)}
                      for code, text in _ERRORS.items()})
    op: dict[str, Any] = {"summary": summary, "responses": responses}
    if body is not None:
        op["requestBody"] = body
    if params:
        op["parameters"] = list(params)
    return op


def _query(op: dict[str, Any], **params: dict[str, Any]) -> dict[str, Any]:
    op.setdefault("parameters", []).extend(
        {"name": n, "in": "query", "required": False, "schema": s} for n, s in params.items()
    )
    return op


def _optional(body: dict[str, Any], **fields: dict[str, Any]) -> dict[str, Any]:
    """``body`` with more fields a request may leave out."""
    body["content"]["application/json"]["schema"]["properties"].update(fields)
    return body


# A buy bid's optional terms (bitwrk.protocol.SellerTerms).
_SELLER_TERMS: dict[str, dict[str, Any]] = {
    "min_finished": {"type": "integer", "minimum": 0, "maximum": MAX_MIN_FINISHED,
                     "description": "buy only: the seller finished at least this many trades"},
    "max_lost_pct": {"type": "integer", "minimum": 0, "maximum": 100,
                     "description": "buy only: the seller lost at most this percentage of its"
                                    " finished + lost trades in dispute"},
    "exclude": {"type": "string", "pattern": f"^{_ADDRESS_PATTERN[1:-1]}"
                f"(,{_ADDRESS_PATTERN[1:-1]}){{0,{MAX_EXCLUDED - 1}}}$",
                "description": "buy only: comma-separated seller addresses never to match"},
}
_LIMIT = {"type": "integer", "minimum": 1, "maximum": 1000}
_TX_MESSAGE = _signed(
    ["work", "endpoint", "received", "result", "accept", "dispute", "reject", "cancel",
     "resolve"],
    txid=_INT64, revision=_INT64, workhash=_HEX64, worksecrethash=_HEX64,
    workerurl={"type": "string", "maxLength": 256}, secretproof=_HEX64, encresulthash=_HEX64,
    receipt={"type": "string", "maxLength": 100},
    resultkey={"type": "string", "pattern": "^[0-9a-f]{128}$"},
    reason={"type": "string", "maxLength": 500},
    outcome={"type": "string", "enum": ["seller", "buyer"]},
)
_INFO = _object(["exchange", "network", "fee_bps", "time", "articles", "totals", "limits"],
                exchange=_STR, network=_STR, fee_bps=_COUNT, time=_NUM,
                articles={"type": "array", "items": _STR}, totals=_ANY_OBJECT,
                limits=_ANY_OBJECT)
_MARKET = _object(["article", "bids", "asks", "trades", "ohlc", "interval"],
                  article=_STR, bids=_LIST, asks=_LIST, trades=_LIST, ohlc=_LIST,
                  interval={"enum": [60, 300, 3600, 86400]})
_TOKEN = _object(["address", "token", "expires"], address=_STR, token=_STR, expires=_COUNT)

PATHS: dict[str, dict[str, Any]] = {
    "/api/v1/info": {"get": _op("exchange id, network, fee, articles, totals, limits", _INFO)},
    "/api/v1/openapi.json": {"get": _op("this document", _ANY_OBJECT)},
    "/api/v1/bids": {"post": _op("place a bid (buy blocks price + fee)", _BID, _optional(
        _signed("bid", type={"type": "string", "enum": [str(t) for t in BidType]},
                article=_ARTICLE_ID, price=_PRICE), **_SELLER_TERMS))},
    "/api/v1/bids/{id}": {"get": _op("one bid", _BID, None, _ID)},
    "/api/v1/bids/{id}/cancel": {"post": _op("cancel a placed bid", _BID, _signed(
        "cancel_bid", bid=_INT64), _ID)},
    "/api/v1/transactions/{id}": {
        "get": _op("a transaction with its messages", _TX, None, _ID)},
    "/api/v1/transactions/{id}/messages": {
        "get": _op("the transaction's accepted messages", _LIST, None, _ID),
        "post": _op("send a transaction message (docs/protocol.md)", _TX, _TX_MESSAGE, _ID),
    },
    "/api/v1/transactions/{id}/movements": {
        "get": _op("ledger movements the transaction caused", _LIST, None, _ID)},
    "/api/v1/accounts/{address}": {
        "get": _op("balances and the public seller reputation", _ACCOUNT, None, _ADDRESS)},
    "/api/v1/accounts/{address}/ledger": {"get": _query(
        _op("movements, newest first", _ANY_OBJECT, None, _ADDRESS),
        before={"type": "integer", "minimum": 1, "maximum": 2**63 - 1}, limit=_LIMIT)},
    "/api/v1/accounts/{address}/bids": {"get": _query(
        _op("the account's bids, newest first", {"type": "array", "items": _BID}, None,
            _ADDRESS),
        state={"type": "string", "enum": [str(s) for s in BidState]},
        limit=_LIMIT)},
    "/api/v1/market/{article}": {"get": _query(
        _op("book depth, last trades, OHLC", _MARKET, None, _ARTICLE),
        interval={"type": "integer", "enum": [60, 300, 3600, 86400]}, limit=_LIMIT)},
    "/api/v1/relations": {"post": _op("A trusts, works for or avoids B", _ANY_OBJECT, _signed(
        "relation", target=_ADDR,
        type={"type": "string", "enum": ["trusts", "worksfor", "avoids"]},
        enabled={"type": "integer", "enum": [0, 1]}))},
    "/api/v1/relations/{address}": {"get": _op("relations by source", _LIST, None, _ADDRESS)},
    "/api/v1/deposits": {"post": _op("operator-signed credit (idempotent by uid)", _ANY_OBJECT,
                                     _signed("deposit", uid=_NEW_UID, account=_ADDR,
                                             amount={"type": "integer", "minimum": 1,
                                                     "maximum": 21 * 10**14},
                                             kind={"type": "string",
                                                   "enum": ["play", "bitcoin"]},
                                             ref={"type": "string",
                                                  "pattern": "^[A-Za-z0-9._:-]{0,64}$"}))},
    "/api/v1/deposits/{uid}": {"get": _op("one deposit", _ANY_OBJECT, None, _UID)},
    "/api/v1/deposit-addresses": {"post": _op(
        "the account's unused BIP84 deposit address, or a new one (rate-limited)",
        _ANY_OBJECT, _signed("deposit_address"))},
    "/api/v1/accounts/{address}/deposits": {"get": _query(_op(
        "Bitcoin outputs paid to the account's addresses: confirmations, state, credited",
        _LIST, None, _ADDRESS), limit=_LIMIT)},
    "/api/v1/withdrawals": {"post": _op(
        "withdraw: available → pending until the operator's payout batch is paid",
        _ANY_OBJECT, _signed(
            "withdraw", to={**_STR, "description": "bitcoin address of the exchange's network"},
            amount=_INT64))},
    "/api/v1/withdrawals/{id}": {"get": _op("one withdrawal", _ANY_OBJECT, None, _ID)},
    "/api/v1/withdrawals/{id}/cancel": {"post": _op(
        "cancel a withdrawal not yet exported", _ANY_OBJECT,
        _signed("cancel_withdrawal", withdrawal=_INT64), _ID)},
    "/api/v1/accounts/{address}/withdrawals": {"get": _query(_op(
        "the account's withdrawals, newest first", _LIST, None, _ADDRESS), limit=_LIMIT)},
    "/api/v1/events/token": {"post": _op(
        "a token for the signer's private event stream (service/streams.py)", _TOKEN,
        _signed("events_token"))},
    "/api/v1/events": {"get": _query({
        "summary": "server-sent events (text/event-stream): bid, transaction, account, trade,"
                   " book; without address the public market stream; with address also"
                   " token (from /api/v1/events/token)",
        "responses": {
            "200": {"description": "event stream", "content": {"text/event-stream": {}}},
            **{code: {"description": _ERRORS[code], "content": _json(_ERROR_SCHEMA)}
               for code in ("400", "403", "429")}}},
        address={"type": "string", "pattern": _ADDRESS_PATTERN}, token=_STR)},
}


def _link(path: str, method: str, _: str, parameters: dict[str, str] | None = None,
          body: dict[str, str] | None = None) -> dict[str, Any]:
    """An OpenAPI link: how a response's fields feed another operation (stateful tests)."""
    link: dict[str, Any] = {"operationRef": f"#/paths/{path.replace('/', '~1')}/{method}"}
    if parameters:
        link["parameters"] = parameters
    if body:
        link["requestBody"] = body
    return link


def _add_links() -> None:
    bid = {"path.id": "$response.body#/id"}
    PATHS["/api/v1/bids"]["post"]["responses"]["200"]["links"] = {
        "GetBid": _link("/api/v1/bids/{id}", "get", "", bid),
        "CancelBid": _link("/api/v1/bids/{id}/cancel", "post", "", bid,
                           {"action": "cancel_bid", "bid": "$response.body#/id"}),
        "Bidder": _link("/api/v1/accounts/{address}/bids", "get", "",
                        {"path.address": "$response.body#/address"}),
    }
    tx = {"path.id": "$response.body#/id"}
    PATHS["/api/v1/transactions/{id}"]["get"]["responses"]["200"]["links"] = {
        "Messages": _link("/api/v1/transactions/{id}/messages", "post", "", tx,
                          {"txid": "$response.body#/id",
                           "revision": "$response.body#/revision"}),
        "Movements": _link("/api/v1/transactions/{id}/movements", "get", "", tx),
    }
    PATHS["/api/v1/events/token"]["post"]["responses"]["200"]["links"] = {
        "Account": _link("/api/v1/accounts/{address}", "get", "",
                         {"path.address": "$response.body#/address"}),
        "Ledger": _link("/api/v1/accounts/{address}/ledger", "get", "",
                        {"path.address": "$response.body#/address"}),
    }


_add_links()


def openapi_document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "BitWrk exchange", "version": bitwrk.__version__},
        "paths": PATHS,
    }
