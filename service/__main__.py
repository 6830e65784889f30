"""``python -m service`` runs the exchange; ``python -m service credit ADDRESS SATOSHI``
credits play money on a test network through an operator-signed deposit;
``python -m service relay --exchange URL`` runs the relay for sellers behind NAT;
``python -m service payouts export|confirm TXID|list`` handles Bitcoin withdrawals."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
import signal
import sys
from pathlib import Path

import aiohttp
from aiohttp import web

from bitwrk.errors import BitwrkError
from bitwrk.identity import load_or_create_key
from bitwrk.keys import NETWORKS, PrivateKey, address_network, is_test_network

from .app import create_app
from .config import Config, Limits, PaymentConfig, Timeouts, default_data_dir
from .db import MIGRATIONS
from .limits import BACKLOG, ConnectionGuard, quiet_accept_errors, quiet_logs, raise_fd_limit
from .store import connect as connect_store
from .store import is_url

DEFAULT_PORT = 8480


def _serve_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m service", description="Run the BitWrk exchange.")
    p.add_argument("--db", "--store-url", dest="db", type=_store_arg, metavar="FILE|URL",
                   help="SQLite file (default: in the user data dir) or a PostgreSQL URL,"
                        " postgresql://user@host/dbname (docs/postgresql.md)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=DEFAULT_PORT)
    p.add_argument("--network", choices=NETWORKS, default="regtest")
    p.add_argument("--fee-bps", type=int, default=300, help="fee in basis points (300 = 3%%)")
    p.add_argument("--operator", help="operator address (default: key file beside the db)")
    p.add_argument("--operator-key", type=Path, help="operator WIF file (test networks)")
    p.add_argument("--timeout-scale", type=float, default=1.0,
                   help="multiply every bid lifetime and transaction timeout (tests)")
    p.add_argument("--relay-url", help="the relay sellers behind NAT use, advertised in"
                                       " /api/v1/info (python -m service relay)")
    p.add_argument("--allow-local-probes", action="store_true",
                   help="reachability probes may call loopback/private addresses (tests)")
    p.add_argument("--no-deadline-shift", action="store_true",
                   help="after a restart, let deadlines that fell in the downtime expire at"
                        " once (default: move open deadlines later by the downtime)")
    _payment_options(p)
    _limit_options(p)
    return p


_LIMITS = {  # option -> (Limits field, type, help)
    "--max-connections": ("max_connections", int, "open connections in total"),
    "--max-connections-per-ip": ("max_connections_per_ip", int, "per client address"),
    "--header-timeout": ("header_timeout", float, "seconds for a request's headers"),
    "--body-timeout": ("body_timeout", float, "seconds for a request's body"),
    "--max-streams": ("max_streams", int, "event-stream subscribers in total"),
    "--max-streams-per-address": ("max_streams_per_address", int, "private streams each"),
    "--max-open-bids": ("max_open_bids", int, "placed bids per address"),
    "--bar-after-misses": ("bar_after_misses", int, "missed endpoints before a bar"),
    "--bar-seconds": ("bar_seconds", float, "how long a barred seller may not sell"),
}


def _limit_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("limits (README: Run an exchange, Limits)")
    defaults = Limits()
    for option, (name, kind, text) in _LIMITS.items():
        g.add_argument(option, dest=name, type=kind, default=getattr(defaults, name),
                       help=f"{text} (default {getattr(defaults, name)})")


def _limits(args: argparse.Namespace) -> Limits:
    return Limits(**{name: getattr(args, name) for name, _, _ in _LIMITS.values()})


def _payment_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("Bitcoin payments (off without --xpub)")
    g.add_argument("--xpub", help="account xpub/tpub/zpub/vpub, e.g. [fp/84h/1h/0h]tpub...")
    g.add_argument("--chain-backend", choices=("none", "core", "esplora"), default="none")
    g.add_argument("--chain-url", default="",
                   help="Core RPC URL incl. /wallet/NAME, or the Esplora API base URL")
    g.add_argument("--rpc-user", default="")
    g.add_argument("--rpc-password-env", default="BITWRK_RPC_PASSWORD",
                   help="environment variable holding the Core RPC password")
    g.add_argument("--confirmations", type=int, default=6)
    g.add_argument("--min-deposit", type=int, default=10_000, help="satoshi")
    g.add_argument("--min-withdrawal", type=int, default=50_000, help="satoshi")
    g.add_argument("--daily-limit", type=int, default=10_000_000, help="satoshi per account")
    g.add_argument("--poll-seconds", type=float, default=30.0)


def _payment_config(args: argparse.Namespace) -> PaymentConfig:
    return PaymentConfig(
        xpub=args.xpub, backend=args.chain_backend, backend_url=args.chain_url,
        rpc_user=args.rpc_user, rpc_password=os.environ.get(args.rpc_password_env, ""),
        confirmations=args.confirmations, min_deposit=args.min_deposit,
        min_withdrawal=args.min_withdrawal, daily_limit=args.daily_limit,
        poll_seconds=args.poll_seconds,
    )


def _store_arg(text: str) -> Path | str:
    return text if is_url(text) else Path(text)


def _migrate(argv: list[str]) -> int:
    """``python -m service migrate --db FILE|URL``: create or upgrade the schema, then exit
    (before starting new exchange processes on an upgraded release)."""
    p = argparse.ArgumentParser(prog="python -m service migrate",
                                description="Create or upgrade the exchange's store.")
    p.add_argument("--db", "--store-url", dest="db", type=_store_arg, metavar="FILE|URL",
                   default=default_data_dir() / "exchange.sqlite3")
    args = p.parse_args(argv)
    connect_store(args.db).close()  # migrates, under a lock where processes share it
    print(f"store {args.db} is at the current schema (version {len(MIGRATIONS)})")
    return 0


def _credit_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m service credit",
                                description="Credit play money (test networks only).")
    p.add_argument("address")
    p.add_argument("satoshi", type=int)
    p.add_argument("--exchange", default=f"http://127.0.0.1:{DEFAULT_PORT}")
    p.add_argument("--db", type=Path, help="the server's --db, to find the operator key")
    p.add_argument("--operator-key", type=Path)
    return p


def _key_path(db: Path | None, key: Path | None) -> Path:
    if key is not None:
        return key
    return (db.parent if db is not None else default_data_dir()) / "operator.wif"


def serve(argv: list[str]) -> int:
    args = _serve_parser().parse_args(argv)
    url = args.db if isinstance(args.db, str) else None
    file = args.db if isinstance(args.db, Path) else None
    db_path = file or default_data_dir() / "exchange.sqlite3"
    operator = args.operator
    if operator is None:
        if not is_test_network(args.network):
            sys.exit("on mainnet pass --operator ADDRESS (the operator signs offline)")
        if url is not None and args.operator_key is None:
            sys.exit("with a PostgreSQL store pass --operator or --operator-key (every"
                     " exchange process must share the operator)")
        operator = load_or_create_key(_key_path(file, args.operator_key), args.network).address
    try:
        config = Config(db_path=db_path, store_url=url, operator=operator, network=args.network,
                        fee_bps=args.fee_bps, timeouts=Timeouts().scaled(args.timeout_scale),
                        payments=_payment_config(args), limits=_limits(args),
                        shift_deadlines=not args.no_deadline_shift,
                        relay_url=args.relay_url, allow_local_probes=args.allow_local_probes)
    except ValueError as exc:
        sys.exit(f"error: {exc}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    quiet_logs()
    print(f"BitWrk exchange on http://{args.host}:{args.port} network={args.network} "
          f"db={url or db_path} operator={operator}", flush=True)
    asyncio.run(_run(config, args.host, args.port))
    return 0


async def _run(config: Config, host: str, port: int) -> None:
    """Serve until SIGINT/SIGTERM, with the connection caps and read timeouts of
    ``config.limits`` (service/limits.py)."""
    quiet_accept_errors(asyncio.get_running_loop())
    runner = web.AppRunner(create_app(config), shutdown_timeout=2.0,
                           keepalive_timeout=config.limits.header_timeout, access_log=None)
    await runner.setup()
    assert runner.server is not None
    ConnectionGuard(config.limits, raise_fd_limit()).install(runner.server)
    await web.TCPSite(runner, host, port, backlog=BACKLOG).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


async def _credit(args: argparse.Namespace) -> int:
    from bitwrk.client import ExchangeClient

    if address_network(args.address) == "mainnet":
        raise BitwrkError("play money is for test networks only")
    path = _key_path(args.db, args.operator_key)
    try:
        key = PrivateKey.from_wif(path.read_text().strip())
    except FileNotFoundError:
        raise BitwrkError(f"no operator key at {path} (the exchange keeps it beside its --db"
                           " file); pass that --db or --operator-key") from None
    async with ExchangeClient(args.exchange, key) as client:
        deposit = await client.deposit(args.address, args.satoshi, kind="play",
                                       uid="play-" + secrets.token_hex(12), ref="faucet")
        account = await client.account(args.address)
    print(f"credited {deposit['amount']} sat to {args.address}; "
          f"available {account.available} sat")
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["relay"]:
        from .relay.cli import main as relay_main

        return relay_main(argv[1:])
    if argv[:1] == ["payouts"]:
        from .payments.cli import main as payouts_main

        return payouts_main(argv[1:])
    if argv[:1] == ["migrate"]:
        return _migrate(argv[1:])
    if argv[:1] == ["credit"]:
        args = _credit_parser().parse_args(argv[1:])
        try:
            return asyncio.run(_credit(args))
        except BitwrkError as exc:
            code = "" if exc.code == BitwrkError.code else f"{exc.code}: "
            print(f"error: {code}{exc.message}", file=sys.stderr)
            return 1
        except (OSError, TimeoutError, aiohttp.ClientError) as exc:  # one line, no traceback
            from bitwrk.retry import describe

            print(f"error: cannot reach the exchange at {args.exchange}: {describe(exc)}",
                  file=sys.stderr)
            return 1
    return serve(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
