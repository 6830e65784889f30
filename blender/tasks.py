"""Blocking daemon requests off Blender's UI thread (no bpy in here).

A GUI operator's ``invoke()`` hands its work (connect, wallet refresh, withdraw, sell, an
animation's packing and hashing) to :meth:`Tasks.start` and returns at once; the work runs
in a daemon thread and its outcome comes back as an :class:`Outcome` that the event pump
drains on Blender's thread (``Bridge.pump``), where panels read it. The worker never
touches bpy; only plain data goes in and out. ``execute()`` stays blocking, for scripts
and headless use, where no timer would ever drain an outcome.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("bitwrk.extension")


@dataclass(frozen=True)
class Outcome:
    """How a background task ended, for the pump to apply on Blender's thread."""

    name: str  # what ran, in words ("connect", "wallet", ...)
    ok: bool
    message: str  # for the panel: the result, or why it failed
    value: Any = None
    then: Callable[[Outcome], None] | None = None  # run on Blender's thread when drained


class Tasks:
    """Owns the background threads of GUI requests, at most one per name, and the queue
    of their outcomes."""

    def __init__(self) -> None:
        self._running: dict[str, threading.Thread] = {}
        self._done: queue.SimpleQueue[Outcome] = queue.SimpleQueue()
        self._lock = threading.Lock()

    def busy(self) -> tuple[str, ...]:
        with self._lock:
            return tuple(name for name, t in self._running.items() if t.is_alive())

    def start(self, name: str, work: Callable[[], tuple[str, Any]],
              then: Callable[[Outcome], None] | None = None) -> bool:
        """Run ``work`` (returns (message, value)) in a daemon thread; False when a task of
        that name still runs (nothing started)."""
        with self._lock:
            running = self._running.get(name)
            if running is not None and running.is_alive():
                return False
            thread = threading.Thread(target=self._run, args=(name, work, then),
                                      name=f"bitwrk-{name}", daemon=True)
            self._running[name] = thread
        thread.start()
        return True

    def _run(self, name: str, work: Callable[[], tuple[str, Any]],
             then: Callable[[Outcome], None] | None) -> None:
        try:
            message, value = work()
            outcome = Outcome(name, True, message, value, then)
        except Exception as exc:  # the panel shows it; nothing is swallowed silently
            log.warning("%s failed: %s", name, exc)
            outcome = Outcome(name, False, f"{name}: {exc}", None, then)
        self._done.put(outcome)

    def drain(self) -> list[Outcome]:
        """Outcomes that arrived since the last call (Blender's thread)."""
        found: list[Outcome] = []
        while True:
            try:
                found.append(self._done.get_nowait())
            except queue.Empty:
                return found

    def wait_idle(self, timeout: float) -> bool:
        """Join running tasks for at most ``timeout`` seconds in all (tests, shutdown)."""
        import time

        deadline = time.monotonic() + timeout
        with self._lock:
            threads = list(self._running.values())
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in threads)
