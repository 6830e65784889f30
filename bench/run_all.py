"""Run every benchmark of the project and print one table of figures, targets and ratios.

``python -m bench.run_all [--quick] [--only NAME ...] [--strict]`` (``make bench``). Each
benchmark is a module of this folder with ``collect(quick: bool) -> list[Row]``; one that
fails to run shows as a FAIL row and the others still run. Exit status 0 unless a benchmark
could not run (or, with --strict, a target was missed).
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections.abc import Callable

from bench import (
    demo,
    exchange,
    exchange_load,
    exchange_pg,
    relay,
    render,
    soak,
    swarm,
    transfer,
    verify,
)
from bench.table import Row, print_table

Collect = Callable[[bool], list[Row]]

BENCHMARKS: dict[str, Collect] = {
    exchange.NAME: lambda quick: exchange.collect(quick=quick),
    exchange_load.NAME: lambda quick: exchange_load.collect(quick=quick),
    exchange_pg.NAME: lambda quick: exchange_pg.collect(quick=quick),
    transfer.NAME: lambda quick: transfer.collect(quick=quick),
    relay.NAME: lambda quick: relay.collect(quick=quick),
    render.NAME: lambda quick: render.collect(quick=quick),
    swarm.NAME: lambda quick: swarm.collect(quick=quick),
    demo.NAME: lambda quick: demo.collect(quick=quick),  # beside the swarm's targets
    verify.NAME: lambda quick: verify.collect(quick=quick),
    soak.NAME: lambda quick: soak.run(),  # one size: the faults need the full timeline
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description="Run all BitWrk benchmarks.")
    p.add_argument("--quick", action="store_true", help="short runs (smoke test)")
    p.add_argument("--only", nargs="+", choices=sorted(BENCHMARKS), help="run only these")
    p.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = p.parse_args(argv)
    rows: list[Row] = []
    crashed = False
    for name in args.only or list(BENCHMARKS):
        start = time.monotonic()
        try:
            rows.extend(BENCHMARKS[name](args.quick))
        except Exception as exc:  # one broken benchmark must not hide the others
            traceback.print_exc()
            rows.append(Row(name, f"did not run: {type(exc).__name__}: {exc}"[:100], None,
                            target="runs", ok=False))
            crashed = True
        print(f"[bench] {name}: {time.monotonic() - start:.0f} s", file=sys.stderr, flush=True)
    print_table(rows)
    if crashed or (args.strict and any(r.ok is False for r in rows)):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
