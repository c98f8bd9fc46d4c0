"""Customer moments (客户朋友圈, 95094/96351): create a publish task, read its result, see
who has published it, cancel.

Like a mass-send, a moment task only asks members to publish: nothing reaches customers'
moments until each member confirms in the WeCom client. Creation is asynchronous: the
call returns a `jobid`, and `get_moment_task_result` reports 1 (started), 2 (running) and
finally 3 with the `moment_id` and the senders and tags WeCom refused.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bot.wecom.externalcontact import text_body
from bot.wecom.models import Text, WeComResponse
from bot.wecom.moment_models import (
    AddMomentTaskResult,
    MomentAttachment,
    MomentIdRequest,
    MomentTaskListRequest,
    MomentTaskPage,
    MomentTaskRequest,
    MomentTaskResult,
    MomentVisibleRange,
)
from bot.wecom.resource import Resource, build, require


class MomentAPI(Resource):
    """`client.moment`: `externalcontact/add_moment_task` and its companions."""

    async def add_moment_task(
        self,
        *,
        text: str | Text | Mapping[str, Any] | None = None,
        attachments: Sequence[MomentAttachment | Mapping[str, Any]] = (),
        visible_range: MomentVisibleRange | Mapping[str, Any],
    ) -> AddMomentTaskResult:
        """Create a moments publish task (95094); returns the creation job's id.

        `attachments`: up to 9 images, or one video, or one link whose cover is a
        `media_id` from `client.media.upload_attachment`. `visible_range` must name the
        senders (`sender_list.user_list`); `external_contact_list.tag_list` limits the
        customers who see it to those with any of these corp tags.

        Not idempotent: a timeout raises OutcomeUnknown, and creating it again may post
        the same moment twice.
        """
        path = "externalcontact/add_moment_task"
        body = build(
            MomentTaskRequest,
            path,
            text=text_body(text),
            attachments=list(attachments) or None,
            visible_range=visible_range,
        )
        return await self._client.call(
            "POST", path, AddMomentTaskResult, json=body.to_body(), idempotent=False
        )

    async def get_moment_task_result(self, jobid: str) -> MomentTaskResult:
        """The creation job's status and, once done (status 3), its outcome (95095)."""
        path = "externalcontact/get_moment_task_result"
        require(path, jobid=jobid)
        return await self._client.call(
            "GET", path, MomentTaskResult, params={"jobid": jobid}, idempotent=True
        )

    async def get_moment_task(
        self, moment_id: str, *, cursor: str | None = None, limit: int | None = None
    ) -> MomentTaskPage:
        """Which members asked to publish a corp moment have published it, one page."""
        path = "externalcontact/get_moment_task"
        body = build(MomentTaskListRequest, path, moment_id=moment_id, cursor=cursor, limit=limit)
        return await self._client.call(
            "POST", path, MomentTaskPage, json=body.to_body(), idempotent=True
        )

    async def cancel_moment_task(self, moment_id: str) -> WeComResponse:
        """Stop a corp moment that members have not all published yet."""
        path = "externalcontact/cancel_moment_task"
        body = build(MomentIdRequest, path, moment_id=moment_id)
        return await self._client.call(
            "POST", path, WeComResponse, json=body.to_body(), idempotent=True
        )


__all__ = ["MomentAPI"]
