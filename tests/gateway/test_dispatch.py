"""The registry: most specific key first, one handler per key, observers, unknown never routed."""

from __future__ import annotations

import pytest

from bot.dispatch import DuplicateHandler, Registry
from bot.gateway.events import AddExternalContact, CallbackEvent, EventKey
from bot.gateway.parse import parse_event
from bot.handlers.context import HandlerContext
from tests.gateway.conftest import fixture_xml

CONTACT = EventKey("event", "change_external_contact")
ADD = EventKey("event", "change_external_contact", "add_external_contact")


async def specific(event: AddExternalContact, ctx: HandlerContext) -> None:
    """Typed for the narrow event: accepted by `register` without a cast."""


async def general(event: CallbackEvent, ctx: HandlerContext) -> None: ...


async def any_event(event: CallbackEvent, ctx: HandlerContext) -> None: ...


def test_most_specific_handler_wins() -> None:
    registry = Registry()
    registry.register(EventKey("event"), any_event)
    registry.register(CONTACT, general)
    registry.register(ADD, specific)
    assert registry.resolve(parse_event(fixture_xml("add_external_contact"))) is specific
    assert registry.resolve(parse_event(fixture_xml("del_follow_user"))) is general
    assert registry.resolve(parse_event(fixture_xml("external_chat_create"))) is any_event
    assert registry.resolve(parse_event(fixture_xml("text_message"))) is None


def test_event_level_key_covers_events_without_change_type() -> None:
    registry = Registry()
    registry.register(EventKey("event", "template_card_event"), general)
    assert registry.resolve(parse_event(fixture_xml("template_card_event"))) is general
    assert registry.resolve(parse_event(fixture_xml("template_card_menu_event"))) is None


def test_unknown_events_never_resolve_even_under_a_catch_all() -> None:
    registry = Registry()
    registry.register(EventKey("event"), any_event)
    registry.register(CONTACT, general)
    assert registry.resolve(parse_event(fixture_xml("unknown_event"))) is None
    assert registry.resolve(parse_event(fixture_xml("unknown_change_type"))) is None


def test_one_handler_per_key() -> None:
    registry = Registry()
    registry.register(ADD, specific)
    with pytest.raises(DuplicateHandler, match="add_external_contact"):
        registry.register(ADD, general)
    assert registry.keys == {ADD}


@pytest.mark.parametrize(
    "key",
    [
        EventKey("event", "change_external_contact", "add_external_contat"),
        EventKey("event", "enter_agent"),
        EventKey("evnt"),
    ],
)
def test_keys_no_model_can_reach_are_refused(key: EventKey) -> None:
    with pytest.raises(ValueError, match="no event model"):
        Registry().register(key, general)


def test_decorator_registers_and_returns_the_function() -> None:
    registry = Registry()

    @registry.handler(ADD)
    async def on_add(event: AddExternalContact, ctx: HandlerContext) -> None: ...

    assert registry.resolve(parse_event(fixture_xml("add_external_contact"))) is on_add


def test_observers_are_kept_in_order() -> None:
    registry = Registry()

    @registry.observe
    async def first(event: CallbackEvent, ctx: HandlerContext) -> None: ...

    registry.observe(any_event)
    assert registry.observers == (first, any_event)
