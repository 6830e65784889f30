"""``python -m bitwrk.buy A.blend ... --then B.blend ...``: how a run of several scenes
reads its arguments, names its scenes and shares out its budget."""

from __future__ import annotations

from pathlib import Path

import pytest

from bitwrk.buy import MAX_SCENES, budgets, labels, parse

RUN = ["--exchange", "http://x", "--max-price", "9", "--out", "o"]


def test_a_then_scene_takes_the_runs_options_unless_it_gives_its_own() -> None:
    first, second, third = parse(["a.blend", *RUN, "--tiles", "4", "--frames", "2",
                                  "--then", "b.blend", "--frames", "1-6", "--out", "anim",
                                  "--then", "c.blend", "--cost-class", "2G"])
    assert (first.scene, first.frames, first.tiles, first.out) == (
        Path("a.blend"), "2", "4", Path("o"))
    assert (second.scene, second.frames, second.tiles, second.out) == (
        Path("b.blend"), "1-6", "4", Path("anim"))
    assert (third.scene, third.frames, third.cost_class, third.out) == (
        Path("c.blend"), "2", "2G", Path("o"))
    assert third.max_price == 9 and third.exchange == "http://x"  # the run's, never its own
    assert parse(["a.blend", *RUN])[0].scene == Path("a.blend")  # one scene, as ever


@pytest.mark.parametrize("then", [
    [],  # --then without a scene
    ["b.blend", "--max-price", "5"],  # a run's option, not a scene's
    ["b.blend", "--cost-class", "huge"],
    ["b.blend", "c.blend"],  # one scene per --then
])
def test_a_bad_then_segment_is_a_usage_error(then: list[str],
                                             capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        parse(["a.blend", *RUN, "--then", *then])
    assert exc.value.code == 2
    assert "usage: python -m bitwrk.buy ... --then" in capsys.readouterr().err


def test_at_most_max_scenes(capsys: pytest.CaptureFixture[str]) -> None:
    many = ["a.blend", *RUN]
    for i in range(MAX_SCENES):
        many += ["--then", f"s{i}.blend"]
    with pytest.raises(SystemExit) as exc:
        parse(many)
    assert exc.value.code == 2
    assert f"at most {MAX_SCENES} scenes" in capsys.readouterr().err
    assert len(parse(many[:-2])) == MAX_SCENES


def test_labels_are_file_names_told_apart() -> None:
    assert labels([Path("x/shot.blend")]) == [""]  # one scene: lines as before
    assert labels([Path("x/shot.blend"), Path("y/anim.blend")]) == ["shot", "anim"]
    assert labels([Path("x/shot.blend"), Path("y/shot.blend"), Path("anim.blend")]) == [
        "shot#1", "shot#2", "anim"]


def test_budget_is_shared_out_by_units_and_adds_up() -> None:
    assert budgets(1000, [4, 6], 100) == [400, 600]
    assert budgets(1001, [1, 1, 1], 100) == [335, 333, 333]
    assert sum(budgets(7, [3, 5, 2], 10)) == 7
    # without --budget: each scene's units at the max price, room for fees, as for one
    assert budgets(None, [4, 6], 100) == [540, 760]
