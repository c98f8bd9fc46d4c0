"""Pydantic models for customer moments (客户朋友圈, 95094/96351) and `media/upload_attachment`.

Requests are strict and checked before sending; responses are lenient, like the rest of
`bot.wecom.models`.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal, Self

from pydantic import Field, field_validator, model_validator

from bot.wecom.models import RequestModel, Text, WeComModel, WeComResponse, check_bytes

# Limits the add_moment_task page documents.
MOMENT_TEXT_MAX_CHARS = 2_000
MOMENT_TEXT_MAX_BYTES = 4_000
MOMENT_MAX_IMAGES = 9
MOMENT_MAX_SENDERS = 100_000
MOMENT_LINK_TITLE_MAX_BYTES = 64

# get_moment_task_result `status`.
MOMENT_JOB_STARTED = 1
MOMENT_JOB_RUNNING = 2
MOMENT_JOB_DONE = 3

# media/upload_attachment `attachment_type`.
ATTACHMENT_MOMENTS: Final = 1
ATTACHMENT_PRODUCT_ALBUM: Final = 2
AttachmentType = Literal[1, 2]
AttachmentMediaType = Literal["image", "video"]


# --- add_moment_task ---------------------------------------------------------------------


class MomentMedia(RequestModel):
    """An image or video from `media/upload_attachment`.

    Not `bot.wecom.models.MediaRef`, though the JSON looks the same: a moment takes ids
    from media/upload_attachment only, a mass-send ids from media/upload.
    """

    media_id: str = Field(min_length=1)


class MomentLink(RequestModel):
    """A link card; WeCom needs an uploaded cover image (`media_id`), not a picture URL."""

    title: str | None = None
    url: str = Field(min_length=1)
    media_id: str = Field(min_length=1)

    @field_validator("title")
    @classmethod
    def _title_size(cls, value: str | None) -> str | None:
        if value is not None:
            check_bytes("link.title", value, MOMENT_LINK_TITLE_MAX_BYTES)
        return value


class MomentImageAttachment(RequestModel):
    """Image attachment of a moment."""

    msgtype: Literal["image"] = "image"
    image: MomentMedia


class MomentVideoAttachment(RequestModel):
    """Video attachment of a moment."""

    msgtype: Literal["video"] = "video"
    video: MomentMedia


class MomentLinkAttachment(RequestModel):
    """Link attachment of a moment."""

    msgtype: Literal["link"] = "link"
    link: MomentLink


MomentAttachment = Annotated[
    MomentImageAttachment | MomentVideoAttachment | MomentLinkAttachment,
    Field(discriminator="msgtype"),
]


class MomentSenderList(RequestModel):
    """Who is asked to publish: members and/or departments."""

    user_list: list[str] | None = Field(None, max_length=MOMENT_MAX_SENDERS)
    department_list: list[int] | None = None

    @model_validator(mode="after")
    def _someone(self) -> Self:
        if not self.user_list and not self.department_list:
            raise ValueError("user_list and department_list are both empty")
        return self


class MomentExternalContactList(RequestModel):
    """Which customers see the moment: those carrying any of these corp tags."""

    tag_list: list[str] = Field(min_length=1)


class MomentVisibleRange(RequestModel):
    """`visible_range` of add_moment_task."""

    sender_list: MomentSenderList | None = None
    external_contact_list: MomentExternalContactList | None = None

    @model_validator(mode="after")
    def _senders_named(self) -> Self:
        # Without sender_list WeCom asks every member in the app's scope to publish.
        if self.sender_list is None:
            raise ValueError("sender_list is required: refusing a task for every member")
        return self


class MomentTaskRequest(RequestModel):
    """`externalcontact/add_moment_task` body (95094)."""

    text: Text | None = None
    attachments: list[MomentAttachment] | None = None
    visible_range: MomentVisibleRange

    @model_validator(mode="after")
    def _shape(self) -> Self:
        content = self.text.content if self.text is not None else ""
        if len(content) > MOMENT_TEXT_MAX_CHARS:
            raise ValueError(
                f"text.content is {len(content)} characters; WeCom allows at most "
                f"{MOMENT_TEXT_MAX_CHARS}"
            )
        check_bytes("text.content", content, MOMENT_TEXT_MAX_BYTES)
        attachments = self.attachments or []
        if not content and not attachments:
            raise ValueError("a moment needs text or at least one attachment")
        kinds = {a.msgtype for a in attachments}
        if len(kinds) > 1:
            raise ValueError("attachments must be all images, one video or one link")
        if "image" in kinds and len(attachments) > MOMENT_MAX_IMAGES:
            raise ValueError(f"at most {MOMENT_MAX_IMAGES} images")
        if kinds & {"video", "link"} and len(attachments) > 1:
            raise ValueError(f"at most one {next(iter(kinds))}")
        return self


class AddMomentTaskResult(WeComResponse):
    """`externalcontact/add_moment_task`: the id of the asynchronous creation job."""

    jobid: str = Field(min_length=1)


# --- get_moment_task_result --------------------------------------------------------------


class MomentInvalidSenders(WeComModel):
    """Members and departments that do not exist or are outside the app's scope."""

    user_list: list[str] = Field(default_factory=list)
    department_list: list[int] = Field(default_factory=list)


class MomentInvalidCustomers(WeComModel):
    """Tags in `external_contact_list` that do not exist or are not corp tags."""

    tag_list: list[str] = Field(default_factory=list)


class MomentJobOutcome(WeComModel):
    """What the creation job ended with (valid once the status is 3)."""

    errcode: int = 0
    errmsg: str = "ok"
    moment_id: str = ""
    invalid_sender_list: MomentInvalidSenders = Field(default_factory=MomentInvalidSenders)
    invalid_external_contact_list: MomentInvalidCustomers = Field(
        default_factory=MomentInvalidCustomers
    )


class MomentTaskResult(WeComResponse):
    """`externalcontact/get_moment_task_result` (95095): 1 started, 2 running, 3 done."""

    status: int
    type: str = "add_moment_task"
    result: MomentJobOutcome | None = None

    @property
    def done(self) -> bool:
        return self.status == MOMENT_JOB_DONE


class MomentIdRequest(RequestModel):
    """A body naming one moment."""

    moment_id: str = Field(min_length=1)


# --- get_moment_task -----------------------------------------------------------------------

# get_moment_task: publish_status 0 = not published yet, 1 = published.
MOMENT_PUBLISHED: Final = 1


class MomentTaskListRequest(RequestModel):
    """`externalcontact/get_moment_task` body: one corp moment, paged (limit ≤ 1000)."""

    moment_id: str = Field(min_length=1)
    cursor: str | None = None
    limit: int | None = Field(None, ge=1, le=1000)


class MomentMemberTask(WeComModel):
    """Whether one member asked to publish a corp moment has done so."""

    userid: str
    publish_status: int = 0

    @property
    def published(self) -> bool:
        return self.publish_status == MOMENT_PUBLISHED


class MomentTaskPage(WeComResponse):
    """`externalcontact/get_moment_task`: the members' publish status, one page."""

    task_list: list[MomentMemberTask] = Field(default_factory=list)
    next_cursor: str = ""


__all__ = [
    "ATTACHMENT_MOMENTS",
    "ATTACHMENT_PRODUCT_ALBUM",
    "MOMENT_JOB_DONE",
    "MOMENT_JOB_RUNNING",
    "MOMENT_JOB_STARTED",
    "MOMENT_LINK_TITLE_MAX_BYTES",
    "MOMENT_MAX_IMAGES",
    "MOMENT_MAX_SENDERS",
    "MOMENT_PUBLISHED",
    "MOMENT_TEXT_MAX_BYTES",
    "MOMENT_TEXT_MAX_CHARS",
    "AddMomentTaskResult",
    "AttachmentMediaType",
    "AttachmentType",
    "MomentAttachment",
    "MomentExternalContactList",
    "MomentIdRequest",
    "MomentImageAttachment",
    "MomentInvalidCustomers",
    "MomentInvalidSenders",
    "MomentJobOutcome",
    "MomentLink",
    "MomentLinkAttachment",
    "MomentMedia",
    "MomentMemberTask",
    "MomentSenderList",
    "MomentTaskListRequest",
    "MomentTaskPage",
    "MomentTaskRequest",
    "MomentTaskResult",
    "MomentVideoAttachment",
    "MomentVisibleRange",
]
