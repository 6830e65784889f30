"""The demo as a benchmark: ``make demo``'s parallel efficiency beside the swarm's figures.

Runs ``python -m demo.run`` (a still in 4 tiles and an animation, bought from two one-core
sellers, against one local bpy process on one core) into a scratch dir and reads its
summary. Target: efficiency >= 0.85 (issue 17), stitch + denoise included.

Then T_pair: the demo's local render twice at once, one process per core, on the same
scene files. On a VM two busy cores may each be slower than one alone (the host shares
them); T_pair / 2 is the best any two-core split can reach, so T_pair / (2 x T_swarm) is
the efficiency with the machine's own scaling taken out (printed beside the target, not
instead of it; the swarm bench does the same).

``python -m bench.demo [--quick] [--strict]``; progress on stderr, the table on stdout.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.cli import arguments, exit_status
from bench.table import Row, pair_note, print_table

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
    "busy": r"sellers busy\s+([\d.]+)",
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
        pair = pair_render(Path(tmp), done.stdout)
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
        Row(NAME, "T_swarm: still + animation, one buyer command", _ms(f.get("t_swarm")), "ms",
            note=note), *rows,
        Row(NAME, "T_local: the same frames, one process, one core", _ms(f.get("t_local")),
            "ms", note="CPU time"),
        Row(NAME, "parallel efficiency T_local / (2 x T_swarm)", eff, "x", f">= {TARGET}",
            None if eff is None else eff >= TARGET,
            note=f"whole demo {time.monotonic() - started:.0f} s" + (" (--quick)" if quick
                                                                      else "")),
        Row(NAME, "sellers busy: rendering / (2 x T_swarm)", f.get("busy"), "x",
            note="seller idle time alone; unmoved by the machine's speed drifting between"
                 " the swarm and the local render"),
        *pair_rows(pair, f.get("t_local"), f.get("t_swarm")),
    ]


def pair_render(tmp: Path, summary: str) -> float | None:
    """Wall seconds of two local renders of the demo's frames at once, one per core (the
    slower of the two); None where the summary does not say which frames."""
    out = tmp / "out"
    still = re.search(r"still\s+frame (\d+),", summary)
    frames = re.search(r"animation\s+frames 1-(\d+),", summary)
    if still is None or frames is None:
        return None
    jobs = [f"{out / 'scene' / 'demo_still.blend'}:{still.group(1)}",
            f"{out / 'scene' / 'demo.blend'}:" + ",".join(
                str(f) for f in range(1, int(frames.group(1)) + 1))]
    procs = []
    for cpu in (0, 1):
        target = tmp / f"pair{cpu}"
        target.mkdir()
        procs.append(subprocess.Popen(
            [sys.executable, str(ROOT / "demo" / "local_render.py"), str(cpu), str(target),
             *jobs], cwd=ROOT, text=True, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            env=_scratch_env(tmp / f"pair{cpu}-env")))
    walls = []
    for proc in procs:
        text, _ = proc.communicate(timeout=1800)
        lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
        if proc.returncode != 0 or not lines:
            raise RuntimeError(f"a pair render failed ({proc.returncode})")
        walls.append(float(lines[-1]["since_start"]))
    return max(walls)


def _scratch_env(base: Path) -> dict[str, str]:
    env = dict(os.environ)
    for key, sub in (("BLENDER_USER_RESOURCES", "user"), ("XDG_CACHE_HOME", "cache")):
        (base / sub).mkdir(parents=True)
        env[key] = str(base / sub)
    return env


def pair_rows(pair: float | None, t_local: float | None, t_swarm: float | None) -> list[Row]:
    """The machine's own two-core scaling, and the demo's efficiency with it taken out."""
    if pair is None or not t_local or not t_swarm:
        return []
    return [
        Row(NAME, "T_pair: the same frames twice at once, one process per core", _ms(pair),
            "ms", note=pair_note(pair / t_local)),
        Row(NAME, "  efficiency against the machine's own two-core scaling",
            pair / (2 * t_swarm), "x", note="T_pair / (2 x T_swarm): the loss that is"
                                            " BitWrk's own")]


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000



def main(argv: list[str] | None = None) -> int:
    args = arguments("bench.demo", __doc__).parse_args(argv)
    table = collect(quick=args.quick)
    print_table(table, title="BitWrk demo benchmark")
    return exit_status(table, args.strict)


if __name__ == "__main__":
    sys.exit(main())
