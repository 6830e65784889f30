"""The one result table every benchmark prints: rows of (benchmark, metric, value, target, ok)."""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TextIO

TITLE = "BitWrk benchmark results"
COLUMNS = ("benchmark", "metric", "value", "target", "result")


@dataclass(frozen=True)
class Row:
    bench: str
    metric: str
    value: float | None  # None: not measured
    unit: str = ""
    target: str = ""  # e.g. ">= 2000", "< 50 ms"; empty: informational
    ok: bool | None = None  # None: no target
    note: str = ""


def percentile(values: Iterable[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of ``values``; None when there are none."""
    data = sorted(values)
    if not data:
        return None
    rank = max(1, math.ceil(q / 100 * len(data)))
    return data[min(rank, len(data)) - 1]


def format_value(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    if unit == "ms":
        text = f"{value:,.1f}" if value < 100 else f"{value:,.0f}"
    elif unit == "" and float(value).is_integer():
        text = f"{int(value):,}"
    elif unit in ("x", ""):
        text = f"{value:,.3f}" if abs(value) < 10 else f"{value:,.0f}"
    elif unit == "%":
        text = f"{value:.1f}"
    else:
        text = f"{value:,.0f}"
    return f"{text} {unit}".rstrip()


def mark(ok: bool | None) -> str:
    return {True: "PASS", False: "FAIL", None: "-"}[ok]


def print_table(rows: list[Row], title: str = TITLE, out: TextIO = sys.stdout) -> None:
    cells = [
        (r.bench, r.metric + (f" ({r.note})" if r.note else ""), format_value(r.value, r.unit),
         r.target or "-", mark(r.ok))
        for r in rows
    ]
    widths = [max(len(c[i]) for c in [COLUMNS, *cells]) for i in range(len(COLUMNS))]
    right = {2}  # values right-aligned

    def line(cols: tuple[str, ...]) -> str:
        parts = [c.rjust(w) if i in right else c.ljust(w)
                 for i, (c, w) in enumerate(zip(cols, widths, strict=True))]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    print(title, file=out)
    print(line(COLUMNS), file=out)
    print(rule, file=out)
    for c in cells:
        print(line(c), file=out)
    checked = [r for r in rows if r.ok is not None]
    passed = sum(1 for r in checked if r.ok)
    print(rule, file=out)
    print(f"targets met: {passed}/{len(checked)}", file=out, flush=True)


def pair_note(ratio: float) -> str:
    """The note on a T_pair row (two local processes at once against one alone)."""
    drift = (" (below 1: this VM got faster meanwhile - its speed drifts - so the row below"
             " is pessimistic)" if ratio < 1 else "")
    return f"{ratio:.3f} x T_local{drift}: this machine's two busy cores against one"
