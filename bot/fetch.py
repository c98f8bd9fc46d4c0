"""Reads from WeCom in the shapes the mirror stores (WeCom's own JSON, as dicts)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from bot.wecom.errors import RequestRejected

if TYPE_CHECKING:
    from bot.wecom.client import WeComClient

Json = dict[str, Any]

INVALID_CHATID: Final = 40050


async def fetch_contact(client: WeComClient, external_userid: str) -> tuple[Json, list[Json], bool]:
    """A customer and every member following them (all cursor pages); True = complete."""
    detail = await client.externalcontact.get_all(external_userid)
    contact = detail.external_contact.model_dump(mode="json")
    follow = [f.model_dump(mode="json") for f in detail.follow_user]
    return contact, follow, True


async def fetch_group(client: WeComClient, chat_id: str) -> Json | None:
    """A customer group with names and its whole member list; None when WeCom answers
    40050 (dismissed, or its owner is outside the app's scope)."""
    try:
        chat = await client.groupchat.get(chat_id, need_name=True)
    except RequestRejected as exc:
        if exc.errcode == INVALID_CHATID:
            return None
        raise
    return chat.model_dump(mode="json")


async def fetch_tag_groups(
    client: WeComClient, *, tag_ids: list[str] | None = None, group_ids: list[str] | None = None
) -> list[Json]:
    """Corp tag groups (with their tags), all of them or those named."""
    result = await client.tags.get_corp_tag_list(tag_id=tag_ids or (), group_id=group_ids or ())
    return [g.model_dump(mode="json") for g in result.tag_group]
