"""The daemon's runtime: one asyncio loop in one daemon thread.

The thread contract (after BlenderKit's client thread and Flamenco's add-on): the caller's
thread — Blender's main thread, or a headless script's — never blocks on the loop. It hands
in commands with :meth:`Runtime.submit` (``call_soon_threadsafe``) and drains typed events
with :meth:`Runtime.pump` within a time budget. The loop never touches bpy. A crash inside
the loop becomes a :class:`Crashed` event, never a silent hang.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("bitwrk.daemon")


@dataclass(frozen=True)
class Event:
    """Base of every event the daemon posts to the caller's thread."""


@dataclass(frozen=True)
class Started(Event):
    pass


@dataclass(frozen=True)
class Stopped(Event):
    pass


@dataclass(frozen=True)
class Crashed(Event):
    where: str
    error: str
    trace: str


CommandHandler = Callable[[Any], Awaitable[None]]


class Runtime:
    """Owns the loop thread. Subclasses (or ``handler``) act on commands inside the loop."""

    def __init__(self, handler: CommandHandler, name: str = "bitwrk-daemon") -> None:
        self._handler = handler
        self._name = name
        self._events: queue.SimpleQueue[Event] = queue.SimpleQueue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stopping: asyncio.Event | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._shutdown_hooks: list[Callable[[], Awaitable[None]]] = []

    # -- caller's thread ------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self.running:
            return
        self._ready.clear()
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()
        self._ready.wait(10)

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop the loop (running shutdown hooks) and join; safe to call twice. True if the
        thread ended within ``timeout``."""
        thread, loop, stopping = self._thread, self._loop, self._stopping
        if thread is None or loop is None or stopping is None:
            return True
        if thread.is_alive():
            with contextlib.suppress(RuntimeError):  # the loop already closed
                loop.call_soon_threadsafe(stopping.set)
            thread.join(timeout)
        if thread.is_alive():
            return False
        self._thread = None
        return True

    def submit(self, command: Any) -> None:
        """Hand a command to the loop; never blocks. Errors come back as events."""
        if self._loop is None or not self.running:
            raise RuntimeError("the daemon is not running")
        self._loop.call_soon_threadsafe(self.spawn, self._handler(command), repr(command))

    def call(self, coro: Awaitable[Any], timeout: float | None = None) -> Any:
        """Run ``coro`` on the loop and wait for it: for scripts and tests, never Blender's UI."""
        if self._loop is None:
            raise RuntimeError("the daemon is not running")
        future = asyncio.run_coroutine_threadsafe(_as_coroutine(coro), self._loop)
        return future.result(timeout)

    def pump(self, budget: float = 0.005, limit: int = 1000) -> list[Event]:
        """Drain posted events for at most ``budget`` seconds."""
        out: list[Event] = []
        deadline = time.monotonic() + budget
        while len(out) < limit:
            try:
                out.append(self._events.get_nowait())
            except queue.Empty:
                break
            if time.monotonic() >= deadline:
                break
        return out

    def wait_event(self, timeout: float) -> Event | None:
        """Block for the next event (headless main loops that have nothing else to do)."""
        try:
            return self._events.get(timeout=timeout)
        except queue.Empty:
            return None

    # -- loop thread ----------------------------------------------------------------------

    def post(self, event: Event) -> None:
        self._events.put(event)

    def on_shutdown(self, hook: Callable[[], Awaitable[None]]) -> None:
        self._shutdown_hooks.append(hook)

    def spawn(self, coro: Awaitable[None], what: str) -> asyncio.Task[None]:
        """Run ``coro`` as a task whose failure becomes a :class:`Crashed` event."""
        task = asyncio.ensure_future(_guard(coro, what, self.post))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # the loop itself died: say so, never hang silently
            self.post(Crashed("loop", repr(exc), traceback.format_exc()))
        finally:
            self.post(Stopped())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        self.post(Started())
        self._ready.set()
        await self._stopping.wait()
        # Work in flight stops first (its state is journalled), then the hooks close what
        # it was using (sessions, servers, databases).
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for hook in reversed(self._shutdown_hooks):
            await _guard(hook(), "shutdown", self.post)


async def _as_coroutine(aw: Awaitable[Any]) -> Any:
    return await aw


async def _guard(coro: Awaitable[None], what: str, post: Callable[[Event], None]) -> None:
    try:
        await coro
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log.exception("daemon task %s failed", what)
        post(Crashed(what, f"{type(exc).__name__}: {exc}", traceback.format_exc()))
