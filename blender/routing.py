"""Daemon events to where they belong, on Blender's thread (no bpy in here).

An event of a job that someone listens to goes to that job's queue (the render engine's
or an animation's loop reads it); the job the render panel follows also updates its
:class:`~.status.Progress`; a seller's paid unit adds to the session's earnings and a
crash inside the daemon becomes the panel's error.
"""

from __future__ import annotations

import queue

from ..bitwrk.daemon.events import Crashed, Event, JobDone, SellerUnit, UnitDone, UnitFailed
from .status import Progress, Status


class JobRouter:
    """Owns the queue of every job someone listens to."""

    def __init__(self) -> None:
        self._jobs: dict[str, queue.SimpleQueue[Event]] = {}

    def listen(self, job_id: str) -> queue.SimpleQueue[Event]:
        q: queue.SimpleQueue[Event] = queue.SimpleQueue()
        self._jobs[job_id] = q
        return q

    def forget(self, job_id: str) -> None:
        self._jobs.pop(job_id, None)

    def route(self, event: Event, status: Status) -> None:
        job_id = getattr(event, "job_id", None)
        if job_id is not None and job_id in self._jobs:
            self._jobs[job_id].put(event)
        if job_id is not None and job_id == status.progress.job_id:
            count(status.progress, event)
        if isinstance(event, SellerUnit) and event.stage == "paid":
            status.earned += event.price
        if isinstance(event, Crashed):
            status.error = f"{event.where}: {event.error}"


def count(p: Progress, event: Event) -> None:
    """One event of the followed job into its counts."""
    if isinstance(event, UnitDone):
        p.done += 1
        p.spent += event.price + event.fee
    elif isinstance(event, UnitFailed) and event.final:
        p.failed += 1
    elif isinstance(event, JobDone):
        p.finished, p.spent = True, event.spent
    p.in_flight = max(0, p.total - p.done - p.failed) if not p.finished else 0
