"""Where an instance's time goes: py-spy samples of the thread holding the GIL, by part.

`bot serve` runs its HTTP server, dispatcher, outbox sender and scheduler jobs in one
Python process, so whatever holds the GIL is what the others wait for. Samples are taken
`RATE` times a second for `seconds` (`py-spy record --gil`, collapsed stacks) and each is
charged to the first part whose code appears in its stack, innermost frame first.
"""

from __future__ import annotations

import shutil
import subprocess
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from tests.crash.procs import ROOT

RATE = 50
# Innermost match wins: the rate limiter called from the sender is the limiter's time.
PARTS: tuple[tuple[str, str], ...] = (
    ("rate limiter", "bot/wecom/ratelimit"),
    ("access token", "bot/wecom/auth.py"),
    ("calendar planning", "bot/calendar/"),
    ("outbox sender", "bot/outbox/"),
    ("mirror and tagging", "bot/tagging/"),
    ("dispatcher and handlers", "bot/gateway/processor.py"),
    ("callback endpoint", "bot/gateway/"),
    ("scheduler and leader", "bot/scheduler.py"),
    ("HTTP server (uvicorn, starlette)", "uvicorn/"),
)
OTHER = "other (event loop, logging, …)"


@dataclass(frozen=True)
class Profile:
    """One instance's GIL samples: the share of wall time it held the GIL, and by part."""

    name: str
    seconds: float
    samples: int
    parts: dict[str, int]

    @property
    def gil_share(self) -> float:
        return self.samples / (RATE * self.seconds) if self.seconds else 0.0


def py_spy() -> str | None:
    found = ROOT / ".venv" / "bin" / "py-spy"
    return str(found) if found.exists() else shutil.which("py-spy")


def start(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes] | None:
    """Begin sampling `pid` into `out` (None when py-spy is not installed)."""
    tool = py_spy()
    if tool is None:
        return None
    args = [tool, "record", "--gil", "-r", str(RATE), "-d", f"{seconds:.0f}", "-p", str(pid)]
    return subprocess.Popen(
        [*args, "-f", "raw", "-o", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def classify(stack: str) -> str:
    frames = stack.split(";")
    for frame in reversed(frames):
        for part, marker in PARTS:
            if marker in frame:
                return part
    return OTHER


def read(name: str, path: Path, seconds: float) -> Profile | None:
    if not path.exists():
        return None
    parts: Counter[str] = Counter()
    total = 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        total += int(count)
        parts[classify(stack)] += int(count)
    return Profile(name, seconds, total, dict(parts))


__all__ = ["PARTS", "Profile", "classify", "read", "start"]
