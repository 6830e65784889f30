"""One daemon per identity: a second process with the same data dir is refused at once with
a message naming the first one; a killed holder frees the identity."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from bitwrk.daemon import Daemon, DaemonConfig, IdentityInUse
from bitwrk.daemon.identity_lock import IdentityLock

ROOT = Path(__file__).resolve().parents[2]
HOLDER = """
import sys, time
from pathlib import Path
from bitwrk.daemon.identity_lock import IdentityLock
lock = IdentityLock(Path(sys.argv[1]))
lock.acquire()
print("held", flush=True)
time.sleep(120)
"""


def test_a_second_process_is_refused_until_the_first_one_ends(tmp_path: Path) -> None:
    data = tmp_path / "data"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(data)], cwd=ROOT,
                              env={**os.environ, "PYTHONPATH": str(ROOT)},
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        # the exchange URL is never reached: the lock is checked before anything starts
        daemon = Daemon(DaemonConfig("http://127.0.0.1:9", data_dir=data,
                                     cache_dir=tmp_path / "cache"))
        with pytest.raises(IdentityInUse) as caught:
            daemon.start(5)
        assert f"pid {holder.pid}" in str(caught.value) and str(data) in str(caught.value)
        assert not daemon.runtime.running and not daemon.lock.held
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(30)
    lock = IdentityLock(data)  # a crashed holder releases by dying
    lock.acquire()
    assert lock.held and (data / "daemon.lock").read_text() == str(os.getpid())
    lock.release()


def test_one_process_takes_it_once_and_releases_it(tmp_path: Path) -> None:
    first, second = IdentityLock(tmp_path), IdentityLock(tmp_path)
    first.acquire()
    first.acquire()  # idempotent
    with pytest.raises(IdentityInUse):  # flock: another open file is another owner
        second.acquire()
    first.release()
    second.acquire()
    second.release()
