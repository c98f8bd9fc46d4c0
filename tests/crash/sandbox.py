"""The sandbox as a server process, and a client for its /sandbox admin API."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.crash.procs import Proc, Processes, free_port, sandbox_args, wait_port

Json = dict[str, Any]
ADD_MSG_TEMPLATE = "externalcontact/add_msg_template"
MARK_TAG = "externalcontact/mark_tag"


class Admin:
    """The sandbox's admin API: reads of the world and faults."""

    def __init__(self, port: int) -> None:
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{port}/sandbox", timeout=60)

    def _get(self, route: str, **params: str) -> Json:
        response = self.http.get(route, params=params)
        response.raise_for_status()
        return dict(response.json())

    def _post(self, path: str, body: Json) -> Json:
        response = self.http.post(path, json=body)
        assert response.status_code == 200, response.text
        return dict(response.json())

    def state(self) -> Json:
        return self._get("/state")

    def task_count(self) -> int:
        return int(self.state()["tasks"])

    def tasks(self) -> list[Json]:
        return list(self._get("/tasks")["tasks"])

    def relations(self) -> list[Json]:
        return list(self._get("/relations")["relations"])

    def calls(self, path: str, limit: int = 100_000) -> list[Json]:
        return list(self._get("/calls", path=path, limit=str(limit))["calls"])

    def fault(self, **body: Any) -> None:
        self._post("/faults", body)

    def clear_faults(self) -> None:
        self._post("/faults", {"kind": "clear"})

    def create_tags(self, group_name: str, tags: list[str]) -> dict[str, str]:
        return dict(self._post("/tags", {"group_name": group_name, "tags": tags})["tags"])

    def close(self) -> None:
        self.http.close()


@dataclass
class SandboxServer:
    """A running `tests.crash.sandbox_main` process."""

    proc: Proc
    port: int
    admin: Admin
    bank_file: Path | None = None


def start_sandbox(
    procs: Processes,
    *,
    managers: int,
    customers: int,
    groups: int,
    seed: int,
    bank_file: Path | None = None,
    wait: bool = True,
) -> SandboxServer:
    """Start a sandbox server; with `wait`, return once it listens."""
    port = free_port()
    args = sandbox_args(
        port, managers=managers, customers=customers, groups=groups, seed=seed, bank_file=bank_file
    )
    proc = procs.start("sandbox", args, _quiet_env())
    server = SandboxServer(proc, port, Admin(port), bank_file)
    if wait:
        ready(server)
    return server


def ready(server: SandboxServer) -> SandboxServer:
    # Building a large branch takes a few seconds before uvicorn listens.
    wait_port(server.port, server.proc, timeout=120)
    return server


def _quiet_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("BOT_")}
