"""Bitcoin Core JSON-RPC backend over a watch-only descriptor wallet.

The watcher imports ``wpkh([origin]xpub/0/*)`` and ``.../1/*`` (BIP84 receive and change)
with ``importdescriptors`` and reads ``listtransactions`` (receive entries carry address,
vout, amount, confirmations; negative confirmations mean a conflicting transaction won) and
``gettransaction`` for payout confirmations. https://developer.bitcoin.org/reference/rpc/
"""

from __future__ import annotations

import itertools
import json
from decimal import Decimal
from typing import Any

import aiohttp

from .chain import SeenOutput, WatchSet, btc_to_sat, txid_of
from .derivation import CHANGE, RECEIVE, AccountKey
from .errors import BackendError, BackendProtocolError, BackendUnavailable
from .http import HttpTransport

PAGE = 500
LOOKAHEAD = 1000  # addresses imported beyond the highest issued index
RPC_IN_WARMUP = -28
RPC_INVALID_ADDRESS_OR_KEY = -5  # gettransaction: not a wallet transaction


class RpcError(BackendError):
    """Bitcoin Core answered with a JSON-RPC error; carries ``rpc_code``."""

    code = "backend_rpc_error"


class CoreBackend:
    name = "core"

    def __init__(self, url: str, account: AccountKey, *, user: str = "", password: str = "",
                 timeout: float = 10.0, attempts: int = 3, backoff: float = 0.5) -> None:
        self.url = url
        self.account = account
        headers = ({"Authorization": aiohttp.encode_basic_auth(user, password)}
                   if user or password else {})
        self.http = HttpTransport("core", timeout=timeout, attempts=attempts, backoff=backoff,
                                  concurrency=1, headers=headers)
        self._ids = itertools.count(1)
        self._imported = -1  # highest index covered by importdescriptors this run

    async def close(self) -> None:
        await self.http.close()

    async def call(self, method: str, *params: Any) -> Any:
        payload = {"jsonrpc": "1.0", "id": next(self._ids), "method": method,
                   "params": list(params)}
        status, body = await self.http.send("POST", self.url, json=payload)
        if status in (401, 403):
            raise BackendError("core: RPC authentication failed", backend=self.name)
        try:
            data = json.loads(body, parse_float=Decimal)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BackendProtocolError(f"core: {method} answered HTTP {status} without JSON",
                                       backend=self.name, method=method) from exc
        if not isinstance(data, dict) or "result" not in data:
            raise BackendProtocolError(f"core: {method} answered no JSON-RPC object",
                                       backend=self.name, method=method)
        error = data.get("error")
        if error is not None:
            code = error.get("code") if isinstance(error, dict) else None
            message = str(error.get("message") if isinstance(error, dict) else error)[:200]
            cls = BackendUnavailable if code == RPC_IN_WARMUP else RpcError
            raise cls(f"core: {method}: {message}", backend=self.name, method=method,
                      rpc_code=code)
        return data["result"]

    async def scan(self, watch: WatchSet) -> list[SeenOutput]:
        await self._ensure_imported(watch)
        outputs: list[SeenOutput] = []
        for skip in itertools.count(0, PAGE):
            page = await self.call("listtransactions", "*", PAGE, skip, True)
            if not isinstance(page, list):
                raise BackendProtocolError("core: listtransactions gave no list",
                                           backend=self.name)
            outputs.extend(self._output(e) for e in page if _is_receive(e))
            if len(page) < PAGE:
                return outputs
        raise AssertionError("unreachable")

    def _output(self, entry: dict[str, Any]) -> SeenOutput:
        try:
            confirmations, vout = entry["confirmations"], entry["vout"]
            if type(confirmations) is not int or type(vout) is not int or vout < 0:
                raise TypeError("confirmations and vout must be integers")
            return SeenOutput(txid_of(entry["txid"], self.name), vout, str(entry["address"]),
                              btc_to_sat(entry["amount"], self.name), confirmations,
                              entry.get("blockhash"))
        except (KeyError, TypeError) as exc:
            raise BackendProtocolError(f"core: malformed listtransactions entry: {exc}",
                                       backend=self.name) from exc

    async def _ensure_imported(self, watch: WatchSet) -> None:
        """Keep the wallet's descriptor range LOOKAHEAD past the newest issued address."""
        if watch.max_index < 0 or watch.max_index + LOOKAHEAD // 2 <= self._imported:
            return
        end = watch.max_index + LOOKAHEAD
        since = int(watch.since) if watch.since is not None else "now"
        requests = [{"desc": self.account.descriptor(chain), "range": [0, end],
                     "timestamp": since, "internal": chain == CHANGE, "active": False}
                    for chain in (RECEIVE, CHANGE)]
        result = await self.call("importdescriptors", requests)
        if not isinstance(result, list) or not all(
            isinstance(r, dict) and r.get("success") is True for r in result
        ):
            raise BackendError(f"core: importdescriptors failed: {str(result)[:300]}",
                               backend=self.name)
        self._imported = end

    async def confirmations(self, txid: str) -> int | None:
        try:
            tx = await self.call("gettransaction", txid, True)
        except RpcError as exc:
            if exc.data.get("rpc_code") == RPC_INVALID_ADDRESS_OR_KEY:
                return None
            raise
        count = tx.get("confirmations") if isinstance(tx, dict) else None
        if type(count) is not int:
            raise BackendProtocolError("core: gettransaction without confirmations",
                                       backend=self.name)
        return count


def _is_receive(entry: object) -> bool:
    return isinstance(entry, dict) and entry.get("category") == "receive"
