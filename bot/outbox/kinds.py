"""The outbox row kinds the product uses, and what each does on WeCom."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bot.calendar.effects import calendar_effects
from bot.calendar.reminders import remind_effect
from bot.outbox.effects import Effect, EffectRegistry
from bot.tagging.tagsync_push import record_mark_tag

if TYPE_CHECKING:
    from bot.wecom.client import WeComClient

WELCOME_MSG = "welcome_msg"
APP_MESSAGE = "app_message"
MARK_TAG = "mark_tag"


async def _send_welcome(client: WeComClient, payload: dict[str, Any]) -> dict[str, Any]:
    await client.externalcontact.send_welcome_msg(
        payload["welcome_code"],
        text=payload.get("text"),
        attachments=payload.get("attachments") or (),
    )
    return {"sent": True}


async def _send_app_message(client: WeComClient, payload: dict[str, Any]) -> dict[str, Any]:
    # Rows are {msgtype, content, touser}; duplicate check is a safety net against repeats.
    result = await client.message.send(
        payload["msgtype"],
        payload["content"],
        touser=payload["touser"],
        enable_duplicate_check=True,
    )
    return result.model_dump(mode="json", exclude={"errcode", "errmsg"})


async def _mark_tag(client: WeComClient, payload: dict[str, Any]) -> dict[str, Any]:
    await client.tags.mark_tag(
        payload["userid"],
        payload["external_userid"],
        add_tag=payload.get("add_tag") or (),
        remove_tag=payload.get("remove_tag") or (),
    )
    return {"marked": True}


def default_effects() -> EffectRegistry:
    registry = EffectRegistry()
    registry.register(
        Effect(
            kind=WELCOME_MSG,
            api_path="externalcontact/send_welcome_msg",
            execute=_send_welcome,
            # A repeat cannot double-send: WeCom answers 41051 for a used code.
            idempotent=True,
            done_errcodes=frozenset({41051}),
            retry_once_errcodes=frozenset({41096}),
        )
    )
    registry.register(
        Effect(
            kind=APP_MESSAGE,
            api_path="message/send",
            execute=_send_app_message,
            # Rows carry enable_duplicate_check, so WeCom drops a repeat within the interval.
            idempotent=True,
        )
    )
    registry.register(
        Effect(
            kind=MARK_TAG,
            api_path="externalcontact/mark_tag",
            execute=_mark_tag,
            # Adding a tag the customer has, or removing one they lack, changes nothing.
            idempotent=True,
            # No callback follows an API change: record the bot's pushes and the mirror here.
            on_success=record_mark_tag,
        )
    )
    for effect in (*calendar_effects(), remind_effect()):
        registry.register(effect)
    return registry
