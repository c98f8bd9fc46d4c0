"""Fixtures of the crash tests: process registries, databases, and a shared groups branch.

The groups branch (a sandbox server with 320 customer groups) is started once per session
and synced once per engine; each test copies the synced database and marks its posts with
a theme of its own, so tests never see each other's tasks.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.crash.databases import ENGINES, Databases, Engine
from tests.crash.procs import Proc, Processes, crash_env
from tests.crash.sandbox import SandboxServer, start_sandbox

# Many groups (one task each), few customers: `bot sync` stays quick.
GROUPS = 320

log = logging.getLogger("tests.crash")


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Processes]:
    registry = Processes(tmp_path)
    try:
        yield registry
    finally:
        registry.close()


@pytest.fixture(scope="session")
def crash_dbs(
    sqlite_template: Path, postgres_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Databases]:
    dbs = Databases(sqlite_template, postgres_url, tmp_path_factory.mktemp("crash-db"))
    try:
        yield dbs
    finally:
        dbs.close()


class GroupsBranch:
    """A sandbox with many groups, and per engine a database `bot sync` filled from it.

    Both syncs start at once, in the background (two processes, two cores): a test waits
    only for the engine it uses.
    """

    def __init__(self, sandbox: SandboxServer, dbs: Databases, procs: Processes) -> None:
        self.sandbox = sandbox
        self.dbs = dbs
        self._syncs: dict[Engine, tuple[str, Proc, float]] = {}
        for engine in ENGINES:
            url = dbs.fresh(engine)
            env = crash_env(url, api_port=sandbox.port)
            self._syncs[engine] = (
                url,
                procs.bot(f"sync-{engine}", ["sync"], env),
                time.monotonic(),
            )
        self._done: set[Engine] = set()

    def synced(self, engine: Engine) -> str:
        """A fresh copy of the synced database."""
        url, proc, started = self._syncs[engine]
        if engine not in self._done:
            code = proc.wait(timeout=180)
            assert code == 0, f"bot sync on {engine} exited {code}:\n{proc.tail()}"
            log.info("groups branch synced on %s in %.1f s", engine, time.monotonic() - started)
            self._done.add(engine)
        return self.dbs.copy(url)


@pytest.fixture(scope="session")
def groups_branch(
    crash_dbs: Databases, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GroupsBranch]:
    procs = Processes(tmp_path_factory.mktemp("groups-branch"))
    try:
        sandbox = start_sandbox(procs, managers=8, customers=80, groups=GROUPS, seed=11)
        try:
            yield GroupsBranch(sandbox, crash_dbs, procs)
        finally:
            sandbox.admin.close()
    finally:
        procs.close()
