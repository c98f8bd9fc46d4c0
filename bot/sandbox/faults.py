"""Scriptable fault injection: scripted errcodes and timeouts, token expiry, random chaos."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from bot.sandbox import errors

FaultKind = Literal["errcode", "timeout_before", "timeout_after"]


@dataclass
class FaultRule:
    """The next `remaining` calls to `path` (any path when None) fail like this."""

    kind: FaultKind
    path: str | None
    remaining: int
    errcode: int = errors.SYSTEM_BUSY
    detail: str = "injected fault"

    def matches(self, path: str) -> bool:
        return self.remaining > 0 and (self.path is None or self.path == path)


@dataclass(frozen=True)
class Fault:
    """What to do to one call."""

    kind: FaultKind
    errcode: int = errors.OK
    detail: str = ""

    @property
    def label(self) -> str:
        return f"errcode:{self.errcode}" if self.kind == "errcode" else self.kind


@dataclass
class Chaos:
    """Independent per-call probabilities for soak runs, drawn from the world's rng."""

    busy_rate: float = 0.0
    quota_rate: float = 0.0
    timeout_rate: float = 0.0
    # Of the timeouts, the share that happen after the call took effect (outcome unknown).
    timeout_after_share: float = 0.5
    paths: frozenset[str] | None = None


@dataclass
class FaultInjector:
    """Decides, per API call, whether WeCom misbehaves and how."""

    rng: random.Random
    rules: list[FaultRule] = field(default_factory=list)
    chaos: Chaos = field(default_factory=Chaos)
    on_expire_tokens: Callable[[], None] | None = None
    injected: list[tuple[str, str]] = field(default_factory=list)

    def fail_next(
        self, path: str | None, errcode: int, *, times: int = 1, detail: str = "injected fault"
    ) -> None:
        """The next `times` calls to `path` (None: any path) answer with `errcode`."""
        self.rules.append(FaultRule("errcode", path, times, errcode, detail))

    def timeout_next(self, path: str | None, *, times: int = 1, after_effect: bool = True) -> None:
        """The next `times` calls to `path` time out; with `after_effect` the call still acts."""
        kind: FaultKind = "timeout_after" if after_effect else "timeout_before"
        self.rules.append(FaultRule(kind, path, times))

    def expire_tokens_now(self) -> None:
        """Every access_token issued so far expires at once (callers then get 42001)."""
        if self.on_expire_tokens is not None:
            self.on_expire_tokens()

    def set_chaos(
        self,
        *,
        busy_rate: float = 0.0,
        quota_rate: float = 0.0,
        timeout_rate: float = 0.0,
        timeout_after_share: float = 0.5,
        paths: set[str] | None = None,
    ) -> None:
        for rate in (busy_rate, quota_rate, timeout_rate, timeout_after_share):
            if not 0.0 <= rate <= 1.0:
                raise ValueError("rates must lie in [0, 1]")
        self.chaos = Chaos(
            busy_rate,
            quota_rate,
            timeout_rate,
            timeout_after_share,
            frozenset(paths) if paths is not None else None,
        )

    def clear(self) -> None:
        self.rules.clear()
        self.chaos = Chaos()

    def decide(self, path: str) -> Fault | None:
        """The fault for this call, if any; scripted rules first, then chaos."""
        fault: Fault | None = None
        for rule in self.rules:
            if rule.matches(path):
                rule.remaining -= 1
                fault = Fault(rule.kind, rule.errcode, rule.detail)
                break
        else:
            fault = self._chaos(path)
        self.rules = [r for r in self.rules if r.remaining > 0]
        if fault is not None:
            self.injected.append((path, fault.label))
        return fault

    def _chaos(self, path: str) -> Fault | None:
        chaos = self.chaos
        if chaos.paths is not None and path not in chaos.paths:
            return None
        if chaos.busy_rate and self.rng.random() < chaos.busy_rate:
            return Fault("errcode", errors.SYSTEM_BUSY, "chaos")
        if chaos.quota_rate and self.rng.random() < chaos.quota_rate:
            return Fault("errcode", errors.API_FREQ_LIMIT, "chaos")
        if chaos.timeout_rate and self.rng.random() < chaos.timeout_rate:
            after = self.rng.random() < chaos.timeout_after_share
            return Fault("timeout_after" if after else "timeout_before")
        return None
