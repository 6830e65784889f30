"""A throwaway PostgreSQL server for the tests and the benchmarks (Debian's packages).

``initdb`` into a temp dir and ``pg_ctl`` on a free loopback port: no system service, no
password (trust on loopback only). PostgreSQL refuses to run as root, so as root the
server runs as ``nobody`` in a directory it owns. Each test gets a database of its own,
copied from a migrated template (``CREATE DATABASE ... TEMPLATE``: milliseconds).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from tools.processes import free_port

USER = "bitwrk"
TEMPLATE = "bitwrk_template"


def bindir() -> Path | None:
    """The newest installed server's bin directory, or None."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"),
                   key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit()
                   else 0)
    if found:
        return found[-1].parent
    postgres = shutil.which("postgres")
    return Path(postgres).parent if postgres else None


def _as_server_user() -> list[str]:
    if os.geteuid() != 0:
        return []
    return ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"]


class PgServer:
    """One running server; ``stop`` removes it and its files."""

    def __init__(self, durable: bool = False) -> None:
        found = bindir()
        if found is None:
            raise FileNotFoundError("PostgreSQL is not installed (apt-get install postgresql)")
        self.bin = found
        self.root = Path(tempfile.mkdtemp(prefix="bitwrk-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self._names = itertools.count(1)
        self._prefix = f"t{os.getpid()}_"
        if os.geteuid() == 0:
            shutil.chown(self.root, "nobody", "nogroup")
        self._run("initdb", "-D", str(self.data), "-U", USER, "--auth=trust", "-E", "UTF8",
                  "--no-sync", "--locale=C")
        # Tests trade durability for speed; the benchmark keeps PostgreSQL's defaults.
        fast = "" if durable else " -c fsync=off -c synchronous_commit=off" \
                                  " -c full_page_writes=off"
        options = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
                   f" -c max_connections=200 -c shared_buffers=64MB{fast}")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "log"), "-w",
                  "-t", "120", "-o", options, "start")
        self.url = self.url_of("postgres")

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run([*_as_server_user(), str(self.bin / tool), *args], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=self.root)

    def url_of(self, dbname: str) -> str:
        """Over the Unix socket in the server's directory: a round trip costs a fraction of
        one over loopback TCP (which the server also listens on)."""
        return f"postgresql://{USER}@/{dbname}?host={self.root}&port={self.port}"

    def sql(self, statement: str, dbname: str = "postgres") -> None:
        import psycopg

        with psycopg.connect(self.url_of(dbname), autocommit=True) as conn:
            conn.execute(statement)

    def template(self) -> None:
        """Create and migrate the template database once."""
        from service import pgstore

        self.sql(f"CREATE DATABASE {TEMPLATE}")
        pgstore.connect(self.url_of(TEMPLATE)).close()

    def new_database(self) -> str:
        """A fresh, migrated database with an exchange id of its own; its URL."""
        import secrets

        name = f"{self._prefix}{next(self._names)}"
        self.sql(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE} STRATEGY FILE_COPY")
        self.sql(f"UPDATE meta SET value = 'bitwrk-{secrets.token_hex(8)}'"
                 " WHERE key = 'exchange_id'", name)
        return self.url_of(name)

    def stop(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)
