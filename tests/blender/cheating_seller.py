"""A headless seller that cheats (test only): ``python -m tests.blender.cheating_seller MODE
--exchange URL ...`` runs the real ``python -m bitwrk.seller`` with its executor swapped for
one that delivers a lazy or hostile result (:mod:`tests.blender.cheats`) for every unit.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import bitwrk.seller.__main__ as seller_main
from bitwrk.render.jobspec import JobSpec
from bitwrk.seller.executor import RenderExecutor
from tests.blender.cheats import MODES, lazy_result

if TYPE_CHECKING:
    from bitwrk.cas import JobManifest


def cheating_executor(mode: str) -> type[RenderExecutor]:
    class CheatingExecutor(RenderExecutor):
        async def execute(self, manifest: JobManifest, workdir: Path, slot: int,
                      owner: str | None = None) -> bytes:
            spec = JobSpec.from_json(manifest.spec)
            return await lazy_result(mode, self.pool, workdir / spec.blend, spec, workdir)

    return CheatingExecutor


def main(argv: list[str]) -> int:
    mode, rest = argv[0], argv[1:]
    if mode not in MODES:
        sys.exit(f"mode must be one of {MODES}")
    seller_main.RenderExecutor = cheating_executor(mode)  # type: ignore[attr-defined]
    print(f"cheating seller: {mode}", flush=True)
    return seller_main.main(rest)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
