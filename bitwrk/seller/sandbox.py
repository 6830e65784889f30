"""The OS sandbox around every render worker (never imports bpy).

A buyer's .blend is hostile input. The worker already opens it with Python off and checks
the paths it names, but a scene can compute paths while it is evaluated (geometry-node
importers fed by string nodes), so the last line of defence is the operating system: the
worker process must not be *able* to read, write or reach anything of the seller.

On Linux every worker runs under bubblewrap (``bwrap``, Debian package ``bubblewrap``):

- read-only: the system libraries (``/usr``, ``/lib*``, ``/bin``), the Python or Blender
  install that provides ``bpy``, and the ``bitwrk`` package (at :data:`CODE_MOUNT`);
- read-only at :data:`JOB_MOUNT`: a per-worker folder the pool fills with hard links to the
  current job's files (so a warm worker can take the next job without a new sandbox);
- writable at :data:`OUT_MOUNT`: a per-worker output folder; ``/tmp``: a size-capped tmpfs;
- a minimal ``/dev`` (for a GPU worker only, plus its driver's device nodes:
  ``/dev/nvidia*`` for CUDA/OptiX, ``/dev/kfd`` and ``/dev/dri/renderD*`` for HIP,
  ``/dev/dri/renderD*`` for oneAPI; :func:`bitwrk.seller.devices.device_nodes`), a fresh
  ``/proc``, new user/PID/network/IPC/UTS/cgroup namespaces (no network at all, hostname
  ``bitwrk``), no capabilities, no further user namespaces, a new session (no terminal
  injection), killed when the seller dies.

No home, no ``/etc``, no seller data or cache dirs, no other users' files. macOS and Windows
get no sandbox from this module: there the seller refuses to start unless the user opts in
to unsandboxed selling explicitly (see the README's seller section).
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import BitwrkError

JOB_MOUNT = "/job"
OUT_MOUNT = "/out"
CODE_MOUNT = "/opt/bitwrk"
HOSTNAME = "bitwrk"
INNER_ID = 65534  # "nobody": the worker is not root even inside its namespace
SCRATCH_BYTES = 1 << 30  # the tmpfs at /tmp: Blender's temp files, never the seller's disk
SYSTEM_DIRS = ("/usr", "/lib", "/lib64", "/lib32", "/libx32", "/bin", "/sbin")
SYSTEM_FILES = ("/etc/ld.so.cache",)  # the loader's cache: faster start, nothing private
INNER_PATH = "/usr/local/bin:/usr/bin:/bin"
# Inside the sandbox: everything a worker writes lives on the tmpfs.
INNER_DIRS = {"HOME": "/tmp/home", "TMPDIR": "/tmp", "BLENDER_USER_RESOURCES": "/tmp/blender",
              "XDG_CACHE_HOME": "/tmp/cache", "XDG_CONFIG_HOME": "/tmp/config",
              "XDG_DATA_HOME": "/tmp/data"}
# Per cost class: a worker's data-segment limit (RLIMIT_DATA: heap and private writable
# mappings; bpy itself needs ~0.3 GiB of it, while its address space is ~1.4 GiB of mostly
# shared libraries, so an address-space cap would measure the install, not the scene).
MEMORY_BY_CLASS = {"512M": 1 << 30, "2G": 2 << 30, "8G": 4 << 30, "32G": 8 << 30}
# A GPU worker's driver adds private mappings of its own (staging buffers, its heap) on top
# of the scene's; a guess (no GPU here to measure), added to the class's limit for GPUs.
GPU_DRIVER_DATA = 4 << 30
OUTPUT_BYTES = 1 << 30  # RLIMIT_FSIZE: no single file a worker writes may be larger


class SandboxUnavailable(BitwrkError):
    """No sound sandbox on this machine; selling needs an explicit opt-out."""

    code = "sandbox_unavailable"


@dataclass(frozen=True)
class Sandbox:
    """How workers are confined: ``kind`` is ``"bwrap"`` or ``"none"`` (opted out)."""

    kind: str
    binary: str = ""
    scratch_bytes: int = SCRATCH_BYTES

    @property
    def active(self) -> bool:
        return self.kind != "none"

    def wrap(self, inner: list[str], home: Path, passed_env: dict[str, str],
             ro_paths: list[str], code: tuple[str, str] | None = None,
             device_nodes: list[str] | None = None) -> list[str]:
        """``inner`` (a worker command line) confined with ``home/job`` and ``home/out``;
        ``ro_paths`` and ``code`` (source, destination) are shown read-only;
        ``device_nodes`` (a GPU's ``/dev`` entries) are passed through, nothing else."""
        if not self.active:
            return inner
        (home / "job").mkdir(exist_ok=True)
        (home / "out").mkdir(exist_ok=True)
        argv = [self.binary, "--unshare-all", "--unshare-user", "--disable-userns",
                "--uid", str(INNER_ID), "--gid", str(INNER_ID), "--cap-drop", "ALL",
                "--die-with-parent", "--new-session",
                "--hostname", HOSTNAME, "--clearenv", "--proc", "/proc", "--dev", "/dev"]
        for node in device_nodes or ():
            if not node.startswith("/dev/") or ".." in node:
                raise ValueError(f"not a device node: {node}")
            argv += ["--dev-bind-try", node, node]
        # /tmp first: an install that lives under /tmp is then bound on top of it.
        argv += ["--size", str(self.scratch_bytes), "--tmpfs", "/tmp"]
        for src, dest in readonly_binds(ro_paths) + ([code] if code else []):
            argv += ["--ro-bind", src, dest]
        argv += ["--ro-bind", str(home / "job"), JOB_MOUNT, "--bind", str(home / "out"),
                 OUT_MOUNT]
        # PATH too is the sandbox's own: the seller's may name their home (~/.local/bin).
        for name, path in {**passed_env, "PATH": INNER_PATH, **INNER_DIRS}.items():
            if name in INNER_DIRS:
                argv += ["--dir", path]
            argv += ["--setenv", name, path]
        return [*argv, "--chdir", "/tmp", *inner]


def readonly_binds(extra: list[str]) -> list[tuple[str, str]]:
    """(source, destination) pairs: system dirs, then ``extra`` not already covered."""
    binds = [(p, p) for p in SYSTEM_DIRS + SYSTEM_FILES if os.path.exists(p)]
    covered = [p for p, _ in binds if os.path.isdir(p) and not os.path.islink(p)]
    for path in sorted(set(extra), key=len):
        if any(path == c or path.startswith(c.rstrip("/") + "/") for c in covered):
            continue
        binds.append((os.path.realpath(path), path))
        covered.append(path)
    return binds


def runtime_paths(python: str, blender: str | None) -> list[str]:
    """The install a worker runs from: Blender's folder, or Python's prefixes (venv too)."""
    if blender:
        return [os.path.dirname(os.path.realpath(blender))]
    paths = {sys.base_prefix, sys.prefix, os.path.dirname(os.path.realpath(python))}
    return sorted(paths)


def code_bind(package_root: Path) -> tuple[str, str]:
    """Only the ``bitwrk`` package itself, never the folder around it."""
    return str(package_root / "bitwrk"), f"{CODE_MOUNT}/bitwrk"


@functools.lru_cache(maxsize=4)
def _probe(binary: str) -> str:
    """'' when bwrap can build our sandbox here, else why not (user namespaces off ...)."""
    with tempfile.TemporaryDirectory(prefix="bitwrk-probe-") as home:
        argv = Sandbox("bwrap", binary).wrap(["/bin/true"], Path(home), {}, [])
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return str(exc)
    return "" if done.returncode == 0 else (done.stderr.strip() or f"exit {done.returncode}")


def choose(unsandboxed: bool = False) -> Sandbox:
    """The sandbox for this platform; :class:`SandboxUnavailable` if there is none.

    ``unsandboxed=True`` is the user's explicit opt-out: workers then run as the seller's
    own user with the in-process checks only.
    """
    if unsandboxed:
        return Sandbox("none")
    if not sys.platform.startswith("linux"):
        raise SandboxUnavailable(
            f"render workers cannot be sandboxed on {sys.platform}: a buyer's scene could "
            "read your files; sell only with the explicit unsandboxed opt-out",
            platform=sys.platform)
    binary = shutil.which("bwrap")
    if binary is None:
        raise SandboxUnavailable("bubblewrap is not installed (Debian/Ubuntu: apt install "
                                 "bubblewrap); without it a buyer's scene could read your "
                                 "files", platform=sys.platform)
    why = _probe(binary)
    if why:
        raise SandboxUnavailable(f"bubblewrap cannot create a sandbox here: {why}",
                                 platform=sys.platform)
    return Sandbox("bwrap", binary)


def memory_for(cost_class: str | None) -> int | None:
    """The default per-worker memory (data) limit of a cost class."""
    return MEMORY_BY_CLASS.get(cost_class) if cost_class else None


def stage_job(root: Path, stage: Path) -> str:
    """Show ``root``'s files to a sandboxed worker: hard links under ``stage/<key>``.

    Returns the folder's name; the worker sees it at ``JOB_MOUNT/<key>``. Another job
    staged here before is removed first (a worker sees one job at a time). Symbolic links
    are skipped, never followed: they could point anywhere. Links need the job folder on
    the same file system; elsewhere files are copied (mtime kept, so a warm worker still
    recognises its .blend).
    """
    key = hashlib.sha256(str(root).encode()).hexdigest()[:16]
    target = stage / key
    if target.is_dir():
        return key
    for old in stage.iterdir():
        shutil.rmtree(old, ignore_errors=True)
    building = stage / f".{key}.part"
    shutil.rmtree(building, ignore_errors=True)
    for dirpath, _dirs, filenames in os.walk(root):
        rel = Path(dirpath).relative_to(root)
        (building / rel).mkdir(parents=True, exist_ok=True)
        for name in filenames:
            src = Path(dirpath) / name
            if src.is_symlink() or not src.is_file():
                continue
            try:
                os.link(src, building / rel / name)
            except OSError:
                shutil.copy2(src, building / rel / name)
    os.rename(building, target)
    return key
