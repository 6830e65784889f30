"""LAN mode: trusted workers take units straight from the buyer's daemon — no bids, no money.

The buyer lists worker addresses it trusts and serves a small HTTP API. A worker (another
BitWrk daemon, e.g. the artist's second machine) long-polls for a unit, asks for the chunks
it lacks, works and posts the result. In a job, an idle LAN worker gets the next unit before
the exchange does; the exchange gets the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from ..cas import ChunkReceiver, ChunkStore, JobManifest, decode_wanted, encode_wanted
from ..cas.transfer import stream_chunks
from ..errors import BitwrkError, BodyCutOff, Forbidden, InvalidRequest
from ..keys import PrivateKey
from ..protocol import NonceSource
from .peer import HEADER, PeerGate, sign_peer

log = logging.getLogger("bitwrk.lan")
LAN_EXCHANGE = "lan"  # the "exchange" id LAN requests are signed for
POLL_SECONDS = 20.0


@dataclass
class Assignment:
    job_id: str
    unit_id: str
    manifest: JobManifest
    worker: str = ""
    result: asyncio.Future[bytes] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future())


class LanHub:
    """The buyer's side: trusted addresses, waiting workers, assignments in flight."""

    def __init__(self, store: ChunkStore, trusted: set[str]) -> None:
        self.store = store
        self.trusted = set(trusted)
        self._waiting: deque[tuple[str, asyncio.Future[Assignment]]] = deque()
        self._idle = asyncio.Event()
        self.active: dict[tuple[str, str], Assignment] = {}

    def idle(self) -> bool:
        self._prune()
        return bool(self._waiting)

    async def wait_idle(self) -> None:
        while not self.idle():
            self._idle.clear()
            await self._idle.wait()

    def _prune(self) -> None:
        while self._waiting and self._waiting[0][1].done():
            self._waiting.popleft()

    def offer(self, job_id: str, unit_id: str, manifest: JobManifest) -> Assignment | None:
        """Hand the unit to a waiting worker, or None if nobody waits."""
        self._prune()
        if not self._waiting:
            return None
        worker, future = self._waiting.popleft()
        assignment = Assignment(job_id, unit_id, manifest, worker)
        future.set_result(assignment)
        self.active[(job_id, unit_id)] = assignment
        return assignment

    async def next_for(self, worker: str, timeout: float) -> Assignment | None:
        future: asyncio.Future[Assignment] = asyncio.get_running_loop().create_future()
        self._waiting.append((worker, future))
        self._idle.set()
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            if future.done():
                return future.result()
            future.cancel()
            return None

    def assignment(self, job_id: str, unit_id: str, worker: str) -> Assignment:
        found = self.active.get((job_id, unit_id))
        if found is None or found.worker != worker:
            raise Forbidden("this unit is not assigned to you")
        return found


HUB = web.AppKey("hub", LanHub)
GATE = web.AppKey("gate", PeerGate)


def _auth(request: web.Request, action: str) -> str:
    hub = request.app[HUB]
    header = request.headers.get(HEADER)
    try:
        claimed = str(json.loads(header or "{}").get("address", ""))
    except json.JSONDecodeError as exc:
        raise InvalidRequest("bad auth header") from exc
    if claimed not in hub.trusted:
        raise Forbidden("not a trusted LAN worker")
    request.app[GATE].check(header, action, 0, claimed)
    return claimed


async def _work(request: web.Request) -> web.Response:
    worker = _auth(request, "lan_work")
    assignment = await request.app[HUB].next_for(worker, POLL_SECONDS)
    if assignment is None:
        return web.Response(status=204)
    return web.json_response({"job_id": assignment.job_id, "unit_id": assignment.unit_id,
                              "manifest": assignment.manifest.to_json().decode()})


async def _body(request: web.Request) -> bytes:
    try:
        return await request.read()
    except ConnectionResetError as exc:  # the worker went away mid-request
        raise BodyCutOff() from exc


async def _chunks(request: web.Request) -> web.StreamResponse:
    worker = _auth(request, "lan_chunks")
    hub = request.app[HUB]
    a = hub.assignment(request.match_info["job"], request.match_info["unit"], worker)
    wanted = decode_wanted(await _body(request), a.manifest.chunks())
    response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
    await response.prepare(request)
    for piece in stream_chunks(hub.store, wanted):
        await response.write(piece)
    await response.write_eof()
    return response


async def _result(request: web.Request) -> web.Response:
    worker = _auth(request, "lan_result")
    hub = request.app[HUB]
    a = hub.assignment(request.match_info["job"], request.match_info["unit"], worker)
    body = await _body(request)
    error = request.headers.get("X-BitWrk-Error")
    if not a.result.done():
        if error:
            a.result.set_exception(BitwrkError(f"LAN worker failed: {error[:300]}"))
        else:
            a.result.set_result(body)
    hub.active.pop((a.job_id, a.unit_id), None)
    return web.json_response({"ok": True})


@web.middleware
async def _errors(request: web.Request,
                  handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                  ) -> web.StreamResponse:
    try:
        return await handler(request)
    except BitwrkError as exc:
        status = 403 if isinstance(exc, Forbidden) else 400
        return web.json_response(exc.to_json(), status=status)


def lan_app(hub: LanHub) -> web.Application:
    app = web.Application(middlewares=[_errors], client_max_size=1024**3)
    app[HUB] = hub
    app[GATE] = PeerGate(LAN_EXCHANGE)
    app.router.add_get("/lan/v1/work", _work)
    app.router.add_post("/lan/v1/units/{job}/{unit}/chunks", _chunks)
    app.router.add_post("/lan/v1/units/{job}/{unit}/result", _result)
    return app


class LanWorker:
    """The worker's side: poll a buyer's LAN hub, fetch missing chunks, work, post."""

    def __init__(self, url: str, key: PrivateKey, store: ChunkStore, executor: Any,
                 workroot: Path, on_unit: Callable[[str, bool], None]) -> None:
        self.url = url.rstrip("/")
        self.key = key
        self.store = store
        self.executor = executor
        self.workroot = workroot
        self.on_unit = on_unit
        self.nonces = NonceSource()

    def _headers(self, action: str) -> dict[str, str]:
        return sign_peer(self.key, self.nonces, LAN_EXCHANGE, action, 0)

    async def run(self, session: aiohttp.ClientSession) -> None:
        while True:
            try:
                async with session.get(f"{self.url}/lan/v1/work",
                                       headers=self._headers("lan_work")) as resp:
                    if resp.status == 204:
                        continue
                    if resp.status != 200:
                        raise BitwrkError(f"LAN hub refused: {await resp.text()}")
                    job = await resp.json()
                await self._do(session, job)
            except (aiohttp.ClientError, BitwrkError) as exc:
                log.warning("LAN worker: %s", exc)
                await asyncio.sleep(2.0)

    async def _do(self, session: aiohttp.ClientSession, job: dict[str, Any]) -> None:
        import shutil
        import tempfile

        manifest = JobManifest.from_json(job["manifest"].encode())
        base = f"{self.url}/lan/v1/units/{job['job_id']}/{job['unit_id']}"
        headers: dict[str, str] = {}
        body = b""
        with self.store.pin(manifest.chunks()):
            workdir = Path(tempfile.mkdtemp(prefix="bitwrk-lan-", dir=self.workroot))
            try:
                wanted = manifest.needed_chunks(self.store)
                if wanted:
                    receiver = ChunkReceiver(self.store, wanted)
                    async with session.post(f"{base}/chunks", data=encode_wanted(wanted),
                                            headers=self._headers("lan_chunks")) as resp:
                        async for piece in resp.content.iter_chunked(256 * 1024):
                            receiver.feed(piece)
                    receiver.finish()
                manifest.assemble(self.store, workdir)
                # every unit comes from this one hub's buyer: its worker stays warm
                body = await self.executor.execute(manifest, workdir, 0, owner=self.url)
            except (BitwrkError, OSError) as exc:
                headers["X-BitWrk-Error"] = str(exc)[:300].replace("\n", " ")
            finally:
                shutil.rmtree(workdir, ignore_errors=True)
        async with session.post(f"{base}/result", data=body,
                                headers={**self._headers("lan_result"), **headers}) as resp:
            await resp.read()
        with contextlib.suppress(Exception):
            self.on_unit(job["unit_id"], "X-BitWrk-Error" not in headers)
