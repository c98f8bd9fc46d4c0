"""The records a simulated corp holds: members, customers, tags, groups, tasks, messages."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

ChatType = Literal["single", "group"]

# Per-member task status in get_groupmsg_task.
TASK_UNSENT = 0
TASK_SENT = 2
# Per-recipient status in get_groupmsg_send_result.
SEND_PENDING = 0
SEND_OK = 1
SEND_NOT_FRIEND = 2
SEND_CAPPED = 3

# add_way values from externalcontact/get (92114).
ADD_WAY_QR = 1
ADD_WAY_SEARCH_MOBILE = 2
ADD_WAY_GROUP_CHAT = 4
ADD_WAY_CUSTOMER_LINK = 16

# groupchat/get join_scene; the callback's JoinScene folds 1 and 2 into 0.
JOIN_DIRECT_INVITE = 1
JOIN_INVITE_LINK = 2
JOIN_QR_CODE = 3


@dataclass
class Member:
    """A corp member (员工); `follow_enabled` means customer-contact is switched on."""

    userid: str
    name: str
    follow_enabled: bool = True
    visible: bool = True


@dataclass
class Customer:
    """An external contact; type 1 is a WeChat user, type 2 a WeCom user of another corp."""

    external_userid: str
    name: str
    type: int = 1
    gender: int = 0
    unionid: str | None = None
    corp_name: str | None = None
    avatar: str = ""

    def as_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "external_userid": self.external_userid,
            "name": self.name,
            "avatar": self.avatar,
            "type": self.type,
            "gender": self.gender,
        }
        if self.type == 2 and self.corp_name:
            data["corp_name"] = self.corp_name
            data["corp_full_name"] = self.corp_name
        if self.unionid:
            data["unionid"] = self.unionid
        return data


@dataclass
class FollowRelation:
    """One member following one customer, with the member's private view of them."""

    userid: str
    external_userid: str
    createtime: int
    remark: str = ""
    description: str = ""
    remark_corp_name: str = ""
    remark_mobiles: list[str] = field(default_factory=list)
    tag_ids: list[str] = field(default_factory=list)
    add_way: int = ADD_WAY_QR
    state: str = ""
    oper_userid: str = ""
    alive: bool = True
    deleted_at: int | None = None
    # The customer deleted the member (del_follow_user): the member still lists them, but
    # mass-sends to them fail with status 2.
    customer_deleted: bool = False
    # WeCom hands a mass-send to the member who last talked to the customer.
    last_interaction: int = 0
    # Exact clock time of the add, for the read-after-add lag (createtime is whole seconds).
    added_at: float = 0.0


@dataclass
class CorpTag:
    """A corp tag (企业标签); `created_by_agent` None means an admin made it in the console."""

    tag_id: str
    group_id: str
    name: str
    order: int
    create_time: int
    created_by_agent: int | None = None
    deleted: bool = False


@dataclass
class TagGroup:
    """A corp tag group; an app may only edit or delete groups and tags it created."""

    group_id: str
    name: str
    order: int
    create_time: int
    created_by_agent: int | None = None
    deleted: bool = False


@dataclass
class GroupMember:
    """One row of a customer group's member_list (type 1 member, 2 external contact)."""

    userid: str
    type: int
    join_time: int
    join_scene: int
    name: str
    invitor: str | None = None
    group_nickname: str = ""
    unionid: str | None = None
    state: str = ""


@dataclass
class CustomerGroup:
    """A customer group (客户群); `member_version` changes on every membership change."""

    chat_id: str
    name: str
    owner: str
    create_time: int
    notice: str = ""
    members: list[GroupMember] = field(default_factory=list)
    admins: list[str] = field(default_factory=list)
    member_version: str = ""
    status: int = 0
    dismissed: bool = False

    def member(self, userid: str) -> GroupMember | None:
        return next((m for m in self.members if m.userid == userid), None)


@dataclass
class Recipient:
    """One recipient of a mass-send (an external_userid or a chat_id) and its status."""

    target: str
    userid: str
    status: int = SEND_PENDING
    send_time: int | None = None


@dataclass
class MemberTask:
    """A member's share of a mass-send task: confirmed (2) or not yet (0)."""

    userid: str
    status: int = TASK_UNSENT
    send_time: int | None = None


@dataclass
class MassTask:
    """A mass-send task (客户群发) created through add_msg_template."""

    msgid: str
    chat_type: ChatType
    create_time: int
    text: str
    attachments: list[dict[str, Any]]
    sender: str | None
    creator: str | None
    create_type: int
    tasks: dict[str, MemberTask] = field(default_factory=dict)
    recipients: list[Recipient] = field(default_factory=list)
    reminders: list[int] = field(default_factory=list)
    cancelled: bool = False
    allow_select: bool = False


@dataclass
class WelcomeCode:
    """A welcome_code from an add-contact event: usable once, within a short window."""

    code: str
    userid: str
    external_userid: str
    issued_at: int
    used_at: int | None = None


@dataclass
class WelcomeMessage:
    """A welcome message the app sent with send_welcome_msg."""

    code: str
    userid: str
    external_userid: str
    text: str
    attachments: list[dict[str, Any]]
    sent_at: int


@dataclass
class AppMessage:
    """A message/send call: who got it, who had it dropped by the per-member cap."""

    msgid: str
    agentid: int
    msgtype: str
    content: dict[str, Any]
    sent_at: int
    delivered_to: list[str] = field(default_factory=list)
    dropped_for: list[str] = field(default_factory=list)
    duplicate_for: list[str] = field(default_factory=list)
    response_code: str | None = None
    task_id: str | None = None


@dataclass
class ResponseCode:
    """A template-card response_code: good for one update_template_card within 72 h."""

    code: str
    task_id: str
    issued_at: int
    used_at: int | None = None


@dataclass
class Card:
    """A template card as members see it, keyed by its task_id."""

    task_id: str
    card_type: str
    msgid: str
    recipients: list[str]
    body: dict[str, Any]
    replaced_name: str | None = None
    clicks: list[tuple[str, str, int]] = field(default_factory=list)

    def button_keys(self) -> set[str]:
        keys = {str(b.get("key", "")) for b in self.body.get("button_list", []) or []}
        for field_name in ("checkbox", "select_list", "button_selection"):
            block = self.body.get(field_name)
            if isinstance(block, dict):
                keys.add(str(block.get("question_key", "")))
        submit = self.body.get("submit_button")
        if isinstance(submit, dict):
            keys.add(str(submit.get("key", "")))
        action_menu = self.body.get("action_menu")
        if isinstance(action_menu, dict):
            keys.update(str(a.get("key", "")) for a in action_menu.get("action_list", []) or [])
        keys.discard("")
        return keys


@dataclass
class Media:
    """A temporary media file from media/upload, valid for three days."""

    media_id: str
    type: str
    filename: str
    size: int
    created_at: int


@dataclass
class Breach:
    """A limit the bot ran into: API quota, dropped app message, reminder cap, late code."""

    kind: str
    at: int
    detail: dict[str, Any]


@dataclass
class CallRecord:
    """One API call as the sandbox saw it."""

    seq: int
    at: float
    method: str
    path: str
    query: dict[str, str]
    body: Any
    errcode: int
    fault: str | None = None
    known: bool = True


@dataclass
class PendingCallback:
    """A callback WeCom owes the bot: the plaintext XML and what it is about."""

    seq: int
    xml: str
    event: str
    change_type: str
    created_at: int
    agent_id: str = ""


# get_moment_task_result `status`: the creation job started, is running, is done.
MOMENT_JOB_STARTED = 1
MOMENT_JOB_RUNNING = 2
MOMENT_JOB_DONE = 3
# Seconds after add_moment_task at which the job reports 2, then 3.
MOMENT_JOB_RUNNING_AFTER = 1.0
MOMENT_JOB_DONE_AFTER = 3.0


@dataclass
class AttachmentMedia(Media):
    """A file from media/upload_attachment (1 moments, 2 product albums)."""

    attachment_type: int = 1


@dataclass
class MomentJob:
    """The asynchronous creation job behind one add_moment_task call.

    The outcome is settled when the call is made and shown once the job reports done:
    `moment_id` (None when the job failed with `errcode`), and the senders and tags WeCom
    refused.
    """

    jobid: str
    created_at: float
    errcode: int = 0
    moment_id: str | None = None
    invalid_users: list[str] = field(default_factory=list)
    invalid_departments: list[int] = field(default_factory=list)
    invalid_tags: list[str] = field(default_factory=list)


@dataclass
class Moment:
    """A corp moment (企业发表): who is asked to publish it and to which customers' tags.

    `tag_ids` empty means every customer of the senders sees it. `published` maps each
    member who confirmed it in the client to when they did.
    """

    moment_id: str
    jobid: str
    create_time: int
    text: str
    attachments: list[dict[str, Any]]
    senders: list[str]
    tag_ids: list[str]
    create_type: int = 0
    cancelled: bool = False
    published: dict[str, int] = field(default_factory=dict)
