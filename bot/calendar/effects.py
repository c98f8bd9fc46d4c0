"""The outbox effects of the theme calendar: WeCom mass-send tasks and moments tasks.

Payload contracts (one outbox row per task; `key` is the row's idempotency key):

- `mass_task`: {"key", "run_id": int, "chat_type": "single" | "group", "sender": userid,
  "external_userid": [...] (single) or "chat_id_list": [...] (group), "text": str,
  "attachments": [WeCom attachment JSON as add_msg_template takes it]}.
  Result: {"msgid", "fail_list"} (plus "reconciled": True when found by `reconcile`).
- `moment_task`: {"key", "run_id": int, "chat_type": "moment", "senders": [userids],
  "tag_ids": [WeCom corp tag ids; empty = every customer of the senders], "text": str,
  "attachments": [add_moment_task attachment JSON: images or a video by media_id, or a
  link {title, url, media_id} whose cover comes from media/upload_attachment]}.
  Result: {"jobid"}.

Both record the task with `bot.calendar.records.record_task_created` in the transaction
that marks the row sent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal

from bot.calendar.records import (
    MASS_TASK,
    MOMENT_TASK,
    record_task_created,
    release_task_not_created,
    task_targets,
)
from bot.outbox.effects import Effect
from bot.wecom.errors import InvalidRequest

if TYPE_CHECKING:
    from bot.outbox.queue import Claimed
    from bot.wecom.client import WeComClient
    from bot.wecom.models import GroupMsg

ADD_MSG_TEMPLATE = "externalcontact/add_msg_template"
ADD_MOMENT_TASK = "externalcontact/add_moment_task"

# How far before the row was queued a task may have been created (clock differences
# between this host and WeCom), and the longest span get_groupmsg_list_v2 accepts.
RECONCILE_SLACK = timedelta(minutes=5)
LIST_SPAN = timedelta(days=30)
LIST_PAGE = 100
DETAIL_PAGE = 1000

ChatType = Literal["single", "group"]


def _chat_type(payload: Mapping[str, Any]) -> ChatType:
    """The payload's chat type; a malformed row fails for good (InvalidRequest)."""
    chat_type = payload.get("chat_type")
    if chat_type not in ("single", "group"):
        raise InvalidRequest(ADD_MSG_TEMPLATE, f"chat_type must be single or group: {chat_type!r}")
    return "group" if chat_type == "group" else "single"


# --- mass_task -----------------------------------------------------------------------------


async def create_mass_task(client: WeComClient, payload: dict[str, Any]) -> dict[str, Any]:
    """`add_msg_template` for one sender and its customers (single) or groups (group)."""
    chat_type = _chat_type(payload)
    sender = payload.get("sender")
    if not sender:
        # Without a sender WeCom hands each customer to whoever last talked to them.
        raise InvalidRequest(ADD_MSG_TEMPLATE, "sender: a calendar task names its sender")
    targets = task_targets(payload)
    result = await client.groupmsg.add_msg_template(
        chat_type=chat_type,
        external_userid=targets if chat_type == "single" else None,
        chat_id_list=targets if chat_type == "group" else None,
        sender=sender,
        text=payload.get("text") or None,
        attachments=payload.get("attachments") or (),
    )
    return {"msgid": result.msgid, "fail_list": list(result.fail_list)}


async def reconcile_mass_task(client: WeComClient, claimed: Claimed) -> dict[str, Any] | None:
    """Find the task an earlier attempt may have created before its answer was lost.

    add_msg_template is not idempotent, and a second task would spend the customers'
    receive caps twice. Candidates are the corp's API-made tasks (filter_type 0) of the
    same chat type created between the row's creation (less some slack) and now, with
    the same text and attachments; one is ours when the sender is among its members and
    every recipient it lists for them is one of the payload's targets. Returns the row's
    result (the targets WeCom did not take are its fail_list), or None when there is no
    such task, so the sender creates it.
    """
    payload = claimed.payload
    chat_type = _chat_type(payload)
    now = client.clock.now()
    start = max(claimed.created_at - RECONCILE_SLACK, now - LIST_SPAN)
    if start > now:
        start = now - RECONCILE_SLACK
    text = payload.get("text") or ""
    wanted = _fingerprint(payload.get("attachments") or [])
    targets = task_targets(payload)
    cursor: str | None = None
    while True:
        page = await client.groupmsg.get_groupmsg_list_v2(
            chat_type=chat_type,
            start_time=start,
            end_time=now,
            filter_type=0,
            limit=LIST_PAGE,
            cursor=cursor,
        )
        for record in page.group_msg_list:
            if not _same_content(record, text, wanted):
                continue
            reached = await _recipients_if_ours(client, record.msgid, payload.get("sender"))
            if reached and reached <= set(targets):
                fail_list = [t for t in dict.fromkeys(targets) if t not in reached]
                return {"msgid": record.msgid, "fail_list": fail_list, "reconciled": True}
        if not page.next_cursor:
            return None
        cursor = page.next_cursor


def _fingerprint(attachments: Sequence[Mapping[str, Any]]) -> list[tuple[str, ...]]:
    """What identifies each attachment: its type and the fields WeCom keeps verbatim
    (media ids and picture URLs may come back rewritten, so they are left out)."""
    keys: list[tuple[str, ...]] = []
    for attachment in attachments:
        msgtype = str(attachment.get("msgtype", ""))
        body = attachment.get(msgtype)
        fields: Mapping[str, Any] = body if isinstance(body, Mapping) else {}
        if msgtype == "link":
            keys.append((msgtype, str(fields.get("title", "")), str(fields.get("url", ""))))
        elif msgtype == "miniprogram":
            names = ("title", "appid", "page")
            keys.append((msgtype, *(str(fields.get(n, "")) for n in names)))
        else:
            keys.append((msgtype,))
    return keys


def _same_content(record: GroupMsg, text: str, wanted: list[tuple[str, ...]]) -> bool:
    content = record.text.content if record.text is not None else ""
    return content == text and _fingerprint(record.attachments) == wanted


async def _recipients_if_ours(client: WeComClient, msgid: str, sender: str | None) -> set[str]:
    """The customers or groups task `msgid` holds for `sender` (for every member when
    there is no sender); empty when the sender has no part in it."""
    members: list[str] = []
    cursor: str | None = None
    while True:
        tasks = await client.groupmsg.get_groupmsg_task(msgid, limit=DETAIL_PAGE, cursor=cursor)
        members.extend(t.userid for t in tasks.task_list)
        if not tasks.next_cursor:
            break
        cursor = tasks.next_cursor
    if sender is not None:
        if sender not in members:
            return set()
        members = [sender]
    reached: set[str] = set()
    for userid in dict.fromkeys(members):
        cursor = None
        while True:
            sent = await client.groupmsg.get_groupmsg_send_result(
                msgid, userid, limit=DETAIL_PAGE, cursor=cursor
            )
            for row in sent.send_list:
                target = row.external_userid or row.chat_id
                if target:
                    reached.add(target)
            if not sent.next_cursor:
                break
            cursor = sent.next_cursor
    return reached


# --- moment_task ---------------------------------------------------------------------------


async def create_moment_task(client: WeComClient, payload: dict[str, Any]) -> dict[str, Any]:
    """`add_moment_task` asking `senders` to publish to customers with `tag_ids`.

    Not reconciled: WeCom's moment records (get_moment_list) carry no jobid to match a
    row against, so a row whose outcome is unknown (a lost answer, a crash mid-call) is
    given up by the sender rather than posted a second time.
    """
    senders = list(payload.get("senders") or [])
    visible_range: dict[str, Any] = {"sender_list": {"user_list": senders}}
    tag_ids = list(payload.get("tag_ids") or [])
    if tag_ids:
        visible_range["external_contact_list"] = {"tag_list": tag_ids}
    result = await client.moment.add_moment_task(
        text=payload.get("text") or None,
        attachments=payload.get("attachments") or (),
        visible_range=visible_range,
    )
    return {"jobid": result.jobid}


def calendar_effects() -> list[Effect]:
    """The calendar's outbox kinds, for registration in the product's EffectRegistry."""
    return [
        Effect(
            kind=MASS_TASK,
            api_path=ADD_MSG_TEMPLATE,
            execute=create_mass_task,
            idempotent=False,
            reconcile=reconcile_mass_task,
            on_success=record_task_created,
            on_give_up=release_task_not_created,
        ),
        Effect(
            kind=MOMENT_TASK,
            api_path=ADD_MOMENT_TASK,
            execute=create_moment_task,
            idempotent=False,
            reconcile=None,
            on_success=record_task_created,
        ),
    ]


__all__ = [
    "MASS_TASK",
    "MOMENT_TASK",
    "calendar_effects",
    "create_mass_task",
    "create_moment_task",
    "reconcile_mass_task",
]
