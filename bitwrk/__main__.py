"""``python -m bitwrk account [--exchange URL]``: this machine's identity and balances."""

from __future__ import annotations

import argparse
import asyncio
import sys

from .client import ExchangeClient
from .daemon import paths
from .errors import BitwrkError
from .identity import load_or_create_key
from .money import format_amount


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bitwrk")
    sub = p.add_subparsers(dest="command", required=True)
    account = sub.add_parser("account", help="print the local identity (created on first use)")
    account.add_argument("--exchange", help="also print the balances on this exchange")
    account.add_argument("--network", default="testnet",
                         help="network for a new key (default testnet)")
    return p


async def _balances(url: str, address: str) -> str:
    async with ExchangeClient(url) as client:
        info = await client.info()
        acct = await client.account(address)
    return (f"exchange  {url} ({info['network']})\n"
            f"available {format_amount(acct.available)} ({acct.available} sat)\n"
            f"blocked   {format_amount(acct.blocked)} ({acct.blocked} sat)")


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    key = load_or_create_key(paths.key_path(), args.network)
    print(f"address   {key.address}")
    print(f"key file  {paths.key_path()}")
    if args.exchange:
        try:
            print(asyncio.run(_balances(args.exchange, key.address)))
        except (BitwrkError, OSError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
