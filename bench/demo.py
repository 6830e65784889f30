"""The demo as a benchmark: ``make demo``'s parallel efficiency beside the swarm's figures.

Runs ``python -m demo.run`` (a still in 4 tiles and an animation, bought from two one-core
sellers, against one local bpy process on one core) into a scratch dir and reads its
summary. Target: efficiency >= 0.85 (issue 17), stitch + denoise included.

``python -m bench.demo [--quick] [--strict]``; progress on stderr, the table on stdout.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.cli import arguments, exit_status
from bench.table import Row, print_table

ROOT = Path(__file__).resolve().parents[1]
NAME = "demo"
TARGET = 0.85
FIGURES = {
    "t_swarm": r"wall time, through the exchange\s+([\d.]+) s",
    "prep": r"buyer prep ([\d.]+) s",
    "trading": r"trading ([\d.]+) s",
    "tail": r"after the last unit ([\d.]+) s",
    "t_local": r"local, one bpy process, one core\s+([\d.]+) s",
    "efficiency": r"parallel efficiency\s+([\d.]+)",
}


def figures(summary: str) -> dict[str, float]:
    """The demo summary's figures (those it printed)."""
    found = {}
    for key, pattern in FIGURES.items():
        match = re.search(pattern, summary)
        if match:
            found[key] = float(match.group(1))
    return found


def collect(quick: bool = False) -> list[Row]:
    with tempfile.TemporaryDirectory(prefix="bitwrk-bench-demo-") as tmp:
        argv = [sys.executable, "-m", "demo.run", "--out", str(Path(tmp) / "out")]
        started = time.monotonic()
        done = subprocess.run(argv + (["--quick"] if quick else []), cwd=ROOT, text=True,
                              capture_output=True, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"the demo failed ({done.returncode}): {done.stderr[-1500:]}")
    f = figures(done.stdout)
    composed = re.findall(r"\]\s+(still|animation)\s+composed (\d+) frame\(s\) as their units"
                          r" landed \((.*?) s\); the last ([\d.]+) s after", done.stdout)
    eff = f.get("efficiency")
    note = (f"prep {f.get('prep', 0):.1f} + trading {f.get('trading', 0):.1f} + after the"
            f" last unit {f.get('tail', 0):.1f} s")
    rows = [Row(NAME, f"  {name}: its last frame composed after its last unit",
                _ms(float(last)), "ms", note=f"{n} frame(s) in all: {steps} s")
            for name, n, steps, last in composed]
    return [
        Row(NAME, "T_swarm: still + animation, buyer commands", _ms(f.get("t_swarm")), "ms",
            note=note), *rows,
        Row(NAME, "T_local: the same frames, one process, one core", _ms(f.get("t_local")),
            "ms", note="CPU time"),
        Row(NAME, "parallel efficiency T_local / (2 x T_swarm)", eff, "x", f">= {TARGET}",
            None if eff is None else eff >= TARGET,
            note=f"whole demo {time.monotonic() - started:.0f} s" + (" (--quick)" if quick
                                                                      else "")),
    ]


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


def main(argv: list[str] | None = None) -> int:
    args = arguments("bench.demo", __doc__).parse_args(argv)
    table = collect(quick=args.quick)
    print_table(table, title="BitWrk demo benchmark")
    return exit_status(table, args.strict)


if __name__ == "__main__":
    sys.exit(main())
