"""Mass-send (客户群发, 92135): add_msg_template, remind, cancel and the v2 record APIs."""

# add_msg_template only creates a task; nothing reaches a customer until the member confirms
# it in the client (`Script.member_confirms_task`), which is when the receive cap applies.

from __future__ import annotations

from typing import Any

from bot.sandbox import errors
from bot.sandbox.endpoints.base import ApiRequest, Endpoint, Json, page, utf8_len
from bot.sandbox.errors import WeComError
from bot.sandbox.models import ChatType, FollowRelation, MassTask, MemberTask, Recipient
from bot.sandbox.world import SandboxWorld

ATTACHMENT_TYPES = {"image", "link", "miniprogram", "video", "file"}
MONTH_SECONDS = 31 * 86_400
DAY_SECONDS = 86_400


def _media_ok(world: SandboxWorld, media_id: object) -> bool:
    media = world.media.get(media_id) if isinstance(media_id, str) else None
    return media is not None and world.now() < media.created_at + world.limits.media_ttl


def check_content(req: ApiRequest, *, text_limit: int) -> tuple[str, list[Json]]:
    """The text and attachments of a mass-send or welcome message, validated."""
    world = req.world
    content = req.obj("text").get("content", "")
    if not isinstance(content, str):
        raise WeComError(errors.INVALID_PARAMETER, "Warning: wrong json format. text.content")
    if utf8_len(content) > text_limit:
        raise WeComError(errors.CONTENT_TOO_LONG, f"text.content exceeds {text_limit} bytes")
    attachments = req.body.get("attachments") or []
    if not isinstance(attachments, list):
        raise WeComError(errors.INVALID_PARAMETER, "Warning: wrong json format. attachments")
    if len(attachments) > world.limits.mass_attachments:
        raise WeComError(
            errors.INVALID_PARAMETER, f"attachments exceed {world.limits.mass_attachments}"
        )
    for attachment in attachments:
        _check_attachment(world, attachment)
    if not content and not attachments:
        raise WeComError(errors.EMPTY_CONTENT, "text and attachments are both empty")
    return content, attachments


def _check_attachment(world: SandboxWorld, attachment: Any) -> None:
    msgtype = attachment.get("msgtype") if isinstance(attachment, dict) else None
    if msgtype not in ATTACHMENT_TYPES:
        raise WeComError(errors.INVALID_MSGTYPE, f"attachment msgtype {msgtype!r}")
    body = attachment.get(msgtype)
    if not isinstance(body, dict):
        raise WeComError(errors.INVALID_PARAMETER, f"attachment {msgtype} body missing")
    if (
        msgtype == "image"
        and not body.get("pic_url")
        and not _media_ok(world, body.get("media_id"))
    ):
        raise WeComError(errors.INVALID_MEDIA_ID, str(body.get("media_id")))
    if msgtype in ("video", "file") and not _media_ok(world, body.get("media_id")):
        raise WeComError(errors.INVALID_MEDIA_ID, str(body.get("media_id")))
    if msgtype == "miniprogram" and not _media_ok(world, body.get("pic_media_id")):
        raise WeComError(errors.INVALID_MEDIA_ID, str(body.get("pic_media_id")))
    if msgtype == "link" and not (body.get("title") and body.get("url")):
        raise WeComError(errors.INVALID_PARAMETER, "link needs title and url")


def _tag_filter(req: ApiRequest) -> list[set[str]]:
    groups = req.obj("tag_filter").get("group_list") or []
    if not isinstance(groups, list):
        raise WeComError(errors.INVALID_PARAMETER, "Warning: wrong json format. tag_filter")
    return [set(req.strings("tag_list", g)) for g in groups if isinstance(g, dict)]


def _matches(relation: FollowRelation, tag_filter: list[set[str]]) -> bool:
    # OR within a group of tags, AND across groups (92135).
    tags = set(relation.tag_ids)
    return all(tags & wanted for wanted in tag_filter if wanted)


def _single_recipients(
    req: ApiRequest, sender: str, targets: list[str], tag_filter: list[set[str]]
) -> tuple[list[Recipient], list[str]]:
    world = req.world
    recipients: list[Recipient] = []
    failed: list[str] = []
    if not targets:
        targets = [r.external_userid for r in world.relations_of(sender, visible_only=False)]
    by_customer: dict[str, list[FollowRelation]] = {}
    for relation in world.relations.values():
        if relation.alive and (not sender or relation.userid == sender):
            by_customer.setdefault(relation.external_userid, []).append(relation)
    for ext in dict.fromkeys(targets):
        candidates = [r for r in by_customer.get(ext, []) if _matches(r, tag_filter)]
        if ext not in world.customers or not candidates:
            failed.append(ext)
            continue
        # The task goes only to the member who last interacted with the customer.
        chosen = max(candidates, key=lambda r: (r.last_interaction, r.createtime))
        recipients.append(Recipient(ext, chosen.userid))
    return recipients, failed


def _group_recipients(
    req: ApiRequest, sender: str, chat_ids: list[str]
) -> tuple[list[Recipient], list[str]]:
    world = req.world
    owned = [g.chat_id for g in world.groups.values() if g.owner == sender and not g.dismissed]
    if not chat_ids:
        return [Recipient(c, sender) for c in owned], []
    recipients = [Recipient(c, sender) for c in dict.fromkeys(chat_ids) if c in owned]
    return recipients, [c for c in dict.fromkeys(chat_ids) if c not in owned]


def _add_template(req: ApiRequest) -> Json:
    world = req.world
    limits = world.limits
    chat_type = req.text("chat_type") or "single"
    if chat_type not in ("single", "group"):
        raise WeComError(errors.INVALID_PARAMETER, f"chat_type {chat_type!r}")
    text, attachments = check_content(req, text_limit=limits.mass_text_bytes)
    targets, chat_ids = req.strings("external_userid"), req.strings("chat_id_list")
    if len(targets) > limits.mass_external_userids:
        raise WeComError(
            errors.INVALID_PARAMETER, f"external_userid exceeds {limits.mass_external_userids}"
        )
    if len(chat_ids) > limits.mass_chat_ids:
        raise WeComError(errors.INVALID_PARAMETER, f"chat_id_list exceeds {limits.mass_chat_ids}")
    sender = req.text("sender")
    if sender:
        world.member(sender)
    kind: ChatType = "group" if chat_type == "group" else "single"
    if kind == "group":
        if not sender:
            raise WeComError(errors.INVALID_PARAMETER, "sender is required for chat_type group")
        recipients, failed = _group_recipients(req, sender, chat_ids)
    else:
        if not targets and not sender:
            raise WeComError(errors.INVALID_PARAMETER, "external_userid and sender both empty")
        recipients, failed = _single_recipients(req, sender, targets, _tag_filter(req))
    task = MassTask(
        msgid=world.new_id("msg", 30),
        chat_type=kind,
        create_time=world.now(),
        text=text,
        attachments=attachments,
        sender=sender or None,
        creator=None,
        create_type=0,
        recipients=recipients,
        allow_select=bool(req.body.get("allow_select", False)),
    )
    task.tasks = {r.userid: MemberTask(r.userid) for r in recipients}
    world.tasks[task.msgid] = task
    return {"fail_list": failed, "msgid": task.msgid}


def _task(req: ApiRequest) -> MassTask:
    msgid = req.text("msgid", required=True)
    task = req.world.tasks.get(msgid)
    if task is None:
        raise WeComError(errors.INVALID_PARAMETER, f"invalid msgid {msgid}")
    return task


def _remind(req: ApiRequest) -> Json:
    world = req.world
    task = _task(req)
    now = world.now()
    recent = [t for t in task.reminders if t > now - DAY_SECONDS]
    if len(recent) >= world.limits.reminders_per_day:
        world.breach("remind_limit", msgid=task.msgid, reminders=len(recent))
        raise WeComError(world.limits.remind_limit_errcode, "at most 3 reminders per 24 h")
    task.reminders.append(now)
    return {}


def _cancel(req: ApiRequest) -> Json:
    _task(req).cancelled = True
    return {}


def _list_v2(req: ApiRequest) -> Json:
    world = req.world
    chat_type = req.text("chat_type") or "single"
    start, end = req.integer("start_time"), req.integer("end_time")
    if end < start or end - start > MONTH_SECONDS:
        raise WeComError(errors.INVALID_PARAMETER, "start_time..end_time must span at most 1 month")
    creator = req.text("creator")
    filter_type = req.integer("filter_type", 2)
    limit = req.limit(50, 100)
    tasks = [
        t
        for t in sorted(world.tasks.values(), key=lambda t: (t.create_time, t.msgid))
        if t.chat_type == chat_type
        and start <= t.create_time <= end
        and (not creator or t.creator == creator)
        and (filter_type == 2 or t.create_type == filter_type)
    ]
    chunk, next_cursor = page(tasks, req.cursor(), limit)
    return {"group_msg_list": [_record(t) for t in chunk], "next_cursor": next_cursor}


def _record(task: MassTask) -> Json:
    data: Json = {"msgid": task.msgid}
    # API-created tasks carry no creator (92135 / 93338).
    if task.creator:
        data["creator"] = task.creator
    data["create_time"] = task.create_time
    data["create_type"] = task.create_type
    if task.text:
        data["text"] = {"content": task.text}
    if task.attachments:
        data["attachments"] = task.attachments
    return data


def _task_list(req: ApiRequest) -> Json:
    task = _task(req)
    limit = req.limit(500, 1000)
    rows = sorted(task.tasks.values(), key=lambda t: t.userid)
    chunk, next_cursor = page(rows, req.cursor(), limit)
    items: list[Json] = []
    for row in chunk:
        item: Json = {"userid": row.userid, "status": row.status}
        if row.send_time is not None:
            item["send_time"] = row.send_time
        items.append(item)
    return {"next_cursor": next_cursor, "task_list": items}


def _send_result(req: ApiRequest) -> Json:
    task = _task(req)
    userid = req.text("userid", required=True, code=errors.INVALID_USERID)
    limit = req.limit(500, 1000)
    rows = [r for r in task.recipients if r.userid == userid]
    chunk, next_cursor = page(rows, req.cursor(), limit)
    key = "external_userid" if task.chat_type == "single" else "chat_id"
    items: list[Json] = []
    for row in chunk:
        item: Json = {key: row.target, "userid": row.userid, "status": row.status}
        if row.send_time is not None:
            item["send_time"] = row.send_time
        items.append(item)
    return {"next_cursor": next_cursor, "send_list": items}


ENDPOINTS: dict[str, Endpoint] = {
    "externalcontact/add_msg_template": Endpoint("POST", _add_template),
    "externalcontact/remind_groupmsg_send": Endpoint("POST", _remind),
    "externalcontact/cancel_groupmsg_send": Endpoint("POST", _cancel),
    "externalcontact/get_groupmsg_list_v2": Endpoint("POST", _list_v2),
    "externalcontact/get_groupmsg_task": Endpoint("POST", _task_list),
    "externalcontact/get_groupmsg_send_result": Endpoint("POST", _send_result),
}
