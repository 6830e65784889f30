"""What a process in a worker's sandbox can see and reach: real bwrap, real sockets.

The probe runs in exactly the confinement ``WorkerPool`` gives its workers
(``pool.command``) and reports as JSON what it found.
"""

from __future__ import annotations

import json
import os
import pwd
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import pytest

from bitwrk.seller import sandbox as sb
from bitwrk.seller.pool import WorkerPool

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="the bubblewrap sandbox is Linux's")
PROBE = r"""
import json, os, socket, sys
def attempt(f):
    try:
        return f()
    except OSError as exc:
        return f"refused: {type(exc).__name__}"
    except KeyError:
        return "refused: no such user"
def connect(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=3)
    s.sendall(b"leak")
    return "connected"
secret, port, home = sys.argv[1], int(sys.argv[2]), sys.argv[3]
print(json.dumps({
    "secret": attempt(lambda: open(secret).read()),
    "home": attempt(lambda: sorted(os.listdir(home))),
    "root": sorted(os.listdir("/")),
    "etc": os.path.exists("/etc/passwd") or os.path.exists("/etc/hostname"),
    "net": attempt(lambda: connect(port)),
    "ifaces": sorted(n for _, n in socket.if_nameindex()),
    "host": socket.gethostname(),
    "uid": os.getuid(),
    "uid_name": attempt(lambda: __import__("pwd").getpwuid(os.getuid()).pw_name),
    "env": dict(os.environ),
    "cwd": os.getcwd(),
    "pids": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
    "write_job": attempt(lambda: open("/job/x", "w") and "wrote"),
    "write_usr": attempt(lambda: open(sys.prefix + "/x", "w") and "wrote"),
}))
"""


class Listener:
    """A loopback server that records whether anyone got through."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.got: list[bytes] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.got.append(conn.recv(16))
            conn.close()


def probe(pool: WorkerPool, secret: Path, port: int, home: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bitwrk-worker-") as worker_home:
        argv, env = pool.command([sys.executable, "-I", "-c", PROBE, str(secret), str(port),
                                  home], Path(worker_home))
        done = subprocess.run(argv, env=env, cwd=worker_home, capture_output=True,
                              text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_a_worker_sees_nothing_of_the_seller(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "identity.wif"  # a fake seller key outside any job
    secret.write_text("L1SECRETKEYWIF")
    monkeypatch.setenv("BITWRK_SELLER_KEY", "L1secret")
    home = pwd.getpwuid(os.getuid()).pw_dir
    monkeypatch.setenv("PATH", f"{home}/.local/bin:{os.environ['PATH']}")  # names the home
    listener = Listener()
    pool = WorkerPool({0}, 1, cost_class="512M")
    assert pool.sandbox.active  # the default
    seen = probe(pool, secret, listener.port, home)
    # Positive control: the same probe without the sandbox reaches all of it.
    exposed = probe(WorkerPool({0}, 1, unsandboxed=True), secret, listener.port, home)
    assert exposed["secret"] == "L1SECRETKEYWIF" and exposed["net"] == "connected"

    assert seen["secret"].startswith("refused")
    assert seen["net"].startswith("refused") and seen["ifaces"] == ["lo"]
    assert listener.got == [b"leak"]  # only the unsandboxed probe got through
    # The seller's home: absent, or only the folders leading to the Python install.
    needed = {Path(p).relative_to(home).parts[0] for p in sb.runtime_paths(sys.executable, None)
              if Path(p).is_relative_to(home)}
    listing = seen["home"] if isinstance(seen["home"], list) else []
    assert set(listing) <= needed, listing
    assert not seen["etc"] and seen["host"] == sb.HOSTNAME
    assert seen["uid_name"].startswith("refused")  # no user database inside
    assert seen["uid"] == sb.INNER_ID
    assert "BITWRK_SELLER_KEY" not in seen["env"] and seen["env"]["HOME"] == "/tmp/home"
    assert not any(str(tmp_path) in v or home in v for v in seen["env"].values()), seen["env"]
    assert seen["env"]["PATH"] == sb.INNER_PATH
    assert seen["cwd"] == "/tmp" and len(seen["pids"]) <= 3  # own PID namespace
    assert seen["write_job"].startswith("refused") and seen["write_usr"].startswith("refused")
    assert "tmp" in seen["root"] and "home" not in seen["root"]


def test_no_sandbox_means_refusing_unless_opted_in(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sb.sys, "platform", "darwin")
    with pytest.raises(sb.SandboxUnavailable, match="unsandboxed"):
        WorkerPool({0}, 1)
    assert not WorkerPool({0}, 1, unsandboxed=True).sandbox.active
    monkeypatch.setattr(sb.sys, "platform", "linux")
    monkeypatch.setattr(sb.shutil, "which", lambda name: None)
    with pytest.raises(sb.SandboxUnavailable, match="apt install bubblewrap"):
        sb.choose()


def test_staging_links_the_job_and_skips_symlinks(tmp_path: Path) -> None:
    job = tmp_path / "job"
    (job / "textures").mkdir(parents=True)
    (job / "scene.blend").write_bytes(b"blend")
    (job / "textures" / "a.png").write_bytes(b"png")
    outside = tmp_path / "identity.wif"
    outside.write_text("secret")
    (job / "link.wif").symlink_to(outside)
    stage = tmp_path / "stage"
    stage.mkdir()
    key = sb.stage_job(job, stage)
    staged = stage / key
    assert sorted(p.relative_to(staged).as_posix() for p in staged.rglob("*")) == [
        "scene.blend", "textures", "textures/a.png"]
    assert (staged / "scene.blend").stat().st_ino == (job / "scene.blend").stat().st_ino
    other = tmp_path / "other"
    other.mkdir()
    (other / "scene.blend").write_bytes(b"other")
    assert sb.stage_job(other, stage) != key
    assert [p.name for p in stage.iterdir()] == [sb.stage_job(other, stage)]  # one job


SECCOMP_PROBE = r"""
import ctypes, json, os, platform, sys
sys.path.insert(0, sys.argv[1])
from bitwrk.seller import seccomp
libc = ctypes.CDLL(None, use_errno=True)
def call(name, *args):
    result = getattr(libc, name)(*args)
    return result, ctypes.get_errno()
installed = seccomp.install()
print(json.dumps({"installed": installed,
                  "unshare": call("unshare", 0x10000000), "ptrace": call("ptrace", 0, 0, 0, 0),
                  "mount": call("mount", b"none", b"/tmp", b"tmpfs", 0, 0),
                  "keyctl": call("syscall", seccomp.ARCHES[platform.machine()][1]["keyctl"],
                                 0, 0, 0, 0) if installed else None,
                  "bpf": call("syscall", seccomp.ARCHES[platform.machine()][1]["bpf"],
                              0, 0, 0) if installed else None,
                  "files_ok": len(os.listdir("/")) > 0, "pid_ok": os.getpid() > 0}))
"""


def test_the_workers_seccomp_filter_denies_exploit_syscalls() -> None:
    from bitwrk.seller.pool import PACKAGE_ROOT

    done = subprocess.run([sys.executable, "-I", "-c", SECCOMP_PROBE, str(PACKAGE_ROOT)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    if not seen["installed"]:
        pytest.skip("no seccomp filter for this CPU")
    for name in ("unshare", "ptrace", "mount", "keyctl", "bpf"):
        assert seen[name] == [-1, 1], (name, seen[name])  # EPERM
    assert seen["files_ok"] and seen["pid_ok"]
