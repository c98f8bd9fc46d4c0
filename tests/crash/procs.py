"""Real processes for the crash tests: start them, kill them with SIGKILL, never leave one.

Every process a test starts goes through a `Processes` registry, whose `close` (run from a
fixture's finally) kills whatever is still alive, by its own pid only. Output goes to a
log file per process, shown when something fails.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, TypeVar

from bench.callbacks import AES_KEY, CORP_ID, TOKEN, bot_env, free_port

ROOT = Path(__file__).resolve().parents[2]
AGENT_ID = "1000002"
SECRET = "bench-secret"

T = TypeVar("T")


class Proc:
    """One started process and its log file."""

    def __init__(self, name: str, args: list[str], env: Mapping[str, str], log: Path) -> None:
        self.name = name
        self.args = args
        self.log = log
        self._out: IO[bytes] = log.open("ab")
        self.popen = subprocess.Popen(
            args,
            env=dict(env),
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=self._out,
            stderr=subprocess.STDOUT,
        )
        self.pid = self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill9(self) -> None:
        """SIGKILL: no shutdown hook, no flush, no finally; what a power cut does to it."""
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)
        self.popen.wait(timeout=10)
        self._out.close()

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM and wait (SIGKILL if it does not go); its exit code."""
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.popen.wait(timeout=10)
        self._out.close()
        return int(self.popen.returncode)

    def wait(self, timeout: float) -> int:
        code = self.popen.wait(timeout=timeout)
        self._out.close()
        return int(code)

    def tail(self, chars: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


class Processes:
    """The processes of one test (or fixture); `close` kills the survivors."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.started: list[Proc] = []

    def start(self, name: str, args: list[str], env: Mapping[str, str]) -> Proc:
        log = self.logs / f"{name}-{len(self.started)}.log"
        proc = Proc(name, args, env, log)
        self.started.append(proc)
        return proc

    def bot(self, name: str, command: list[str], env: Mapping[str, str]) -> Proc:
        """`python -m bot COMMAND…` with the project's interpreter."""
        return self.start(name, [sys.executable, "-m", "bot", *command], env)

    def run_bot(self, name: str, command: list[str], env: Mapping[str, str], timeout: float) -> str:
        """Run a `bot` command to its end; its output, or AssertionError with the log."""
        proc = self.bot(name, command, env)
        try:
            code = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill9()
            raise AssertionError(f"bot {' '.join(command)} timed out:\n{proc.tail()}") from None
        if code != 0:
            raise AssertionError(f"bot {' '.join(command)} exited {code}:\n{proc.tail()}")
        return proc.log.read_text(errors="replace")

    def close(self) -> None:
        for proc in self.started:
            if proc.alive():
                proc.kill9()
            elif not proc._out.closed:
                proc.popen.wait()
                proc._out.close()

    def logs_of(self, *procs: Proc) -> str:
        return "\n".join(f"--- {p.name} (pid {p.pid}) ---\n{p.tail()}" for p in procs)


def wait_port(port: int, proc: Proc, timeout: float = 60.0) -> None:
    """Until something accepts connections on `port`; fails if `proc` exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise AssertionError(f"{proc.name} exited before listening:\n{proc.tail()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"{proc.name} did not listen on {port} within {timeout} s")


def poll(
    what: str,
    probe: Callable[[], T | None],
    *,
    timeout: float,
    interval: float = 0.05,
    alive: Proc | None = None,
) -> T:
    """`probe()` until it returns something other than None (or False)."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value is not None and value is not False:
            return value
        if alive is not None and not alive.alive():
            raise AssertionError(f"{alive.name} exited while waiting for {what}:\n{alive.tail()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def crash_env(db_url: str, *, api_port: int | None, **overrides: str) -> dict[str, str]:
    """bench.callbacks' environment for the bot (credentials, config) plus crash-test
    settings: short leases so a dead process's rows come back in seconds, no calendar
    unless a test gives it one."""
    env = bot_env(db_url)
    env.update(
        {
            "BOT_LOG_LEVEL": "INFO",
            "BOT_OUTBOX__LEASE_SECONDS": "5",
            "BOT_DISPATCHER__LEASE_SECONDS": "5",
            "BOT_CALENDAR__ENABLED": "false",
        }
    )
    if api_port is not None:
        env["BOT_WECOM__API_BASE"] = f"http://127.0.0.1:{api_port}/cgi-bin"
    env.update(overrides)
    return env


def sandbox_args(
    port: int,
    *,
    managers: int,
    customers: int,
    groups: int,
    seed: int,
    bank_file: Path | None = None,
) -> list[str]:
    """The command line of a sandbox server process sharing the bot's credentials."""
    args = [
        sys.executable,
        "-m",
        "tests.crash.sandbox_main",
        "--port",
        str(port),
        "--corp-id",
        CORP_ID,
        "--agent-id",
        AGENT_ID,
        "--secret",
        SECRET,
        "--token",
        TOKEN,
        "--aes-key",
        AES_KEY,
        "--managers",
        str(managers),
        "--customers",
        str(customers),
        "--groups",
        str(groups),
        "--seed",
        str(seed),
    ]
    if bank_file is not None:
        args += ["--bank-file", str(bank_file)]
    return args


__all__ = [
    "ROOT",
    "Proc",
    "Processes",
    "crash_env",
    "free_port",
    "poll",
    "sandbox_args",
    "wait_port",
]
