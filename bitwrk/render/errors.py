"""Errors of the render side; each carries the data a caller needs to react."""

from __future__ import annotations

from ..errors import BitwrkError, InvalidRequest


class JobSpecError(InvalidRequest):
    """A job spec that is malformed or inconsistent (bad rect, unknown engine, ...)."""

    code = "bad_job_spec"


class CostClassExceeded(BitwrkError):
    """The job's ray budget is above the largest class (or above what a worker accepts)."""

    code = "cost_class_exceeded"


class RenderError(BitwrkError):
    """A render did not produce its output: bad file, Blender error, crash, limits."""

    code = "render_failed"


class RenderTimeout(RenderError):
    """The render ran past its wall-time limit; the worker was killed."""

    code = "render_timeout"


class WorkerCrashed(RenderError):
    """The worker process died while rendering (signal, out of memory, ...)."""

    code = "worker_crashed"


class ComposeError(RenderError):
    """Stitching or denoising the tiles of a frame failed."""

    code = "compose_failed"


class ResultRejected(RenderError):
    """A seller's result fails the buyer's checks before payment: malformed, outside the
    caps (size, channels, passes), or unlike the buyer's own render of its patches."""

    code = "result_rejected"


class SpotCheckFailed(ResultRejected):
    """The buyer's own render of secret patches differs from the seller's pixels; the
    ``evidence`` (hashes, patch coordinates, both pixel blocks) goes with the dispute."""

    code = "spot_check_failed"
