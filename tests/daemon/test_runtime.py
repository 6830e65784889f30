"""The daemon runtime's thread contract: never blocks the caller, crashes become events."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from bitwrk.daemon.runtime import Crashed, Event, Runtime, Started, Stopped


class Echo(Event):
    pass


def test_commands_in_events_out_and_stop_twice() -> None:
    seen: list[Any] = []
    runtime: Runtime

    async def handle(command: Any) -> None:
        assert threading.current_thread().name == "bitwrk-daemon"
        await asyncio.sleep(0.01)
        seen.append(command)
        runtime.post(Echo())

    runtime = Runtime(handle)
    runtime.start()
    runtime.start()  # idempotent
    started = time.monotonic()
    for i in range(5):
        runtime.submit(i)
    assert time.monotonic() - started < 0.05  # submitting never waits for the work
    events: list[Event] = []
    deadline = time.monotonic() + 5
    while sum(isinstance(e, Echo) for e in events) < 5 and time.monotonic() < deadline:
        events += runtime.pump(0.01)
        time.sleep(0.005)
    assert isinstance(events[0], Started)
    assert sorted(seen) == [0, 1, 2, 3, 4]
    assert runtime.stop(5) and runtime.stop(5)
    assert not runtime.running
    assert any(isinstance(e, Stopped) for e in runtime.pump(0.1))


def test_a_crashing_command_becomes_an_event_and_the_loop_lives_on() -> None:
    async def handle(command: Any) -> None:
        if command == "boom":
            raise ValueError("kaputt")

    runtime = Runtime(handle)
    runtime.start()
    runtime.submit("boom")
    crash = None
    deadline = time.monotonic() + 5
    while crash is None and time.monotonic() < deadline:
        crash = next((e for e in runtime.pump() if isinstance(e, Crashed)), None)
        time.sleep(0.01)
    assert crash is not None and "kaputt" in crash.error and "ValueError" in crash.trace
    assert runtime.call(asyncio.sleep(0, result=42), 5) == 42  # still serving
    assert runtime.stop(5)


def test_shutdown_hooks_run_and_pump_respects_its_budget() -> None:
    closed: list[str] = []

    async def handle(command: Any) -> None:
        return None

    runtime = Runtime(handle)
    runtime.start()

    async def hook() -> None:
        closed.append("closed")

    runtime.on_shutdown(hook)
    for _ in range(10_000):
        runtime.post(Event())
    started = time.monotonic()
    first = runtime.pump(budget=0.0005)
    assert 0 < len(first) < 10_001 and time.monotonic() - started < 0.05
    assert runtime.stop(5)
    assert closed == ["closed"]


def test_submit_before_start_is_an_error() -> None:
    async def handle(command: Any) -> None:
        return None

    runtime = Runtime(handle)
    try:
        runtime.submit(1)
    except RuntimeError as exc:
        assert "not running" in str(exc)
    else:
        raise AssertionError("submit before start must fail")
