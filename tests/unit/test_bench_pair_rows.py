"""The benches' T_pair rows: the demo's summary parsed, the efficiency with the machine's own
two-core scaling taken out, and the note when the VM drifted faster (ratio below 1)."""

from __future__ import annotations

import os

from bench import demo, swarm
from bench.table import pair_note

SUMMARY = """\
still       frame 4, 480x270 px, 4 tiles -> demo-output/still/
animation   frames 1-6, 320x180 px, one unit per frame -> demo-output/animation/
wall time, through the exchange     25.6 s  (still 8.9 s + animation 16.7 s, buyer commands)
  of which: buyer prep 1.4 s (probe, pack), trading 22.1 s (bids -> last unit; ...), after the last unit 2.1 s (the last frame, stopping)
local, one bpy process, one core    41.0 s  (same frames, same settings; CPU time)
parallel efficiency                 0.80   T_local / (2 x T_swarm) = 41.0 / (2 x 25.6)
"""  # noqa: E501


def test_demo_figures_parsed() -> None:
    f = demo.figures(SUMMARY)
    assert f == {"t_swarm": 25.6, "prep": 1.4, "trading": 22.1, "tail": 2.1, "t_local": 41.0,
                 "efficiency": 0.80}


def test_demo_pair_rows() -> None:
    rows = demo.pair_rows(51.2, 41.0, 25.6)
    assert rows[0].value == 51200
    assert "1.249 x T_local: this machine's two busy cores" in rows[0].note
    assert rows[1].value == 1.0  # 51.2 / (2 x 25.6): none of the loss is BitWrk's own
    assert demo.pair_rows(None, 41.0, 25.6) == []


def test_pair_note_says_when_the_machine_drifted_faster() -> None:
    assert "below 1" not in pair_note(1.1)
    assert "below 1: this VM got faster" in pair_note(0.8)


def test_swarm_still_row_against_own_scaling() -> None:
    local = swarm.Local(seconds=40.0, open_seconds=0.5, cpu_seconds=40.0, renders=[3.5] * 10,
                        render_cpu=[3.5] * 10, others=None)
    still = swarm.BuyerRun(started=0.0, ended=2.5, lines=[], returncode=0)
    plain = swarm.still_rows(local, still)
    assert [r.value for r in plain][-1] == 4.0 / 5.0
    scaled = swarm.still_rows(local, still, pair=50.0)
    assert len(scaled) == len(plain) + 1
    assert abs(scaled[-1].value - 4.0 / 5.0 * 1.25) < 1e-9


def test_swarm_helper_rows_split_workers_from_the_rest() -> None:
    tck = os.sysconf("SC_CLK_TCK")
    sampler = swarm.Sampler()
    # (t, mine, others): two busy cores; a quarter of it is a process other than the workers
    sampler.ticks = [(float(t), 2 * tck, 0) for t in range(1, 11)]
    sampler.spent = [(float(t), (7, "a"), tck // 2) for t in range(1, 11)]
    sampler.names = {(7, "a"): "spot-check worker"}
    rows = swarm.helper_rows(sampler, 0.0, 10.0)
    assert len(rows) == 1
    assert abs(rows[0].value - 25.0) < 1e-9  # 5 CPU-s of 20 core-seconds
    assert "5.0 CPU-s: spot-check worker 5.0; the render workers 15.0 CPU-s" in rows[0].note
    assert swarm.helper_rows(swarm.Sampler(), 0.0, 10.0) == []


def test_process_label_names_workers_and_modules() -> None:
    assert swarm._label(os.getpid()) != "?"
    assert swarm._label(2**22 + 12345) == "?"  # no such process


def test_swarm_f12_rows_compare_the_later_renders_of_one_session() -> None:
    rows = swarm.f12_rows({"local": [3.15, 3.44, 3.06], "bitwrk": [2.05, 1.78, 1.76],
                           "done": 4, "failed": 0, "stopped": True})
    wall, local, eff = rows
    assert wall.value == 1770.0 and local.value == 3250.0  # medians of renders 2 and 3
    assert "the first (it also connects the extension's daemon) 2.05 s" in wall.note
    assert eff.value == 3.25 / (2 * 1.77) and eff.target == ">= 0.85" and eff.ok
    *_, scaled = swarm.f12_rows({"local": [3.15, 3.44, 3.06], "bitwrk": [2.05, 1.78, 1.76]},
                                scaling=1.1)  # two busy cores each 10 % slower than one
    assert scaled.value == eff.value * 1.1 and "BitWrk's own" in scaled.note
    (missing,) = swarm.f12_rows(None, "the extension zip is built for linux-x64 only here")
    assert missing.value is None and "not measured: the extension zip" in missing.note
