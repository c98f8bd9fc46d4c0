"""What each kind of outbox row does on WeCom, and how its failures are treated."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from datetime import datetime

    from sqlalchemy.orm import Session

    from bot.outbox.queue import Claimed
    from bot.wecom.client import WeComClient

Execute = Callable[["WeComClient", dict[str, Any]], Awaitable[dict[str, Any]]]
Reconcile = Callable[["WeComClient", "Claimed"], Awaitable[dict[str, Any] | None]]
OnSuccess = Callable[["Session", dict[str, Any], dict[str, Any], "datetime"], None]
OnGiveUp = Callable[["Session", dict[str, Any], str, "datetime"], None]


@dataclass(frozen=True)
class Effect:
    """One kind of outbound effect.

    `idempotent` says whether repeating the call is harmless (mark_tag) or refused by WeCom
    itself (a used welcome_code); a non-idempotent effect whose outcome is unknown is
    reconciled with `reconcile` before any retry, or given up on if there is none.
    """

    kind: str
    api_path: str
    execute: Execute
    idempotent: bool = True
    reconcile: Reconcile | None = None
    # Runs in the transaction that marks the row sent: WeCom sends no callback for changes
    # made through the API, so this is where the mirror learns of them.
    on_success: OnSuccess | None = None
    # Runs in the transaction that ends the row without the effect (failed, dead or
    # expired; the status is passed): what was counted on its behalf can be given back.
    on_give_up: OnGiveUp | None = None
    final_errcodes: frozenset[int] = frozenset()
    retry_once_errcodes: frozenset[int] = frozenset()
    done_errcodes: frozenset[int] = frozenset()


class EffectRegistry:
    """Kind → Effect; one registration per kind."""

    def __init__(self) -> None:
        self._effects: dict[str, Effect] = {}

    def register(self, effect: Effect) -> None:
        if effect.kind in self._effects:
            raise ValueError(f"outbox kind {effect.kind!r} registered twice")
        self._effects[effect.kind] = effect

    def get(self, kind: str) -> Effect | None:
        return self._effects.get(kind)

    def kinds(self) -> list[str]:
        return sorted(self._effects)
