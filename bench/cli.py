"""The command line every benchmark script shares: ``--quick``, ``--strict`` and what
``--strict`` makes of the rows."""

from __future__ import annotations

import argparse

from bench.table import Row


def arguments(module: str, doc: str | None) -> argparse.ArgumentParser:
    """``python -m module``'s parser with ``--quick`` and ``--strict``, described by
    ``doc``'s first line."""
    parser = argparse.ArgumentParser(prog=f"python -m {module}",
                                     description=doc.splitlines()[0] if doc else None)
    parser.add_argument("--quick", action="store_true", help="short run (smoke test)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    return parser


def exit_status(rows: list[Row], strict: bool) -> int:
    """0, or 1 with ``strict`` when a row missed its target."""
    return 1 if strict and any(r.ok is False for r in rows) else 0
