"""The daemon's commands: one documented frozen dataclass each, every one dispatched, and
anything else refused as a Crashed event (through the real runtime thread)."""

from __future__ import annotations

import dataclasses
import time
import typing
from pathlib import Path
from typing import Any, cast

from bitwrk.daemon import Daemon, DaemonConfig, PauseSelling
from bitwrk.daemon.commands import Command
from bitwrk.daemon.runtime import Crashed, Event


def test_every_command_is_a_documented_frozen_dataclass() -> None:
    members: tuple[type, ...] = typing.get_args(Command)
    assert len(members) == 6
    for member in members:
        assert dataclasses.is_dataclass(member), member
        assert vars(member)["__dataclass_params__"].frozen, member
        doc = vars(member).get("__doc__") or ""  # not the one dataclass writes: "Name(...)"
        assert doc and not doc.startswith(member.__name__ + "("), member


def _events_until(daemon: Daemon, done: typing.Callable[[list[Event]], bool]) -> list[Event]:
    events: list[Event] = []
    deadline = time.monotonic() + 30
    while not done(events) and time.monotonic() < deadline:
        events += daemon.pump(0.01)
        time.sleep(0.01)
    return events


def test_an_unknown_command_is_a_crash_event_and_a_pause_while_not_selling_is_none(
        tmp_path: Path) -> None:
    daemon = Daemon(DaemonConfig("http://127.0.0.1:9", data_dir=tmp_path / "data",
                                 cache_dir=tmp_path / "cache"))
    daemon.runtime.start()  # the loop only: no exchange needed for these two
    try:
        daemon.submit(PauseSelling(True))
        daemon.submit(cast(Any, "sell everything"))
        events = _events_until(daemon, lambda seen: any(isinstance(e, Crashed) for e in seen))
        time.sleep(0.2)  # both commands ran in order; anything the pause posted is here now
        events += daemon.pump(0.05)
        crashes = [e for e in events if isinstance(e, Crashed)]
        assert len(crashes) == 1, events
        assert "unknown command 'sell everything'" in crashes[0].error
    finally:
        assert daemon.runtime.stop(10)
