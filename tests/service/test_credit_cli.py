"""``python -m service credit``: a clear one-line error, never a traceback, when the
exchange cannot be reached or its operator key is not where the command looks."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from bitwrk.keys import PrivateKey

ROOT = Path(__file__).resolve().parents[2]


def credit(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "service", "credit", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # nobody listens once it is closed


def test_unreachable_exchange_is_one_line(tmp_path: Path) -> None:
    key = PrivateKey.generate("testnet")
    (tmp_path / "operator.wif").write_text(key.to_wif())
    address = PrivateKey.generate("testnet").address
    url = f"http://127.0.0.1:{closed_port()}"
    done = credit(address, "100", "--exchange", url, "--db", str(tmp_path / "x.sqlite3"))
    assert done.returncode == 1
    assert done.stderr.startswith(f"error: cannot reach the exchange at {url}")
    assert "Traceback" not in done.stderr and len(done.stderr.splitlines()) == 1


def test_missing_operator_key_names_where_it_looked(tmp_path: Path) -> None:
    address = PrivateKey.generate("testnet").address
    done = credit(address, "100", "--db", str(tmp_path / "x.sqlite3"))
    assert done.returncode == 1
    assert done.stderr.startswith(f"error: no operator key at {tmp_path / 'operator.wif'}")
    assert "error: error" not in done.stderr
