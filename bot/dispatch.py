"""The callback registry: one handler per `EventKey`, most specific first, plus observers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from bot.gateway.events import EVENT_MODELS, CallbackEvent, EventKey, UnknownEvent
from bot.handlers.context import HandlerContext

Handler = Callable[[CallbackEvent, HandlerContext], Awaitable[None]]
Observer = Callable[[CallbackEvent, HandlerContext], Awaitable[None]]

E = TypeVar("E", bound=CallbackEvent)
F = TypeVar("F", bound=Callable[..., Awaitable[None]])
Obs = TypeVar("Obs", bound=Observer)


class RetryLater(Exception):
    """Raised by a handler when WeCom is not ready yet (it lags right after some events):
    the row is tried again after `seconds` × its attempt number, without holding up the
    rows behind it. Attempts still run out at the dispatcher's bound."""

    def __init__(self, seconds: float, reason: str) -> None:
        super().__init__(reason)
        self.seconds = seconds
        self.reason = reason


class DuplicateHandler(ValueError):
    """A second handler was registered for a key that already has one."""


class Registry:
    """Maps event keys to handlers and keeps the observers that see every event.

    `resolve` tries (msg_type, event, change_type), then (msg_type, event, None), then
    (msg_type, None, None). `UnknownEvent`s never resolve: they are logged as unhandled.
    Observers run before the handler on every processing attempt, so a retried event is
    observed again; they are best-effort (a failing observer is logged, not retried).
    """

    def __init__(self) -> None:
        self._handlers: dict[EventKey, Handler] = {}
        self._observers: list[Observer] = []

    def register(
        self, key: EventKey, handler: Callable[[E, HandlerContext], Awaitable[None]]
    ) -> None:
        """Route events under `key` to `handler`; a key takes one handler only."""
        if not any(key in model_key.fallbacks() for model_key in EVENT_MODELS):
            # A typo in a key would otherwise leave a handler silently never called.
            raise ValueError(f"no event model has key {key} or a key under it")
        if key in self._handlers:
            raise DuplicateHandler(f"a handler is already registered for {key}")
        # A handler for a narrower event type is safe: only events under `key` reach it.
        self._handlers[key] = handler  # type: ignore[assignment]

    def handler(self, key: EventKey) -> Callable[[F], F]:
        """Decorator form of `register`."""

        def decorate(fn: F) -> F:
            self.register(key, fn)
            return fn

        return decorate

    def observe(self, observer: Obs) -> Obs:
        """Add an observer called for every event (handled or not); usable as a decorator."""
        self._observers.append(observer)
        return observer

    @property
    def observers(self) -> tuple[Observer, ...]:
        return tuple(self._observers)

    @property
    def keys(self) -> frozenset[EventKey]:
        return frozenset(self._handlers)

    def resolve(self, event: CallbackEvent) -> Handler | None:
        """The most specific handler for the event, or None."""
        if isinstance(event, UnknownEvent):
            return None
        for key in event.routing_key.fallbacks():
            found = self._handlers.get(key)
            if found is not None:
                return found
        return None


__all__ = ["DuplicateHandler", "Handler", "Observer", "Registry"]
