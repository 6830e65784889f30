"""The daemon's ``Executor`` for render jobs: a job manifest in, the tile's EXR bytes out.

``bitwrk.daemon.seller`` assembles a job's files in ``workdir`` and calls
``await executor.execute(manifest, workdir, slot)``; this renders ``manifest.spec`` (a
:class:`~bitwrk.render.jobspec.JobSpec`) with a :class:`WorkerPool`, the job directory
being the only place the .blend may read from.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from ..articles import COST_CLASSES
from ..render.errors import JobSpecError
from ..render.jobspec import JobSpec
from .pool import RenderOutcome, WorkerPool

if TYPE_CHECKING:
    from ..cas import JobManifest

# The most a job's files may expand to, by the cost class its ray budget falls in: a scene
# with textures fits easily; a disk bomb (one chunk listed thousands of times) does not.
FILES_BY_CLASS = {"512M": 2 * 1024**3, "2G": 4 * 1024**3, "8G": 8 * 1024**3,
                  "32G": 16 * 1024**3}


class RenderExecutor:
    """Render each job's spec in ``pool``; the result is a float32 multilayer EXR."""

    def __init__(self, pool: WorkerPool, max_job_bytes: int | None = None) -> None:
        self.pool = pool
        self.max_job_bytes = max_job_bytes  # the seller's own cap, below the class limits
        self.last: RenderOutcome | None = None  # for status pages and progress lines

    def job_bytes_limit(self, manifest: JobManifest) -> int | None:
        """How large the job's files may be once assembled (the daemon checks it first)."""
        budget = JobSpec.from_json(manifest.spec).ray_budget()
        fitting = [FILES_BY_CLASS[c] for c, rays in COST_CLASSES.items() if budget <= rays]
        limits = [x for x in (min(fitting, default=None), self.max_job_bytes) if x is not None]
        return min(limits, default=None)

    async def execute(self, manifest: JobManifest, workdir: Path, slot: int,
                      owner: str | None = None) -> bytes:
        """Render the manifest's spec from the files in ``workdir``; returns the EXR file.

        ``slot`` is the daemon's slot number; the pool picks its own (same count), so a
        job lands on a worker that already holds its .blend when there is one, or another
        file of the same ``owner`` (the buyer).
        """
        spec = JobSpec.from_json(manifest.spec)
        if spec.blend not in {entry.name for entry in manifest.files}:
            raise JobSpecError(f"the job's files do not include {spec.blend!r}")
        out_dir = Path(tempfile.mkdtemp(prefix="bitwrk-result-"))
        try:
            outcome = await self.pool.render(workdir / spec.blend, spec, out_dir / "tile.exr",
                                             root=workdir, owner=owner)
            self.last = outcome
            return outcome.out.read_bytes()
        finally:
            shutil.rmtree(out_dir, ignore_errors=True)
