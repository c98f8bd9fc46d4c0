"""Customer groups: `externalcontact/groupchat/list` and `groupchat/get`."""

from __future__ import annotations

from collections.abc import Sequence

from bot.wecom.models import (
    GroupChat,
    GroupChatDetail,
    GroupChatGetRequest,
    GroupChatListRequest,
    GroupChatPage,
)
from bot.wecom.resource import Resource, build


class GroupChatAPI(Resource):
    """`client.groupchat`: customer groups and their members."""

    async def list(
        self,
        *,
        status_filter: int = 0,
        owner_userids: Sequence[str] | None = None,
        cursor: str | None = None,
        limit: int = 1000,
    ) -> GroupChatPage:
        """A page of customer groups, optionally of up to 100 owners (92120)."""
        path = "externalcontact/groupchat/list"
        body = build(
            GroupChatListRequest,
            path,
            status_filter=status_filter,
            owner_filter=None if owner_userids is None else {"userid_list": list(owner_userids)},
            cursor=cursor,
            limit=limit,
        )
        return await self._client.call(
            "POST", path, GroupChatPage, json=body.to_body(), idempotent=True
        )

    async def get(self, chat_id: str, *, need_name: bool = False) -> GroupChat:
        """A customer group with members, admins and member_version (92122)."""
        path = "externalcontact/groupchat/get"
        body = build(GroupChatGetRequest, path, chat_id=chat_id, need_name=int(need_name))
        detail = await self._client.call(
            "POST", path, GroupChatDetail, json=body.to_body(), idempotent=True
        )
        return detail.group_chat
