"""HTTP handlers for deposit addresses and withdrawals (registered by service.app)."""

from __future__ import annotations

from aiohttp import web

from bitwrk.errors import InvalidRequest
from service.api import _address, _commit, _ex, _json, _path_id, limit_arg, read_signed

from . import deposits, withdrawals
from .deposits import require_enabled

routes = web.RouteTableDef()


@routes.post("/api/v1/deposit-addresses")
async def request_deposit_address(request: web.Request) -> web.Response:
    signed = await read_signed(request, frozenset({"deposit_address"}))
    ex = _ex(request)
    require_enabled(ex.cfg.payments)
    return await _commit(request, lambda: deposits.issue_address(ex, signed))


@routes.get("/api/v1/accounts/{address}/deposits")
async def get_chain_deposits(request: web.Request) -> web.Response:
    limit = limit_arg(request, 50)
    return _json(deposits.deposits_of(_ex(request), _address(request), limit))


@routes.post("/api/v1/withdrawals")
async def post_withdrawal(request: web.Request) -> web.Response:
    signed = await read_signed(request, frozenset({"withdraw"}))
    ex = _ex(request)
    return await _commit(request, lambda: withdrawals.withdraw(ex, signed))


@routes.get("/api/v1/withdrawals/{id}")
async def get_withdrawal(request: web.Request) -> web.Response:
    return _json(withdrawals.withdrawal(_ex(request), _path_id(request)))


@routes.post("/api/v1/withdrawals/{id}/cancel")
async def cancel_withdrawal(request: web.Request) -> web.Response:
    signed = await read_signed(request, frozenset({"cancel_withdrawal"}))
    if signed[0].get("withdrawal") != _path_id(request):
        raise InvalidRequest("the signed withdrawal id differs from the URL's",
                             field="withdrawal")
    ex = _ex(request)
    return await _commit(request, lambda: withdrawals.cancel(ex, signed))


@routes.get("/api/v1/accounts/{address}/withdrawals")
async def get_withdrawals(request: web.Request) -> web.Response:
    limit = limit_arg(request, 50)
    return _json(withdrawals.withdrawals_of(_ex(request), _address(request), limit))
