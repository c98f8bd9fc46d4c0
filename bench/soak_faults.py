"""What WeCom does wrong during the soak, scheduled over the load through the sandbox's
admin API (/sandbox/faults).

Throughout: random -1 (system busy) on 1 % of API calls and timeouts on 0.05 %, half of
them after the call took effect. At set moments: every access token expires (42001) or is
revoked (40014); one 45009 on mark_tag and later on add_msg_template and on any call
(WeCom then blocks the API for a minute, which the bot must honour without losing rows);
and scripted timeouts before and after effect on the non-idempotent add_msg_template
(once the first calendar slot has fired) and on mark_tag. Random 45009s are not used: at
the tag sync's ~130 calls/s even 0.1 % would keep mark_tag blocked for the whole run.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from tests.crash.sandbox import ADD_MSG_TEMPLATE, MARK_TAG, Admin

BUSY, FREQ_LIMIT = -1, 45009
CHAOS: dict[str, Any] = {"kind": "chaos", "busy_rate": 0.01, "timeout_rate": 0.0005}


@dataclass(frozen=True)
class FaultStep:
    """Admin /faults bodies to post `at` seconds after the load started."""

    at: float
    label: str
    bodies: tuple[dict[str, Any], ...]


def _errcode(path: str | None, errcode: int, times: int = 1) -> dict[str, Any]:
    return {"kind": "errcode", "path": path, "errcode": errcode, "times": times}


def _timeout(path: str, *, after: bool, times: int) -> dict[str, Any]:
    return {"kind": "timeout", "path": path, "after_effect": after, "times": times}


def fault_plan(seconds: float, first_slot_at: float) -> list[FaultStep]:
    """The schedule for a load of `seconds`, the first calendar slot due at `first_slot_at`."""
    steps = [
        FaultStep(0.0, "chaos: 1 % -1, 0.05 % timeouts", (CHAOS,)),
        FaultStep(0.10 * seconds, "tokens expire (42001)", ({"kind": "expire_tokens"},)),
        FaultStep(0.20 * seconds, "45009 on mark_tag", (_errcode(MARK_TAG, FREQ_LIMIT),)),
        FaultStep(
            max(first_slot_at + 3.0, 0.0),
            "add_msg_template: 2 timeouts after effect, 1 before, 2 × -1",
            (
                _timeout(ADD_MSG_TEMPLATE, after=True, times=2),
                _timeout(ADD_MSG_TEMPLATE, after=False, times=1),
                _errcode(ADD_MSG_TEMPLATE, BUSY, 2),
            ),
        ),
        FaultStep(0.35 * seconds, "tokens revoked (40014)", ({"kind": "revoke_tokens"},)),
        FaultStep(
            0.50 * seconds,
            "mark_tag: 3 timeouts after effect, 3 before",
            (_timeout(MARK_TAG, after=True, times=3), _timeout(MARK_TAG, after=False, times=3)),
        ),
        FaultStep(
            0.60 * seconds, "45009 on add_msg_template", (_errcode(ADD_MSG_TEMPLATE, FREQ_LIMIT),)
        ),
        FaultStep(0.70 * seconds, "tokens expire (42001)", ({"kind": "expire_tokens"},)),
        FaultStep(0.80 * seconds, "20 × -1 on any call", (_errcode(None, BUSY, 20),)),
        FaultStep(0.90 * seconds, "45009 on any call", (_errcode(None, FREQ_LIMIT),)),
    ]
    return sorted(steps, key=lambda s: s.at)


@dataclass
class FaultDriver:
    """Posts the plan's steps on time, on a thread of its own."""

    admin: Admin
    plan: list[FaultStep]
    applied: list[tuple[float, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        started = time.monotonic()
        self._thread = threading.Thread(
            target=self._run, args=(started,), name="soak-faults", daemon=True
        )
        self._thread.start()

    def _run(self, started: float) -> None:
        for step in self.plan:
            if self._stop.wait(max(0.0, started + step.at - time.monotonic())):
                return
            try:
                for body in step.bodies:
                    self.admin.fault(**body)
            except Exception as exc:  # the run goes on; the report lists it
                self.errors.append(f"{step.label}: {type(exc).__name__}: {exc}")
                continue
            self.applied.append((time.monotonic() - started, step.label))
            print(f"faults: {step.label}", flush=True)

    def stop(self) -> None:
        """Stop the schedule and take every fault away (chaos and unused scripted rules)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.admin.clear_faults()


__all__ = ["FaultDriver", "FaultStep", "fault_plan"]
