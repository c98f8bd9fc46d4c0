"""Customers: `externalcontact/get`, `list`, `batch/get_by_user`, follow users, remark, welcome."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from bot.wecom.errors import INVALID_RESPONSE_ERRCODE, RequestRejected
from bot.wecom.models import (
    Attachment,
    BatchContactPage,
    BatchGetByUserRequest,
    ExternalContactDetail,
    ExternalUserIdList,
    FollowUserList,
    RemarkRequest,
    Text,
    WeComResponse,
    WelcomeMsgRequest,
)
from bot.wecom.resource import Resource, as_list, build, require

# 500 follow users a page: 1,000 pages is far beyond any real customer; the bound only
# stops a server that keeps returning a cursor.
MAX_FOLLOW_USER_PAGES: Final = 1_000


def text_body(text: str | Text | Mapping[str, Any] | None) -> Text | Mapping[str, Any] | None:
    """A plain string becomes `{"content": ...}`; models and mappings pass through."""
    return Text(content=text) if isinstance(text, str) else text


class ExternalContactAPI(Resource):
    """`client.externalcontact`: customer details and per-customer actions."""

    async def get(self, external_userid: str, cursor: str | None = None) -> ExternalContactDetail:
        """Customer detail with one page of follow users (92114)."""
        path = "externalcontact/get"
        require(path, external_userid=external_userid)
        params = {"external_userid": external_userid}
        if cursor:
            params["cursor"] = cursor
        return await self._client.call(
            "GET", path, ExternalContactDetail, params=params, idempotent=True
        )

    async def get_all(self, external_userid: str) -> ExternalContactDetail:
        """Customer detail with every follow user, following `next_cursor` (92114)."""
        detail = await self.get(external_userid)
        follow_users = list(detail.follow_user)
        seen: set[str] = set()
        cursor = detail.next_cursor
        while cursor:
            if cursor in seen or len(seen) >= MAX_FOLLOW_USER_PAGES:
                raise RequestRejected(
                    INVALID_RESPONSE_ERRCODE, "next_cursor does not advance", "externalcontact/get"
                )
            seen.add(cursor)
            page = await self.get(external_userid, cursor)
            follow_users.extend(page.follow_user)
            cursor = page.next_cursor
        return detail.model_copy(update={"follow_user": follow_users, "next_cursor": ""})

    async def list(self, userid: str) -> ExternalUserIdList:
        """External userids of one member's customers (92113)."""
        path = "externalcontact/list"
        require(path, userid=userid)
        return await self._client.call(
            "GET", path, ExternalUserIdList, params={"userid": userid}, idempotent=True
        )

    async def get_follow_user_list(self) -> FollowUserList:
        """Members with customer contact enabled (92571)."""
        return await self._client.call(
            "GET", "externalcontact/get_follow_user_list", FollowUserList, idempotent=True
        )

    async def batch_get_by_user(
        self, userid_list: Sequence[str], *, cursor: str | None = None, limit: int = 50
    ) -> BatchContactPage:
        """A page of customers of up to 100 members, with follow info (92994)."""
        path = "externalcontact/batch/get_by_user"
        body = build(
            BatchGetByUserRequest,
            path,
            userid_list=as_list(userid_list),
            cursor=cursor,
            limit=limit,
        )
        return await self._client.call(
            "POST", path, BatchContactPage, json=body.to_body(), idempotent=True
        )

    async def remark(
        self,
        userid: str,
        external_userid: str,
        *,
        remark: str | None = None,
        description: str | None = None,
        remark_company: str | None = None,
        remark_mobiles: Sequence[str] | None = None,
        remark_pic_mediaid: str | None = None,
    ) -> WeComResponse:
        """Set a member's remark, description, company and phones for a customer (92115)."""
        path = "externalcontact/remark"
        body = build(
            RemarkRequest,
            path,
            userid=userid,
            external_userid=external_userid,
            remark=remark,
            description=description,
            remark_company=remark_company,
            remark_mobiles=as_list(remark_mobiles),
            remark_pic_mediaid=remark_pic_mediaid,
        )
        return await self._client.call(
            "POST", path, WeComResponse, json=body.to_body(), idempotent=True
        )

    async def send_welcome_msg(
        self,
        welcome_code: str,
        *,
        text: str | Text | Mapping[str, Any] | None = None,
        attachments: Sequence[Attachment | Mapping[str, Any]] = (),
    ) -> WeComResponse:
        """Welcome a new customer, once, within 20 s of the add event (92137)."""
        path = "externalcontact/send_welcome_msg"
        body = build(
            WelcomeMsgRequest,
            path,
            welcome_code=welcome_code,
            text=text_body(text),
            attachments=list(attachments) or None,
        )
        return await self._client.call(
            "POST", path, WeComResponse, json=body.to_body(), idempotent=False
        )
