"""``python -m service payouts export|confirm TXID|list``: the operator's side of withdrawals,
run on the exchange's machine against its store (SQLite serializes it with the server).

``export`` writes every pending withdrawal into one unsigned PSBT; sign it offline (e.g.
Bitcoin Core ``walletprocesspsbt`` in a wallet holding the private descriptor), broadcast,
then ``confirm`` the txid, or let the watcher see it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from bitwrk.errors import BitwrkError
from service import db
from service.config import Config, PaymentConfig, default_data_dir
from service.exchange import Exchange

from . import payouts


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m service payouts",
                                description="Export, confirm and list Bitcoin payouts.")
    p.add_argument("--db", type=Path, help="the server's SQLite file")
    sub = p.add_subparsers(dest="command", required=True)
    export = sub.add_parser("export", help="all pending withdrawals as one unsigned PSBT")
    export.add_argument("--fee-rate", type=int, help="sat/vB (default: the server's, 2)")
    export.add_argument("--out", type=Path, help="write the base64 PSBT here (else stdout)")
    confirm = sub.add_parser("confirm", help="mark the batch paid by TXID")
    confirm.add_argument("txid")
    sub.add_parser("list", help="pending withdrawals and recent batches (JSON)")
    return p


def open_exchange(path: Path) -> Exchange:
    conn = db.connect(path)
    xpub, network = db.meta(conn, "payments_xpub"), db.meta(conn, "payments_network")
    if xpub is None or network is None:
        conn.close()
        raise BitwrkError(f"{path} has no payments configured; start the server with --xpub")
    config = Config(db_path=path, operator="", network=network,
                    payments=PaymentConfig(xpub=xpub))
    return Exchange(conn, config)


def run(args: argparse.Namespace) -> dict[str, Any] | None:
    ex = open_exchange(args.db or default_data_dir() / "exchange.sqlite3")
    try:
        if args.command == "export":
            return payouts.export_batch(ex, args.fee_rate)
        if args.command == "confirm":
            return payouts.confirm(ex, args.txid)[0]
        return payouts.overview(ex)
    finally:
        ex.db.close()


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    try:
        result = run(args)
    except BitwrkError as exc:
        print(f"error: {exc.code}: {exc.message}", file=sys.stderr)
        return 1
    if args.command == "export":
        if result is None:
            print("no pending withdrawals", file=sys.stderr)
            return 0
        if args.out is not None:
            args.out.write_text(result["psbt"] + "\n")
        else:
            print(result["psbt"])
        print(f"batch {result['id']}: {len(result['withdrawals'])} withdrawals,"
              f" {result['total']} sat + {result['network_fee']} sat network fee,"
              f" txid {result['txid']}", file=sys.stderr)
        return 0
    print(json.dumps(result, indent=2, default=str))
    return 0
