"""The aiohttp application factory, the error middleware and the retirement task."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

from bitwrk.errors import BitwrkError, http_status

from . import db, downtime, probe, store, streams, trades
from .api import routes
from .appkeys import BUS, COMMITTER, CONFIG, EXCHANGE
from .committer import Committer
from .config import Config
from .events import Event, EventBus
from .exchange import Exchange
from .payments.api import routes as payment_routes
from .web import pages as web_pages

log = logging.getLogger("bitwrk.exchange")

SERVING_BUSY_MS = 250
RETIRE_BATCH = 500
MAX_SLEEP = 30.0
SHARED_RETRY = 0.05  # seconds

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure becomes ``{"error": code, "message": ...}`` with a fitting status."""
    try:
        return await handler(request)
    except BitwrkError as exc:
        return web.json_response(exc.to_json(), status=http_status(exc))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = "too_large" if exc.status == 413 else exc.reason.lower().replace(" ", "_")
        return web.json_response({"error": code, "message": exc.text}, status=exc.status)
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return web.json_response(
            {"error": "internal", "message": "internal error; logged"}, status=500
        )


async def _retire_forever(ex: Exchange, bus: EventBus) -> None:
    """Expire bids and time out transactions at their deadlines; resumes after a restart
    because deadlines live in the store, not in memory."""
    wake = asyncio.Event()
    target = [math.inf]

    def on_deadline(deadline: float) -> None:
        if deadline < target[0]:
            target[0] = deadline
            wake.set()

    ex.on_deadline = on_deadline
    while True:
        events: list[Event] = []
        try:
            events = trades.retire_due(ex, ex.clock(), RETIRE_BATCH)
            bus.publish(events)
            if len(events) >= RETIRE_BATCH:
                await asyncio.sleep(0)
                continue
            deadline = trades.next_deadline(ex)
        except Exception:
            log.exception("retirement failed; retrying in 1 s")
            deadline = ex.clock() + 1.0
        target[0] = math.inf if deadline is None else deadline
        wake.clear()
        # Shared store: a due row another process holds (or sweeps) is not ours to wait on
        # in a busy loop; it is gone or still due a moment later.
        floor = SHARED_RETRY if ex.shared and not events else 0.0
        delay = min(MAX_SLEEP, max(floor, target[0] - ex.clock()))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), delay)


async def _heartbeat(conn: store.Conn, clock: Callable[[], float]) -> None:
    """Note in the store that the exchange is alive (see :mod:`service.downtime`)."""
    while True:
        try:
            downtime.note_alive(conn, clock())
        except store.ERRORS:
            log.exception("heartbeat not stored; trying again")
        await asyncio.sleep(downtime.HEARTBEAT)


async def payments_watcher(app: web.Application) -> AsyncIterator[None]:
    """Pin the payment xpub to the store and, when a backend is configured, run the chain
    watcher (service/payments) for the app's lifetime."""
    from .payments.watcher import ChainWatcher, check_store_key, make_backend

    check_store_key(app[EXCHANGE])
    backend = make_backend(app[CONFIG].payments)
    if backend is None:
        yield
        return
    watcher = ChainWatcher(app[EXCHANGE], app[COMMITTER], app[BUS], backend)
    task = asyncio.create_task(watcher.run_forever())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def create_app(config: Config, clock: Callable[[], float] = time.time) -> web.Application:
    app = web.Application(client_max_size=config.max_body, middlewares=[errors])
    app[CONFIG] = config
    app[BUS] = EventBus(config.limits, config.keepalive_seconds)

    async def open_store(app: web.Application) -> AsyncIterator[None]:
        conn = store.connect(config.store)
        checkpoints = None
        if isinstance(conn, sqlite3.Connection):
            # The loop never waits longer than this for another connection's write lock;
            # the committer answers the batch "busy" instead (issue 11).
            conn.execute(f"PRAGMA busy_timeout={SERVING_BUSY_MS}")
            checkpoints = db.Checkpointer(config.db_path)
            checkpoints.start(conn)
        downtime.resume(conn, clock(), config.shift_deadlines)  # before the books load
        app[EXCHANGE] = Exchange(conn, config, clock)
        app[COMMITTER] = Committer(app[EXCHANGE])
        streams.ensure_secret(app[EXCHANGE])
        tasks = []
        if config.store_url and store.shared(conn):  # other processes' events, from now on
            from .pgstore import EventRelay

            relay = EventRelay(config.store_url, app[BUS].publish_remote)
            await relay.start()
            app[BUS].relay = relay.send
            tasks.append(asyncio.create_task(relay.run()))
        tasks += [asyncio.create_task(_retire_forever(app[EXCHANGE], app[BUS])),
                  asyncio.create_task(app[BUS].run()),
                  asyncio.create_task(_heartbeat(conn, clock))]
        yield
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        conn.close()
        if checkpoints is not None:
            await asyncio.to_thread(checkpoints.stop)

    async def close_streams(app: web.Application) -> None:
        app[BUS].close()

    app.cleanup_ctx.append(open_store)
    app.cleanup_ctx.append(payments_watcher)  # after store: it needs the exchange
    app.on_shutdown.append(close_streams)
    app.add_routes(routes)
    app.add_routes(payment_routes)
    probe.install(app)  # reachability probes for the relay choice (docs/relay.md)
    app.add_routes(web_pages.routes)  # the HTML pages and their static files
    return app
