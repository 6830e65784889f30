"""What keeps Blender's UI thread free, below Blender: background tasks hand their outcome
to the pump, online access is honoured in the GUI, quit returns within 2 s while the
daemon still stops behind it, sellers and the LAN hub bind a reachable address."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tests.e2e.conftest import ServerProcess
from tests.extension.test_trusted_and_lan import extension


def test_a_task_runs_off_the_calling_thread_and_reports_through_the_pump() -> None:
    bridge = extension("bridge").Bridge()
    release = threading.Event()
    seen: list[str] = []

    def work() -> tuple[str, int]:
        seen.append(threading.current_thread().name)
        release.wait(30)
        return "connected", 7

    applied: list[Any] = []
    assert bridge.background("connect", work, lambda outcome: applied.append(
        (outcome.value, threading.current_thread() is threading.main_thread())))
    assert bridge.status.busy == ("connect",)
    assert not bridge.background("connect", work)  # one at a time per name
    release.set()
    assert bridge.tasks.wait_idle(30)
    assert applied == [] and seen == ["bitwrk-connect"]  # nothing applied before the pump
    bridge.pump()
    assert applied == [(7, True)] and bridge.status.notice == "connected"
    assert bridge.status.busy == ()


def test_a_failing_task_shows_its_error() -> None:
    bridge = extension("bridge").Bridge()

    def work() -> tuple[str, None]:
        raise RuntimeError("exchange unreachable")

    bridge.background("wallet", work)
    assert bridge.tasks.wait_idle(30)
    bridge.pump()
    assert bridge.status.error == "wallet: exchange unreachable"


def test_online_access_is_honoured_in_the_gui_only() -> None:
    snapshot = extension("snapshot")

    def app(background: bool, online: bool) -> Any:
        return SimpleNamespace(app=SimpleNamespace(background=background,
                                                   online_access=online))

    assert snapshot.online_refusal(app(False, False)) == snapshot.OFFLINE
    assert "Allow Online Access" in snapshot.OFFLINE
    assert snapshot.online_refusal(app(False, True)) == ""
    assert snapshot.online_refusal(app(True, False)) == ""  # blender -b / bpy: the script asks


def test_sellers_and_the_lan_hub_default_to_a_reachable_address(
        monkeypatch: pytest.MonkeyPatch) -> None:
    bridge = extension("bridge")
    assert bridge.reachable("") == bridge.lan_ip()
    assert bridge.reachable(" 10.1.2.3 ") == "10.1.2.3"
    assert bridge.reachable("0.0.0.0") == "0.0.0.0"


def test_shutdown_returns_within_two_seconds_while_the_daemon_stops_behind(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    module = extension("bridge")
    exchange = ServerProcess(tmp_path / "exchange", timeout_scale=0.5).start()
    try:
        bridge = module.get()
        daemon = bridge.connect(exchange.url)
        stopping = threading.Event()
        real_stop = daemon.stop

        def slow_stop(timeout: float = 30.0) -> bool:  # a daemon with trades to wind down
            stopping.set()
            time.sleep(4.0)
            return bool(real_stop(timeout))

        monkeypatch.setattr(daemon, "stop", slow_stop)
        started = time.monotonic()
        assert module.shutdown(wait=module.QUIT_WAIT) is False  # not finished yet...
        assert time.monotonic() - started < 2.0 and stopping.is_set()
        deadline = time.monotonic() + 30
        while daemon.runtime.running and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not daemon.runtime.running and not daemon.lock.held  # ...but it does finish
    finally:
        exchange.stop()
        exchange.close()
