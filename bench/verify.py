"""What checking results before paying costs the buyer, on the swarm bench scene.

A seller's work is simulated by one warm worker pinned to CPU 0 rendering every frame of
the swarm benchmark's scene as one unit (``--tiles 1``, as bench/swarm.py buys it); the
job's CPU time is the sum of those renders. The buyer then checks each result exactly as
its daemon does (:class:`bitwrk.daemon.spotcheck.SpotChecker`: capped decode, pass check,
secret patches rendered in its own sandboxed worker, compared), and its cost is the CPU
time of that worker (start-up and scene load included) plus the checking process's own.

Rows: per checked unit, and the share of the job's CPU time under the default policy (two
sellers new to the buyer: their first units are all checked, later ones at 20 %) and
with every unit checked. Target: <= 5 % under the default policy. (Sealing throughput is
bench/transfer.py's.)

``python bench/verify.py [--quick]``; the table on stdout. Needs the ``bpy`` module.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path

from bench.swarm import DEFAULT, QUICK, Settings, build_scene
from bench.table import Row, print_table
from bitwrk.cas import ChunkStore, JobManifest
from bitwrk.daemon.jobdirs import JobDirs
from bitwrk.daemon.spotcheck import SellerRecords, SpotChecker
from bitwrk.render.jobspec import JobSpec
from bitwrk.seller.__main__ import blender_version
from bitwrk.seller.pool import WorkerPool
from tools.processes import descendants

NAME = "verify"
TARGET_SHARE = 5.0  # % of the job's CPU time
DEFAULT_RATE = 0.2
SELLERS = 2


def log(message: str) -> None:
    print(f"[bench {NAME}] {message}", file=sys.stderr, flush=True)


def cpu_of(pid: int) -> float:
    """user + system CPU seconds of a live process and everything below it (a sandboxed
    worker's pid is bubblewrap's; Blender runs two levels down)."""
    total = 0.0
    for p in (pid, *descendants(pid)):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def frame_specs(s: Settings) -> list[JobSpec]:
    base = JobSpec(blend="heavy.blend", scene="Shot", view_layers=("ViewLayer",), frame=1,
                   width=s.width, height=s.height, x0=0, x1=s.width, y0=0, y1=s.height,
                   samples=s.samples, seed=0, max_bounces=6, blender=blender_version())
    return [dataclasses.replace(base, frame=f) for f in range(1, s.frames + 1)]


async def render_job(job: Path, specs: list[JobSpec], out: Path) -> tuple[list[bytes], float]:
    """The seller's side: every unit in one warm worker on CPU 0; (results, CPU seconds)."""
    results, cpu = [], 0.0
    async with WorkerPool(cpus={0}, slots=1) as pool:
        await pool.start()
        for i, spec in enumerate(specs):
            before = cpu_of(pool.pids()[0])
            done = await pool.render(job / spec.blend, spec, out / f"unit{i}.exr", root=job)
            cpu += cpu_of(done.pid) - before  # CPU, not wall: other load cannot stretch it
            results.append(done.out.read_bytes())
    return results, cpu


async def check_job(job: Path, specs: list[JobSpec], results: list[bytes], work: Path,
                    rate: float) -> tuple[float, int]:
    """The buyer's side: (CPU seconds of all checks, units content-checked)."""
    store = ChunkStore(work / "store")
    files = {p.relative_to(job).as_posix(): p for p in job.rglob("*") if p.is_file()}
    manifests = {f"u{i}": JobManifest.from_files(s.to_json(), files, store)
                 for i, s in enumerate(specs)}
    records = SellerRecords(work / "sellers.sqlite3")
    pool = WorkerPool(cpus={1}, slots=1)
    checker = SpotChecker(store, manifests, records, rate, pool, JobDirs(work / "dirs"),
                          work / "evidence")
    sellers = [secrets.token_hex(8) for _ in range(SELLERS)]
    own, worker_cpu, checked = time.process_time(), 0.0, 0
    try:
        for i, result in enumerate(results):
            seller = sellers[i % SELLERS]
            outcome = await checker.check(f"u{i}", seller, i, "00" * 32, result)
            checked += outcome.content_checked
            pids = pool.pids()
            worker_cpu = cpu_of(pids[0]) if pids else worker_cpu
    finally:
        await pool.close()
        records.close()
        store.close()
    return time.process_time() - own + worker_cpu, checked


def collect(quick: bool = False) -> list[Row]:
    s = QUICK if quick else DEFAULT
    with tempfile.TemporaryDirectory(prefix="bitwrk-bench-verify-") as tmp:
        work = Path(tmp)
        log(f"building the swarm scene: {s.width}x{s.height} px, {s.samples} spp, "
            f"{s.frames} frames")
        blend = build_scene(work, s)
        job = blend.parent
        specs = frame_specs(s)
        log("rendering the units (the sellers' work) on CPU 0")
        results, job_cpu = asyncio.run(render_job(job, specs, work))
        log(f"job: {job_cpu:.1f} s CPU; checking at the default rate, then every unit")
        policy_cpu, policy_n = asyncio.run(check_job(job, specs, results, work / "a",
                                                     DEFAULT_RATE))
        all_cpu, all_n = asyncio.run(check_job(job, specs, results, work / "b", 1.0))
    share = 100 * policy_cpu / job_cpu
    return [
        Row(NAME, f"job CPU time ({len(specs)} units of {s.width}x{s.height} px)", job_cpu,
            "s"),
        Row(NAME, "check CPU per content-checked unit (worker start included)",
            1000 * all_cpu / max(1, all_n), "ms"),
        Row(NAME, f"check cost, default policy ({policy_n} of {len(specs)} units checked)",
            share, "% of job CPU", f"<= {TARGET_SHARE:g}", share <= TARGET_SHARE),
        Row(NAME, "check cost, every unit checked", 100 * all_cpu / job_cpu, "% of job CPU"),
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick", action="store_true", help="the smaller scene")
    args = p.parse_args(argv)
    print_table(collect(args.quick))
    return 0


if __name__ == "__main__":
    sys.exit(main())
