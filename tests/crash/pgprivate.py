"""A private, throwaway PostgreSQL server for one test, made like scripts/postgres.sh makes the
shared one (initdb into a temporary folder, pg_ctl on a free port), so it can be restarted
without disturbing the cluster other tests use."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.crash.procs import free_port


def _pg_bin() -> Path:
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name))
    assert versions, "PostgreSQL binaries not found under /usr/lib/postgresql (scripts/postgres.sh)"
    return versions[-1]


class PrivatePostgres:
    """initdb + pg_ctl start on construction; `restart`, `stop`; `close` removes it all."""

    def __init__(self) -> None:
        self.bin = _pg_bin()
        self.port = free_port()
        # The server refuses to run as root: as root, it runs as the postgres user.
        self._as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        self.dir = Path(tempfile.mkdtemp(prefix="bot-crash-pg-"))
        if self._as:
            shutil.chown(self.dir, "postgres")
        self.data = self.dir / "data"
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
        )
        self.options = (
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c max_connections=100"
        )
        self._ctl("start")

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run(
            [*self._as, str(self.bin / tool), *args],
            check=True,
            capture_output=True,
            timeout=120,
        )

    def _ctl(self, action: str, *extra: str) -> None:
        log = self.dir / "server.log"
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-w",
            "-t",
            "60",
            "-l",
            str(log),
            "-o",
            self.options,
            action,
            *extra,
        )

    def restart(self) -> None:
        """`pg_ctl restart -m fast`: every session is cut, the server comes back."""
        self._ctl("restart", "-m", "fast")

    def close(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                self._run("pg_ctl", "-D", str(self.data), "-w", "-m", "immediate", "stop")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
