"""What every fuzz property shares: a hard time bound per input, and the hypothesis settings
of the normal test run (the long run in bench/fuzz.py raises max_examples)."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from hypothesis import HealthCheck, settings


class Hang(AssertionError):
    """One input took longer than its bound: a hang, as far as the property is concerned."""


@contextmanager
def bounded(seconds: float, what: str) -> Iterator[None]:
    """Fail with `Hang` if the body runs longer than `seconds` of wall time.

    A deadline only measures an example after it returns; a real hang never returns, so
    SIGALRM interrupts it instead (Python code and the event loop both see the signal).
    Outside the main thread (where signals cannot be used) the body just runs.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(_signum: int, _frame: FrameType | None) -> None:
        raise Hang(f"{what} took more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# A fixture (database, app, folder) is shared by the examples of one test on purpose: each
# property is stated as a difference (rows before and after), not as an empty start.
SHARED_FIXTURES = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]


def fuzz_settings(max_examples: int, deadline_ms: int | None) -> settings:
    """Settings for one property in the normal run. `deadline_ms` None for database-bound
    properties, whose time depends on the engine and the machine's load more than on the
    input; they still have `bounded` as their hang guard."""
    return settings(
        max_examples=max_examples,
        deadline=deadline_ms,
        suppress_health_check=SHARED_FIXTURES,
    )
