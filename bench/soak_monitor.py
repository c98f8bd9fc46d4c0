"""Watching the soak while it runs: CPU per process, load average, inbox and outbox depth.

CPU is read from /proc/<pid>/stat (user + system) for each process the soak started and
for every PostgreSQL backend serving the soak's database (backends are found by their
process title, `postgres: USER DATABASE HOST(PORT) STATE`); a backend that exits keeps the
CPU it had when last seen.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.callbacks import cpu_seconds
from tests.crash.databases import Peek

POSTGRES = "postgres"


def _backends(database: str) -> list[int]:
    """pids of the PostgreSQL backends connected to `database`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            title = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        words = title.replace("\0", " ").split()
        if len(words) >= 3 and words[0] == "postgres:" and words[2] == database:
            found.append(int(entry.name))
    return found


@dataclass
class CpuMeter:
    """Cumulative CPU seconds of named processes and of one database's backends."""

    pids: dict[str, int]
    database: str
    _backend_cpu: dict[int, float] = field(default_factory=dict)
    _last: dict[str, float] = field(default_factory=dict)

    def read(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for name, pid in self.pids.items():
            # A process that exited keeps the CPU it had when last seen.
            with contextlib.suppress(OSError):
                self._last[name] = cpu_seconds(pid)
            out[name] = self._last.get(name, 0.0)
        for pid in _backends(self.database):
            try:
                self._backend_cpu[pid] = cpu_seconds(pid)
            except OSError:
                continue
        out[POSTGRES] = sum(self._backend_cpu.values())
        return out


@dataclass(frozen=True)
class Sample:
    """One look at the run, `at` seconds after the load started."""

    at: float
    cpu: dict[str, float]
    load1: float
    inbox_open: int
    outbox_open: dict[str, int]
    outbox_sent: dict[str, int]


def depths(peek: Peek) -> tuple[int, dict[str, int], dict[str, int]]:
    """(inbox rows not yet processed, open outbox rows per kind, sent rows per kind)."""
    inbox = int(peek.scalar("SELECT count(*) FROM inbox WHERE status IN ('pending', 'processing')"))
    open_rows: dict[str, int] = {}
    sent: dict[str, int] = {}
    for kind, status, count in peek.rows(
        "SELECT kind, status, count(*) FROM outbox GROUP BY kind, status"
    ):
        if status in ("pending", "sending", "verify"):
            open_rows[str(kind)] = open_rows.get(str(kind), 0) + int(count)
        elif status == "sent":
            sent[str(kind)] = int(count)
    return inbox, open_rows, sent


class Monitor:
    """Samples every `interval` seconds on a thread until stopped; prints each sample."""

    def __init__(
        self,
        meter: CpuMeter,
        peek: Peek,
        *,
        interval: float = 10.0,
        extra: Callable[[], str] | None = None,
    ) -> None:
        self.meter = meter
        self.peek = peek
        self.interval = interval
        self.extra = extra
        self.samples: list[Sample] = []
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soak-monitor", daemon=True)

    def start(self) -> None:
        self.started = time.monotonic()
        self.samples.append(self.sample())
        self._thread.start()

    def stop(self) -> Sample:
        self._stop.set()
        self._thread.join()
        last = self.sample()
        self.samples.append(last)
        return last

    def sample(self) -> Sample:
        inbox, open_rows, sent = depths(self.peek)
        return Sample(
            at=time.monotonic() - self.started,
            cpu=self.meter.read(),
            load1=os.getloadavg()[0],
            inbox_open=inbox,
            outbox_open=open_rows,
            outbox_sent=sent,
        )

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                sample = self.sample()
            except Exception as exc:  # a failed look must not end the run
                print(f"monitor: sample failed: {type(exc).__name__}: {exc}", flush=True)
                continue
            previous = self.samples[-1]
            self.samples.append(sample)
            print(self.line(previous, sample), flush=True)

    def line(self, previous: Sample, sample: Sample) -> str:
        span = max(sample.at - previous.at, 1e-9)
        busy = " ".join(
            f"{name} {(sample.cpu[name] - previous.cpu.get(name, 0.0)) / span * 100:.0f}%"
            for name in sample.cpu
        )
        opened = ", ".join(f"{k} {v:,}" for k, v in sorted(sample.outbox_open.items())) or "—"
        sent = ", ".join(f"{k} {v:,}" for k, v in sorted(sample.outbox_sent.items())) or "—"
        extra = f" | {self.extra()}" if self.extra is not None else ""
        return (
            f"[{sample.at:5.0f} s] load {sample.load1:.1f} | CPU {busy} | inbox open "
            f"{sample.inbox_open:,} | outbox open {opened} | sent {sent}{extra}"
        )


def cpu_share(first: Sample, last: Sample) -> dict[str, float]:
    """Average CPU of each process between two samples, in % of one core."""
    span = max(last.at - first.at, 1e-9)
    return {name: (last.cpu[name] - first.cpu.get(name, 0.0)) / span * 100 for name in last.cpu}


__all__ = ["CpuMeter", "Monitor", "Sample", "cpu_share", "depths"]
