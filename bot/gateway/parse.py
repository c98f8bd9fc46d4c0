"""Decrypted callback XML → the most specific typed event model, or `UnknownEvent`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from bot.gateway.events import EVENT_MODELS, CallbackEvent, EventKey, UnknownEvent
from bot.gateway.xmlsafe import XmlRejected, parse_xml

DEFAULT_MAX_BYTES = 65_536


def _norm(value: Any) -> str:
    return value.strip().lower() if isinstance(value, str) else ""


def event_key_of(fields: Mapping[str, Any]) -> EventKey:
    """The (MsgType, Event, ChangeType) of parsed fields, lower-cased; Event only for events."""
    msg_type = _norm(fields.get("MsgType"))
    if msg_type != "event":
        # Messages (text, image, …) carry no Event; a stray ChangeType means nothing there.
        return EventKey(msg_type)
    return EventKey(
        msg_type, _norm(fields.get("Event")) or None, _norm(fields.get("ChangeType")) or None
    )


def model_for(key: EventKey) -> type[CallbackEvent] | None:
    """The model for `key`, trying the most specific key first."""
    for candidate in key.fallbacks():
        model = EVENT_MODELS.get(candidate)
        if model is not None:
            return model
    return None


def event_from_fields(fields: Mapping[str, Any]) -> CallbackEvent:
    """Validate parsed fields into their model; anything unmodelled or invalid is Unknown."""
    key = event_key_of(fields)
    model = model_for(key)
    if model is None:
        return _unknown(fields, key, None)
    try:
        return model.model_validate(fields)
    except ValidationError as exc:
        # Keep the callback (it is authentic) rather than refuse it and lose it for good;
        # the summary names fields and problems, never the values (they may be PII).
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"
            for err in exc.errors(include_url=False, include_input=False, include_context=False)
        )
        return _unknown(fields, key, f"{model.__name__} refused: {problems}")


def parse_event(plaintext: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> CallbackEvent:
    """Parse a decrypted callback; raises `XmlRejected` if it is not acceptable XML."""
    return event_from_fields(parse_xml(plaintext, max_bytes=max_bytes))


def _unknown(fields: Mapping[str, Any], key: EventKey, error: str | None) -> UnknownEvent:
    create_time = fields.get("CreateTime")
    try:
        when = int(create_time) if isinstance(create_time, str) else 0
    except ValueError:
        when = 0
    return UnknownEvent(
        to_user_name=_text(fields.get("ToUserName")),
        from_user_name=_text(fields.get("FromUserName")),
        create_time=when,
        msg_type=key.msg_type,
        agent_id=_text(fields.get("AgentID")) or None,
        event=key.event,
        change_type=key.change_type,
        fields={k: v for k, v in fields.items() if isinstance(v, str)},
        error=error,
    )


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


__all__ = [
    "DEFAULT_MAX_BYTES",
    "XmlRejected",
    "event_from_fields",
    "event_key_of",
    "model_for",
    "parse_event",
]
