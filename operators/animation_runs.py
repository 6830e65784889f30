"""Animations bought from the GUI: started off the UI thread, then polled by the pump.

Not a modal operator on purpose: Blender postpones autosave for as long as any modal
operator runs, and an animation can take hours. The operator takes the snapshot (main
thread), starts packing, hashing and the job in a thread (:class:`Start`) and returns;
the timer pump polls each :class:`Run` until its job is over. Opening another file,
quitting, disabling the extension or an error cancels it (no new bids, unstarted units
refunded; frames complete by then are still written, they are paid for).
"""

from __future__ import annotations

import logging
import threading

from ..blender import animation as animation_job
from ..blender import bridge

log = logging.getLogger("bitwrk.extension")


class Start:
    """A job's start (farm-ready check, packing, hashing, submit) in a daemon thread."""

    def __init__(self, job: animation_job.AnimationJob) -> None:
        self.job = job
        self.done = threading.Event()
        self.error = ""
        self.thread = threading.Thread(target=self._run, name="bitwrk-animation-start",
                                       daemon=True)

    def _run(self) -> None:
        try:
            self.job.start()
        except Exception as exc:  # reported from the pump on Blender's thread
            self.error = str(exc)
        finally:
            self.done.set()


class Run:
    """One animation started from the GUI: its packing thread, then the job the pump
    polls until it is over."""

    def __init__(self, job: animation_job.AnimationJob) -> None:
        self.job = job
        self.start = Start(job)
        self.cancel_requested = False

    def poll(self) -> bool:
        """Blender's thread: True once the job is over (and closed)."""
        status = bridge.get().status
        if not self.start.done.is_set():
            status.progress.stage = "packing"
            return False
        if self.start.error:
            self.job.close()
            status.error = status.notice = f"animation not started: {self.start.error}"
            return True
        if self.cancel_requested:
            self.job.cancel()
        if not self.job.poll(0.005):
            return False
        self.job.close()
        status.notice = f"animation: {self.job.summary()}"
        if self.job.error or (self.job.failed and not self.job.cancelled):
            status.error = status.notice  # a cancel is the user's choice, not an error
        return True

    def cancel(self, wait: float = 0.0) -> None:
        self.cancel_requested = True
        if self.start.done.is_set():
            self.job.cancel(wait)


RUNS: list[Run] = []


def start(job: animation_job.AnimationJob) -> Run:
    run = Run(job)
    RUNS.append(run)
    run.start.thread.start()
    return run


def poll_all() -> None:
    """From the pump: poll every run; an unexpected error cancels that run's job."""
    for run in list(RUNS):
        try:
            over = run.poll()
        except Exception as exc:
            log.exception("animation run")
            run.cancel()
            run.job.close()
            bridge.get().status.error = f"animation stopped: {exc}"
            over = True
        if over:
            RUNS.remove(run)


def cancel_all(wait: float = 0.0) -> None:
    for run in RUNS:
        run.cancel(wait)
