"""Mass-send tasks (客户群发): create, remind, cancel, and read records, tasks and results."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Literal

from bot.wecom.externalcontact import text_body
from bot.wecom.models import (
    AddMsgTemplateResult,
    Attachment,
    GroupMsgListRequest,
    GroupMsgPage,
    GroupMsgSendResultPage,
    GroupMsgSendResultRequest,
    GroupMsgTaskPage,
    GroupMsgTaskRequest,
    MsgIdRequest,
    MsgTemplate,
    TagFilter,
    Text,
    WeComResponse,
)
from bot.wecom.resource import Resource, as_list, build


def epoch(value: int | datetime) -> int:
    """Epoch seconds from an aware datetime (ints pass through)."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("naive datetime: give an aware one")
        return int(value.timestamp())
    return value


class GroupMsgAPI(Resource):
    """`client.groupmsg`: the `externalcontact/*groupmsg*` family and `add_msg_template`.

    A mass-send is a *task*: nothing reaches customers until the member confirms it in
    the WeCom client.
    """

    async def add_msg_template(
        self,
        *,
        chat_type: Literal["single", "group"] = "single",
        external_userid: Sequence[str] | None = None,
        chat_id_list: Sequence[str] | None = None,
        tag_filter: TagFilter | Mapping[str, Any] | None = None,
        sender: str | None = None,
        allow_select: bool | None = None,
        text: str | Text | Mapping[str, Any] | None = None,
        attachments: Sequence[Attachment | Mapping[str, Any]] = (),
    ) -> AddMsgTemplateResult:
        """Create a mass-send task for customers or customer groups (92135).

        Not idempotent: a timeout raises OutcomeUnknown; reconcile with
        `get_groupmsg_list_v2` before creating it again.
        """
        path = "externalcontact/add_msg_template"
        body = build(
            MsgTemplate,
            path,
            chat_type=chat_type,
            external_userid=as_list(external_userid),
            chat_id_list=as_list(chat_id_list),
            tag_filter=tag_filter,
            sender=sender,
            allow_select=allow_select,
            text=text_body(text),
            attachments=list(attachments) or None,
        )
        return await self._client.call(
            "POST", path, AddMsgTemplateResult, json=body.to_body(), idempotent=False
        )

    async def remind_groupmsg_send(self, msgid: str) -> WeComResponse:
        """Re-notify members to send a task (at most 3 times per 24 h) (97610)."""
        path = "externalcontact/remind_groupmsg_send"
        body = build(MsgIdRequest, path, msgid=msgid)
        return await self._client.call(
            "POST", path, WeComResponse, json=body.to_body(), idempotent=True
        )

    async def cancel_groupmsg_send(self, msgid: str) -> WeComResponse:
        """Stop a task members have not sent yet (97611)."""
        path = "externalcontact/cancel_groupmsg_send"
        body = build(MsgIdRequest, path, msgid=msgid)
        return await self._client.call(
            "POST", path, WeComResponse, json=body.to_body(), idempotent=True
        )

    async def get_groupmsg_list_v2(
        self,
        *,
        start_time: int | datetime,
        end_time: int | datetime,
        chat_type: Literal["single", "group"] = "single",
        creator: str | None = None,
        filter_type: int | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> GroupMsgPage:
        """Mass-send records in a span of at most one month (93338)."""
        path = "externalcontact/get_groupmsg_list_v2"
        body = build(
            GroupMsgListRequest,
            path,
            chat_type=chat_type,
            start_time=epoch(start_time),
            end_time=epoch(end_time),
            creator=creator,
            filter_type=filter_type,
            limit=limit,
            cursor=cursor,
        )
        return await self._client.call(
            "POST", path, GroupMsgPage, json=body.to_body(), idempotent=True
        )

    async def get_groupmsg_task(
        self, msgid: str, *, limit: int | None = None, cursor: str | None = None
    ) -> GroupMsgTaskPage:
        """Which members have sent a task (93338)."""
        path = "externalcontact/get_groupmsg_task"
        body = build(GroupMsgTaskRequest, path, msgid=msgid, limit=limit, cursor=cursor)
        return await self._client.call(
            "POST", path, GroupMsgTaskPage, json=body.to_body(), idempotent=True
        )

    async def get_groupmsg_send_result(
        self, msgid: str, userid: str, *, limit: int | None = None, cursor: str | None = None
    ) -> GroupMsgSendResultPage:
        """Per-recipient results of one member's part of a task (93338)."""
        path = "externalcontact/get_groupmsg_send_result"
        body = build(
            GroupMsgSendResultRequest, path, msgid=msgid, userid=userid, limit=limit, cursor=cursor
        )
        return await self._client.call(
            "POST", path, GroupMsgSendResultPage, json=body.to_body(), idempotent=True
        )
