"""Corp tags and tagging customers: `externalcontact/*_corp_tag*` and `mark_tag`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bot.wecom.models import (
    AddCorpTagRequest,
    CorpTagFilter,
    CorpTagGroupResult,
    CorpTagList,
    DelCorpTagRequest,
    EditCorpTagRequest,
    MarkTagRequest,
    NewCorpTag,
    WeComResponse,
)
from bot.wecom.resource import Resource, as_list, build


class TagsAPI(Resource):
    """`client.tags`: the corp tag library and the tags on each customer.

    WeCom sends no callback for changes made through these calls (96361): update the
    local mirror on the API path.
    """

    async def get_corp_tag_list(
        self, *, tag_id: Sequence[str] = (), group_id: Sequence[str] = ()
    ) -> CorpTagList:
        """Corp tag groups and tags; both filters empty gives all, group_id wins (92117)."""
        path = "externalcontact/get_corp_tag_list"
        body = build(
            CorpTagFilter, path, tag_id=as_list(tag_id) or None, group_id=as_list(group_id) or None
        )
        return await self._client.call(
            "POST", path, CorpTagList, json=body.to_body(), idempotent=True
        )

    async def add_corp_tag(
        self,
        tags: Sequence[str | NewCorpTag | Mapping[str, Any]],
        *,
        group_id: str | None = None,
        group_name: str | None = None,
        order: int | None = None,
    ) -> CorpTagGroupResult:
        """Create tags in an existing group (group_id) or a new one (group_name) (92117)."""
        path = "externalcontact/add_corp_tag"
        body = build(
            AddCorpTagRequest,
            path,
            group_id=group_id,
            group_name=group_name,
            order=order,
            tag=[{"name": t} if isinstance(t, str) else t for t in tags],
        )
        return await self._client.call(
            "POST", path, CorpTagGroupResult, json=body.to_body(), idempotent=False
        )

    async def edit_corp_tag(
        self, id: str, *, name: str | None = None, order: int | None = None
    ) -> WeComResponse:
        """Rename or reorder a tag or group this app created (92117)."""
        path = "externalcontact/edit_corp_tag"
        body = build(EditCorpTagRequest, path, id=id, name=name, order=order)
        return await self._client.call(
            "POST", path, WeComResponse, json=body.to_body(), idempotent=True
        )

    async def del_corp_tag(
        self, *, tag_id: Sequence[str] = (), group_id: Sequence[str] = ()
    ) -> WeComResponse:
        """Delete tags or whole groups this app created (92117)."""
        path = "externalcontact/del_corp_tag"
        body = build(
            DelCorpTagRequest,
            path,
            tag_id=as_list(tag_id) or None,
            group_id=as_list(group_id) or None,
        )
        return await self._client.call(
            "POST", path, WeComResponse, json=body.to_body(), idempotent=True
        )

    async def mark_tag(
        self,
        userid: str,
        external_userid: str,
        *,
        add_tag: Sequence[str] = (),
        remove_tag: Sequence[str] = (),
    ) -> WeComResponse:
        """Add and remove corp tags on a customer, as seen by one member (92118)."""
        path = "externalcontact/mark_tag"
        body = build(
            MarkTagRequest,
            path,
            userid=userid,
            external_userid=external_userid,
            add_tag=list(add_tag),
            remove_tag=list(remove_tag),
        )
        return await self._client.call(
            "POST", path, WeComResponse, json=body.to_body(), idempotent=True
        )
