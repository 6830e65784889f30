"""The soak with faults (issue 19), in the suite: three buyers, three sellers, real processes;
a seller, the exchange and a buyer are SIGKILLed and restarted while jobs run. The
scenario lives in ``bench/soak.py`` (which prints its figures); this test asserts on it."""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest

from bench.soak import DOWNTIME, EXIT_GRACE, JOB_TIMEOUT, Soak, rows, run_soak
from bench.table import print_table
from tests.blender.conftest import needs_bpy, references, scene_dir  # noqa: F401 - fixtures
from tests.blender.test_render_exact import assert_identical

pytestmark = [needs_bpy, pytest.mark.slow]
RECOVERY_LIMIT = 15.0  # s; the bench's target is 5 s, the suite allows for a loaded machine


def test_market_rides_through_kills_of_a_seller_the_exchange_and_a_buyer(
    scene_dir: Path, references: Path, tmp_path: Path  # noqa: F811 - pytest fixtures
) -> None:
    soak = run_soak(tmp_path, scene_dir / "scene.blend")
    print_table(rows(soak))
    story = _story(soak)

    # no Python traceback in any process's output (exchange, sellers, every bitwrk.buy)
    for name, text in soak.logs.items():
        assert "Traceback" not in text, f"{name}:\n{text[-4000:]}"
    # every job ended on its own within its timeout, and all but the killed one finished
    assert not any(j.overran for j in soak.jobs), story
    assert all(j.seconds is not None and j.seconds <= JOB_TIMEOUT + EXIT_GRACE
               for j in soak.jobs), story
    # no job fails of the faults (or of anything else): all but the killed one finish.
    # The rare "cannot pack scene.blend: [Errno 2] ... bat-...-scene.blend" once tolerated
    # here was a race in packing (tests/blender/test_packing_race.py).
    failed = [j for j in soak.jobs if j.code != 0 and not j.killed]
    assert not failed, story
    assert soak.in_flight and all(j.code == 0 for j in soak.in_flight), story
    # the killed buyer's next run started while the exchange was down, and finished
    assert soak.killed_next is not None and soak.killed_next.code == 0, story
    assert soak.killed_next.started < soak.t_exchange_ready, story
    # what they bought is exactly a local render, and only their own units
    for job in (j for j in soak.jobs if j.code == 0):
        assert "done: 6 units" in job.output, job.output
        assert_identical(job.out / "Shot_0001", references, "plain")
        assert_identical(job.out / "Shot_0003", references, "frame3")
    # no seller left on its own; each stops cleanly when told to
    assert all(soak.sellers_alive), story
    assert soak.seller_codes == [0, 0, 0], story
    # the ledger balances and nothing stays blocked after the last job
    t = soak.totals
    assert t["available"] + t["blocked"] + t["fees"] == t["deposits"], t
    assert not any(soak.blocked.values()), soak.blocked
    # the market resumed at once and at its old pace
    assert soak.recovery is not None and soak.recovery < RECOVERY_LIMIT, story
    before, after = soak.before(), soak.after()
    assert before and after, story
    assert max(after) <= 3 * statistics.median(before), story
    # ... and a job caught by the outage lost little more than the outage
    caught = max(j.seconds or 0.0 for j in soak.in_flight)
    assert caught <= 3 * statistics.median(before) + DOWNTIME, story


def _story(soak: Soak) -> str:
    lines = [f"buyer{j.buyer} run {j.run}: exit {j.code} after {j.seconds or 0:.1f} s"
             f"{' (killed)' if j.killed else ''}{' (overran)' if j.overran else ''}"
             for j in soak.jobs]
    lines.append(f"recovery {soak.recovery} s; sellers alive {soak.sellers_alive}"
                 f" codes {soak.seller_codes}; blocked {soak.blocked}")
    failed = [j for j in soak.jobs if j.code != 0 and not j.killed]
    lines += [f"--- buyer{j.buyer} run {j.run}:\n{j.output[-2000:]}" for j in failed[:2]]
    return "\n".join(lines)
