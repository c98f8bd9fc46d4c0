"""Pydantic models for WeCom requests (strict, checked before sending) and responses (lenient)."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# Limits WeCom documents; checked client-side so a bad request fails with a clear message
# instead of a WeCom errcode after a network round trip (and a quota unit).
MASS_SEND_MAX_CUSTOMERS = 10_000
MASS_SEND_MAX_CHATS = 2_000
MASS_SEND_TEXT_MAX_BYTES = 4_000
MAX_ATTACHMENTS = 9
APP_TEXT_MAX_BYTES = 2_048
APP_MARKDOWN_MAX_BYTES = 2_048
APP_MAX_USERS = 1_000
APP_MAX_PARTIES = 100
APP_MAX_TAGS = 100
DUPLICATE_CHECK_MAX_SECONDS = 4 * 3600
TASK_ID_PATTERN = re.compile(r"^[A-Za-z0-9_\-@]{1,128}$")


def utf8_len(text: str) -> int:
    """Length in UTF-8 bytes, the unit WeCom's content limits use."""
    return len(text.encode("utf-8"))


def check_bytes(field: str, text: str, limit: int) -> None:
    """Raise ValueError if `text` is over `limit` UTF-8 bytes."""
    size = utf8_len(text)
    if size > limit:
        raise ValueError(f"{field} is {size} bytes; WeCom allows at most {limit}")


# --- bases -------------------------------------------------------------------------------


class WeComModel(BaseModel):
    """A part of a WeCom response: unknown fields are kept, so new ones never break parsing."""

    model_config = ConfigDict(extra="allow")


class WeComResponse(WeComModel):
    """Every WeCom answer carries errcode and errmsg (0 and "ok" on success)."""

    errcode: int = 0
    errmsg: str = "ok"


class RequestModel(BaseModel):
    """A request body the bot builds: unknown fields are a bug, so they are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def to_body(self) -> dict[str, Any]:
        """The JSON body, without the fields left unset."""
        return self.model_dump(mode="json", exclude_none=True)


# --- token -------------------------------------------------------------------------------


class AccessToken(WeComResponse):
    """`gettoken` answer (91039)."""

    access_token: str
    expires_in: int = 7200


# --- external contacts -------------------------------------------------------------------


class ExternalContact(WeComModel):
    """A customer as WeCom describes them."""

    external_userid: str
    name: str = ""
    type: int = 0  # 1 WeChat user, 2 WeCom user
    gender: int = 0
    avatar: str = ""
    position: str | None = None
    corp_name: str | None = None
    corp_full_name: str | None = None
    unionid: str | None = None
    external_profile: dict[str, Any] | None = None


class FollowUserTag(WeComModel):
    """A tag a member put on the customer (type 1 corp tag, 2 personal, 3 rule-group)."""

    group_name: str = ""
    tag_name: str = ""
    type: int = 1
    tag_id: str | None = None


class FollowUser(WeComModel):
    """One member's relationship with the customer, from `externalcontact/get`."""

    userid: str
    remark: str = ""
    description: str = ""
    createtime: int = 0
    tags: list[FollowUserTag] = Field(default_factory=list)
    remark_corp_name: str | None = None
    remark_mobiles: list[str] = Field(default_factory=list)
    add_way: int | None = None
    state: str | None = None
    oper_userid: str | None = None


class ExternalContactDetail(WeComResponse):
    """`externalcontact/get`: the customer and (a page of) the members following them."""

    external_contact: ExternalContact
    follow_user: list[FollowUser] = Field(default_factory=list)
    next_cursor: str = ""


class ExternalUserIdList(WeComResponse):
    """`externalcontact/list`: one member's customers."""

    external_userid: list[str] = Field(default_factory=list)


class FollowUserList(WeComResponse):
    """`externalcontact/get_follow_user_list`: members with customer contact enabled."""

    follow_user: list[str] = Field(default_factory=list)


class FollowInfo(WeComModel):
    """One member's relationship with the customer, from `batch/get_by_user`."""

    userid: str
    remark: str = ""
    description: str = ""
    createtime: int = 0
    tag_id: list[str] = Field(default_factory=list)
    remark_corp_name: str | None = None
    remark_mobiles: list[str] = Field(default_factory=list)
    add_way: int | None = None
    state: str | None = None
    oper_userid: str | None = None


class ContactWithFollowInfo(WeComModel):
    """One row of `batch/get_by_user`."""

    external_contact: ExternalContact
    follow_info: FollowInfo


class BatchGetByUserRequest(RequestModel):
    """`externalcontact/batch/get_by_user` body."""

    userid_list: list[str] = Field(min_length=1, max_length=100)
    cursor: str | None = None
    limit: int = Field(50, ge=1, le=100)


class BatchContactPage(WeComResponse):
    """`externalcontact/batch/get_by_user`: a page of customers of the given members."""

    external_contact_list: list[ContactWithFollowInfo] = Field(default_factory=list)
    next_cursor: str = ""


class RemarkRequest(RequestModel):
    """`externalcontact/remark` body."""

    userid: str = Field(min_length=1)
    external_userid: str = Field(min_length=1)
    remark: str | None = Field(None, max_length=20)
    description: str | None = Field(None, max_length=150)
    remark_company: str | None = Field(None, max_length=20)
    remark_mobiles: list[str] | None = None
    remark_pic_mediaid: str | None = None


# --- corp tags ---------------------------------------------------------------------------


class CorpTag(WeComModel):
    """A corp tag."""

    id: str
    name: str
    create_time: int = 0
    order: int = 0
    deleted: bool = False


class CorpTagGroup(WeComModel):
    """A corp tag group and its tags."""

    group_id: str
    group_name: str = ""
    create_time: int = 0
    order: int = 0
    deleted: bool = False
    tag: list[CorpTag] = Field(default_factory=list)


class CorpTagList(WeComResponse):
    """`externalcontact/get_corp_tag_list`."""

    tag_group: list[CorpTagGroup] = Field(default_factory=list)


class CorpTagGroupResult(WeComResponse):
    """`externalcontact/add_corp_tag`: the group with the tags just created."""

    tag_group: CorpTagGroup


class CorpTagFilter(RequestModel):
    """`externalcontact/get_corp_tag_list` body (both empty: every tag)."""

    tag_id: list[str] | None = None
    group_id: list[str] | None = None


class NewCorpTag(RequestModel):
    """A tag to create."""

    name: str = Field(min_length=1, max_length=30)
    order: int | None = None


class AddCorpTagRequest(RequestModel):
    """`externalcontact/add_corp_tag` body."""

    group_id: str | None = None
    group_name: str | None = Field(None, min_length=1, max_length=30)
    order: int | None = None
    tag: list[NewCorpTag] = Field(min_length=1)
    agentid: int | None = None

    @model_validator(mode="after")
    def _group_named(self) -> Self:
        if not self.group_id and not self.group_name:
            raise ValueError("give group_id (existing group) or group_name (new group)")
        return self


class EditCorpTagRequest(RequestModel):
    """`externalcontact/edit_corp_tag` body (a tag id or a group id)."""

    id: str = Field(min_length=1)
    name: str | None = Field(None, min_length=1, max_length=30)
    order: int | None = None
    agentid: int | None = None


class DelCorpTagRequest(RequestModel):
    """`externalcontact/del_corp_tag` body."""

    tag_id: list[str] | None = None
    group_id: list[str] | None = None
    agentid: int | None = None

    @model_validator(mode="after")
    def _something_to_delete(self) -> Self:
        if not self.tag_id and not self.group_id:
            raise ValueError("tag_id and group_id cannot both be empty")
        return self


class MarkTagRequest(RequestModel):
    """`externalcontact/mark_tag` body."""

    userid: str = Field(min_length=1)
    external_userid: str = Field(min_length=1)
    add_tag: list[str] = Field(default_factory=list)
    remove_tag: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _something_to_change(self) -> Self:
        if not self.add_tag and not self.remove_tag:
            raise ValueError("add_tag and remove_tag cannot both be empty")
        return self


# --- customer groups ---------------------------------------------------------------------


class OwnerFilter(RequestModel):
    """Restrict `groupchat/list` to groups owned by these members."""

    userid_list: list[str] = Field(min_length=1, max_length=100)


class GroupChatListRequest(RequestModel):
    """`externalcontact/groupchat/list` body."""

    status_filter: int = Field(0, ge=0, le=3)
    owner_filter: OwnerFilter | None = None
    cursor: str | None = None
    limit: int = Field(1000, ge=1, le=1000)


class GroupChatRef(WeComModel):
    """A group in `groupchat/list` (status 0 normal, 1 owner resigned, 2/3 inheriting/ed)."""

    chat_id: str
    status: int = 0


class GroupChatPage(WeComResponse):
    """`externalcontact/groupchat/list`."""

    group_chat_list: list[GroupChatRef] = Field(default_factory=list)
    next_cursor: str = ""


class GroupChatGetRequest(RequestModel):
    """`externalcontact/groupchat/get` body."""

    chat_id: str = Field(min_length=1)
    need_name: int = Field(0, ge=0, le=1)


class Invitor(WeComModel):
    """Who invited a group member."""

    userid: str = ""


class GroupMember(WeComModel):
    """A member of a customer group (type 1 WeCom member, 2 external contact)."""

    userid: str
    type: int
    join_time: int = 0
    join_scene: int = 0
    invitor: Invitor | None = None
    group_nickname: str = ""
    name: str = ""
    unionid: str | None = None
    state: str | None = None


class GroupAdmin(WeComModel):
    """A group admin."""

    userid: str


class GroupChat(WeComModel):
    """A customer group with its members."""

    chat_id: str
    name: str = ""
    owner: str = ""
    create_time: int = 0
    notice: str = ""
    member_list: list[GroupMember] = Field(default_factory=list)
    admin_list: list[GroupAdmin] = Field(default_factory=list)
    member_version: str = ""


class GroupChatDetail(WeComResponse):
    """`externalcontact/groupchat/get`."""

    group_chat: GroupChat


# --- attachments (mass-send and welcome) -------------------------------------------------


class Text(RequestModel):
    """A text body."""

    content: str


class ImageRef(RequestModel):
    """An image: an uploaded media_id or a picture URL (exactly one)."""

    media_id: str | None = None
    pic_url: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if bool(self.media_id) == bool(self.pic_url):
            raise ValueError("give exactly one of media_id or pic_url")
        return self


class LinkRef(RequestModel):
    """A link card."""

    title: str = Field(min_length=1)
    url: str = Field(min_length=1)
    picurl: str | None = None
    desc: str | None = None


class MiniprogramRef(RequestModel):
    """A mini-program card."""

    title: str = Field(min_length=1)
    pic_media_id: str = Field(min_length=1)
    appid: str = Field(min_length=1)
    page: str = Field(min_length=1)


class MediaRef(RequestModel):
    """An uploaded video or file."""

    media_id: str = Field(min_length=1)


class ImageAttachment(RequestModel):
    """Image attachment."""

    msgtype: Literal["image"] = "image"
    image: ImageRef


class LinkAttachment(RequestModel):
    """Link attachment."""

    msgtype: Literal["link"] = "link"
    link: LinkRef


class MiniprogramAttachment(RequestModel):
    """Mini-program attachment."""

    msgtype: Literal["miniprogram"] = "miniprogram"
    miniprogram: MiniprogramRef


class VideoAttachment(RequestModel):
    """Video attachment."""

    msgtype: Literal["video"] = "video"
    video: MediaRef


class FileAttachment(RequestModel):
    """File attachment."""

    msgtype: Literal["file"] = "file"
    file: MediaRef


Attachment = Annotated[
    ImageAttachment | LinkAttachment | MiniprogramAttachment | VideoAttachment | FileAttachment,
    Field(discriminator="msgtype"),
]


class TagFilterGroup(RequestModel):
    """One group of corp tag ids in a mass-send tag filter."""

    tag_list: list[str] = Field(min_length=1)


class TagFilter(RequestModel):
    """Restrict a mass-send to customers with these corp tags."""

    group_list: list[TagFilterGroup] = Field(min_length=1)


# --- mass-send ---------------------------------------------------------------------------


class MsgTemplate(RequestModel):
    """`externalcontact/add_msg_template` body (92135)."""

    chat_type: Literal["single", "group"] = "single"
    external_userid: list[str] | None = Field(None, max_length=MASS_SEND_MAX_CUSTOMERS)
    chat_id_list: list[str] | None = Field(None, max_length=MASS_SEND_MAX_CHATS)
    tag_filter: TagFilter | None = None
    sender: str | None = None
    allow_select: bool | None = None
    text: Text | None = None
    attachments: list[Attachment] | None = Field(None, max_length=MAX_ATTACHMENTS)

    @model_validator(mode="after")
    def _shape(self) -> Self:
        if self.text is not None:
            check_bytes("text.content", self.text.content, MASS_SEND_TEXT_MAX_BYTES)
        if (self.text is None or not self.text.content) and not self.attachments:
            raise ValueError("a mass-send needs text or at least one attachment")
        if self.chat_type == "group":
            if not self.sender:
                raise ValueError("sender is required when chat_type is 'group'")
            if self.external_userid is not None:
                raise ValueError("external_userid is only for chat_type 'single'")
        else:
            if self.chat_id_list is not None or self.allow_select is not None:
                raise ValueError("chat_id_list and allow_select are only for chat_type 'group'")
            # An empty list or no recipients at all makes WeCom target every customer
            # (of the sender, or of the corp): never do that by accident.
            if self.external_userid is not None and not self.external_userid:
                raise ValueError("external_userid is empty; leave it out to use sender/tag_filter")
            if self.external_userid is None and not self.sender:
                raise ValueError("give external_userid or sender: refusing a corp-wide mass-send")
        if self.chat_id_list is not None and not self.chat_id_list:
            raise ValueError("chat_id_list is empty; leave it out to target all sender's groups")
        return self


class AddMsgTemplateResult(WeComResponse):
    """`externalcontact/add_msg_template`: the task id and recipients that cannot receive."""

    msgid: str = ""
    fail_list: list[str] = Field(default_factory=list)


class MsgIdRequest(RequestModel):
    """A body naming one mass-send task."""

    msgid: str = Field(min_length=1)


class GroupMsgListRequest(RequestModel):
    """`externalcontact/get_groupmsg_list_v2` body (span at most one month)."""

    chat_type: Literal["single", "group"] = "single"
    start_time: int = Field(ge=0)
    end_time: int = Field(ge=0)
    creator: str | None = None
    filter_type: int | None = Field(None, ge=0, le=2)
    limit: int | None = Field(None, ge=1, le=100)
    cursor: str | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.end_time < self.start_time:
            raise ValueError("end_time is before start_time")
        return self


class GroupMsgText(WeComModel):
    """The text of a recorded mass-send."""

    content: str = ""


class GroupMsg(WeComModel):
    """A recorded mass-send (create_type 0 corp, 1 member)."""

    msgid: str
    creator: str = ""
    create_time: int = 0
    create_type: int = 0
    text: GroupMsgText | None = None
    attachments: list[dict[str, Any]] = Field(default_factory=list)


class GroupMsgPage(WeComResponse):
    """`externalcontact/get_groupmsg_list_v2`."""

    group_msg_list: list[GroupMsg] = Field(default_factory=list)
    next_cursor: str = ""


class GroupMsgTaskRequest(RequestModel):
    """`externalcontact/get_groupmsg_task` body."""

    msgid: str = Field(min_length=1)
    limit: int | None = Field(None, ge=1, le=1000)
    cursor: str | None = None


class GroupMsgTask(WeComModel):
    """A member's part of a mass-send (status 0 not sent, 2 sent)."""

    userid: str
    status: int = 0
    send_time: int | None = None


class GroupMsgTaskPage(WeComResponse):
    """`externalcontact/get_groupmsg_task`."""

    task_list: list[GroupMsgTask] = Field(default_factory=list)
    next_cursor: str = ""


class GroupMsgSendResultRequest(RequestModel):
    """`externalcontact/get_groupmsg_send_result` body."""

    msgid: str = Field(min_length=1)
    userid: str = Field(min_length=1)
    limit: int | None = Field(None, ge=1, le=1000)
    cursor: str | None = None


class GroupMsgSendResult(WeComModel):
    """Delivery to one customer or group: status 0 not sent, 1 sent, 2 not a friend,
    3 the customer already received another mass-send (the receive cap)."""

    external_userid: str | None = None
    chat_id: str | None = None
    userid: str = ""
    status: int = 0
    send_time: int | None = None


class GroupMsgSendResultPage(WeComResponse):
    """`externalcontact/get_groupmsg_send_result`."""

    send_list: list[GroupMsgSendResult] = Field(default_factory=list)
    next_cursor: str = ""


class WelcomeMsgRequest(RequestModel):
    """`externalcontact/send_welcome_msg` body (92137)."""

    welcome_code: str = Field(min_length=1)
    text: Text | None = None
    attachments: list[Attachment] | None = Field(None, max_length=MAX_ATTACHMENTS)

    @model_validator(mode="after")
    def _shape(self) -> Self:
        if self.text is not None:
            check_bytes("text.content", self.text.content, MASS_SEND_TEXT_MAX_BYTES)
        if (self.text is None or not self.text.content) and not self.attachments:
            raise ValueError("a welcome message needs text or at least one attachment")
        return self


# --- app messages ------------------------------------------------------------------------

CardType = Literal[
    "text_notice", "news_notice", "button_interaction", "vote_interaction", "multiple_interaction"
]


class TemplateCard(RequestModel):
    """A template card (90236/94888); only the fields the client checks are typed, the rest
    pass through as given."""

    model_config = ConfigDict(extra="allow", frozen=True)

    card_type: CardType
    task_id: str | None = None
    card_action: dict[str, Any] | None = None

    @field_validator("task_id")
    @classmethod
    def _task_id_shape(cls, value: str | None) -> str | None:
        if value is not None and not TASK_ID_PATTERN.match(value):
            raise ValueError("task_id must be 1-128 of letters, digits and _-@")
        return value

    @model_validator(mode="after")
    def _required_by_type(self) -> Self:
        if self.card_type in ("text_notice", "news_notice") and not self.card_action:
            raise ValueError(f"{self.card_type} cards need card_action (WeCom 42045)")
        if self.card_type.endswith("_interaction") and not self.task_id:
            raise ValueError(f"{self.card_type} cards need a task_id")
        return self


class AppMessageRequest(RequestModel):
    """The envelope of `message/send` (90236); the content goes under the msgtype key."""

    touser: list[str] | None = Field(None, max_length=APP_MAX_USERS)
    toparty: list[str] | None = Field(None, max_length=APP_MAX_PARTIES)
    totag: list[str] | None = Field(None, max_length=APP_MAX_TAGS)
    msgtype: str = Field(min_length=1)
    agentid: int
    safe: Literal[0, 1, 2] | None = None
    enable_id_trans: Literal[0, 1] | None = None
    enable_duplicate_check: Literal[0, 1] | None = None
    duplicate_check_interval: int | None = Field(None, ge=1, le=DUPLICATE_CHECK_MAX_SECONDS)

    @model_validator(mode="after")
    def _has_recipient(self) -> Self:
        if not (self.touser or self.toparty or self.totag):
            raise ValueError("give at least one of touser, toparty, totag")
        return self

    def to_body(self) -> dict[str, Any]:
        body = super().to_body()
        # WeCom takes recipients as one '|'-joined string each.
        for key in ("touser", "toparty", "totag"):
            if key in body:
                body[key] = "|".join(body[key])
        return body


class MessageSendResult(WeComResponse):
    """`message/send`: who could not be reached, the message id, and a card's response_code."""

    invaliduser: str = ""
    invalidparty: str = ""
    invalidtag: str = ""
    unlicenseduser: str = ""
    msgid: str = ""
    response_code: str | None = None

    @property
    def invalid_users(self) -> list[str]:
        """`invaliduser` split into userids."""
        return [u for u in self.invaliduser.split("|") if u]


class ReplaceButton(RequestModel):
    """Replace the card's buttons with one greyed-out label."""

    replace_name: str = Field(min_length=1)


class UpdateTemplateCardRequest(RequestModel):
    """`message/update_template_card` body (94888)."""

    userids: list[str] | None = Field(None, max_length=APP_MAX_USERS)
    partyids: list[int] | None = Field(None, max_length=APP_MAX_PARTIES)
    tagids: list[int] | None = Field(None, max_length=APP_MAX_TAGS)
    atall: Literal[0, 1] | None = None
    agentid: int
    response_code: str = Field(min_length=1)
    enable_id_trans: Literal[0, 1] | None = None
    button: ReplaceButton | None = None
    template_card: TemplateCard | None = None

    @model_validator(mode="after")
    def _one_update(self) -> Self:
        if (self.button is None) == (self.template_card is None):
            raise ValueError("give exactly one of button (replace_name) or template_card")
        return self


class UpdateTemplateCardResult(WeComResponse):
    """`message/update_template_card`."""

    invaliduser: list[str] = Field(default_factory=list)


# --- media -------------------------------------------------------------------------------

MediaType = Literal["image", "voice", "video", "file"]
MEDIA_MAX_BYTES: dict[str, int] = {
    "image": 10 * 1024 * 1024,
    "voice": 2 * 1024 * 1024,
    "video": 10 * 1024 * 1024,
    "file": 20 * 1024 * 1024,
}
MEDIA_MIN_BYTES = 5


class MediaUploadResult(WeComResponse):
    """`media/upload`: a temporary media id, valid for three days."""

    type: str = ""
    media_id: str
    created_at: int = 0
