"""``python -m service relay``: run the relay beside an exchange (docs/relay.md)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from pathlib import Path

from aiohttp import web

from ..config import Limits
from ..limits import BACKLOG, ConnectionGuard, quiet_accept_errors, raise_fd_limit
from .app import RelayConfig, create_relay_app

DEFAULT_PORT = 8481


def _parser() -> argparse.ArgumentParser:
    d = RelayConfig("", "")
    p = argparse.ArgumentParser(prog="python -m service relay",
                                description="Run the relay for sellers behind NAT.")
    p.add_argument("--exchange", required=True, help="the exchange's URL (asked about trades)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=DEFAULT_PORT)
    p.add_argument("--public-url", help="URL buyers and sellers reach the relay at"
                                        " (default http://HOST:PORT)")
    p.add_argument("--max-tunnels", type=int, default=d.max_tunnels)
    p.add_argument("--max-streams-per-seller", type=int, default=d.max_streams_per_seller)
    p.add_argument("--seller-rate", type=float, default=d.seller_rate,
                   help="bytes/s through one seller's tunnel, both ways (0: no cap)")
    p.add_argument("--body-idle", type=float, default=d.body_idle,
                   help="seconds a body may stall before its stream ends")
    p.add_argument("--heartbeat", type=float, default=d.heartbeat)
    p.add_argument("--max-connections", type=int, default=4000)
    p.add_argument("--max-connections-per-ip", type=int, default=256)
    p.add_argument("--capture", type=Path,
                   help="append every forwarded body byte to this file (audits, tests)")
    return p


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if min(args.max_tunnels, args.max_streams_per_seller, args.max_connections,
           args.max_connections_per_ip) < 1 or min(args.body_idle, args.heartbeat) <= 0:
        raise SystemExit("error: caps must be at least 1 and timeouts positive")
    public = args.public_url or f"http://{args.host}:{args.port}"
    config = RelayConfig(args.exchange, public, args.max_tunnels, args.max_streams_per_seller,
                         args.seller_rate, args.body_idle, args.heartbeat, capture=args.capture)
    limits = Limits(max_connections=args.max_connections,
                    max_connections_per_ip=args.max_connections_per_ip)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    print(f"BitWrk relay on http://{args.host}:{args.port} public={public}"
          f" exchange={args.exchange}", flush=True)
    asyncio.run(_run(config, limits, args.host, args.port))
    return 0


async def _run(config: RelayConfig, limits: Limits, host: str, port: int) -> None:
    quiet_accept_errors(asyncio.get_running_loop())
    runner = web.AppRunner(create_relay_app(config), shutdown_timeout=2.0, access_log=None)
    await runner.setup()
    assert runner.server is not None
    ConnectionGuard(limits, raise_fd_limit()).install(runner.server)
    await web.TCPSite(runner, host, port, backlog=BACKLOG).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
