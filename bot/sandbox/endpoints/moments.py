"""Customer moments (客户朋友圈, 95094/96351): add_moment_task, get_moment_task_result,
get_moment_task, cancel_moment_task, and media/upload_attachment for their images,
videos and link covers."""

# add_moment_task answers with a jobid at once; the job reports 1 (started), 2 (running),
# then 3 (done) with the moment_id a few seconds later. Members and tags that cannot be used
# are not an error of the call: the finished job lists them. Members still have to confirm
# the moment in the client (`Script.member_publishes_moment`).
#
# WeCom documents the messages for broken content ('invalid text size', 'invalid attachments
# size', 'invalid attachments msgtype') but not their errcodes; the sandbox answers 45002
# for the text and 40058 for attachments. A job whose senders or tags are all unusable
# fails with 40003 or 40068 rather than publishing to everyone (the sandbox's choice).

from __future__ import annotations

from typing import Any

from bot.sandbox import errors
from bot.sandbox.endpoints.base import ApiRequest, Endpoint, Json, page, utf8_len
from bot.sandbox.endpoints.media import checked_upload, known_type, new_media_id, uploaded
from bot.sandbox.errors import WeComError
from bot.sandbox.models import MOMENT_JOB_DONE, AttachmentMedia, Moment, MomentJob
from bot.sandbox.world import SandboxWorld

TEXT_MAX_CHARS = 2000
TEXT_MAX_BYTES = 4000
MAX_IMAGES = 9
MAX_SENDERS = 100_000
LINK_TITLE_MAX_BYTES = 64
ATTACHMENT_TYPES = {"image", "video", "link"}
# attachment_type 1 (moments) takes images and videos; 2 (product albums) images only.
UPLOAD_KINDS: dict[str, set[str]] = {"1": {"image", "video"}, "2": {"image"}}


def _text(req: ApiRequest) -> str:
    content = req.obj("text").get("content", "")
    if not isinstance(content, str):
        raise WeComError(errors.INVALID_PARAMETER, "Warning: wrong json format. text.content")
    if len(content) > TEXT_MAX_CHARS or utf8_len(content) > TEXT_MAX_BYTES:
        raise WeComError(errors.CONTENT_TOO_LONG, "invalid text size")
    return content


def _attachments(req: ApiRequest) -> list[Json]:
    world = req.world
    attachments = req.body.get("attachments") or []
    if not isinstance(attachments, list) or not all(isinstance(a, dict) for a in attachments):
        raise WeComError(errors.INVALID_PARAMETER, "Warning: wrong json format. attachments")
    kinds = {a.get("msgtype") for a in attachments}
    unknown = kinds - ATTACHMENT_TYPES
    if unknown:
        raise WeComError(errors.INVALID_MSGTYPE, f"attachment msgtype {sorted(map(str, unknown))}")
    if len(kinds) > 1:
        raise WeComError(errors.INVALID_PARAMETER, "invalid attachments msgtype")
    limit = MAX_IMAGES if kinds == {"image"} else 1
    if len(attachments) > limit:
        raise WeComError(errors.INVALID_PARAMETER, "invalid attachments size")
    for attachment in attachments:
        _check_attachment(world, attachment)
    return attachments


def _check_attachment(world: SandboxWorld, attachment: Json) -> None:
    msgtype = str(attachment["msgtype"])
    body = attachment.get(msgtype)
    if not isinstance(body, dict):
        raise WeComError(errors.INVALID_PARAMETER, f"attachment {msgtype} body missing")
    if msgtype == "link":
        title, url = body.get("title", ""), body.get("url")
        if not isinstance(url, str) or not url:
            raise WeComError(errors.INVALID_PARAMETER, "link.url missing")
        if not isinstance(title, str) or utf8_len(title) > LINK_TITLE_MAX_BYTES:
            raise WeComError(errors.INVALID_PARAMETER, "link.title exceeds 64 bytes")
        # The cover is an uploaded image, never a picture URL.
        if not world.attachment_ok(body.get("media_id"), "image"):
            raise WeComError(errors.INVALID_MEDIA_ID, f"link.media_id {body.get('media_id')}")
        return
    if not world.attachment_ok(body.get("media_id"), msgtype):
        raise WeComError(errors.INVALID_MEDIA_ID, f"{msgtype}.media_id {body.get('media_id')}")


def _integers(value: Any, name: str) -> list[int]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        raise WeComError(errors.INVALID_PARAMETER, f"Warning: wrong json format. {name}")
    return list(value)


def _visible_range(req: ApiRequest) -> tuple[list[str] | None, list[int], list[str]]:
    """(user_list or None for "every member in scope", department_list, tag_list)."""
    visible = req.obj("visible_range")
    senders = visible.get("sender_list") or {}
    customers = visible.get("external_contact_list") or {}
    if not isinstance(senders, dict) or not isinstance(customers, dict):
        raise WeComError(errors.INVALID_PARAMETER, "Warning: wrong json format. visible_range")
    users = req.strings("user_list", senders)
    if len(users) > MAX_SENDERS:
        raise WeComError(errors.INVALID_PARAMETER, f"sender_list.user_list exceeds {MAX_SENDERS}")
    departments = _integers(senders.get("department_list"), "sender_list.department_list")
    tags = req.strings("tag_list", customers)
    # No sender_list at all: every member in the app's visibility scope (95094).
    named = bool(users or departments)
    return (list(dict.fromkeys(users)) if named else None), departments, tags


def _add_moment_task(req: ApiRequest) -> Json:
    world = req.world
    text = _text(req)
    attachments = _attachments(req)
    if not text and not attachments:
        raise WeComError(errors.EMPTY_CONTENT, "text and attachments are both empty")
    users, departments, tags = _visible_range(req)
    # No sender_list: every member in the app's scope is asked.
    candidates = [m.userid for m in world.members.values()] if users is None else users
    senders: list[str] = []
    invalid_users: list[str] = []
    for userid in candidates:
        member = world.members.get(userid)
        if member is not None and member.visible and member.follow_enabled:
            senders.append(userid)
        elif users is not None or (member is not None and member.visible):
            invalid_users.append(userid)
    tag_ids = [t for t in dict.fromkeys(tags) if world.live_tag(t) is not None]
    invalid_tags = [t for t in dict.fromkeys(tags) if world.live_tag(t) is None]
    # The sandbox has no departments: every department id is reported unusable.
    job = MomentJob(
        world.new_id("job", 40),
        world.clock.timestamp(),
        invalid_users=invalid_users,
        invalid_departments=list(dict.fromkeys(departments)),
        invalid_tags=invalid_tags,
    )
    if not senders:
        job.errcode = errors.INVALID_USERID
    elif tags and not tag_ids:
        job.errcode = errors.INVALID_TAGID
    else:
        moment = Moment(
            moment_id=world.new_id("mom", 34),
            jobid=job.jobid,
            create_time=world.now(),
            text=text,
            attachments=attachments,
            senders=senders,
            tag_ids=tag_ids,
        )
        job.moment_id = moment.moment_id
        world.moments[moment.moment_id] = moment
    world.moment_jobs[job.jobid] = job
    return {"jobid": job.jobid}


def _task_result(req: ApiRequest) -> Json:
    world = req.world
    jobid = req.param("jobid")
    if not jobid:
        raise WeComError(errors.INVALID_PARAMETER, "jobid missing")
    job = world.moment_jobs.get(jobid)
    if job is None:
        raise WeComError(errors.INVALID_PARAMETER, f"invalid jobid {jobid}")
    status = world.moment_job_status(job)
    data: Json = {"status": status, "type": "add_moment_task"}
    if status != MOMENT_JOB_DONE:
        return data
    result: Json = {
        "errcode": job.errcode,
        "errmsg": errors.describe(job.errcode) if job.errcode else "ok",
    }
    if job.moment_id is not None:
        result["moment_id"] = job.moment_id
    if job.invalid_users or job.invalid_departments:
        invalid: Json = {}
        if job.invalid_users:
            invalid["user_list"] = job.invalid_users
        if job.invalid_departments:
            invalid["department_list"] = job.invalid_departments
        result["invalid_sender_list"] = invalid
    if job.invalid_tags:
        result["invalid_external_contact_list"] = {"tag_list": job.invalid_tags}
    data["result"] = result
    return data


def _moment_task(req: ApiRequest) -> Json:
    """get_moment_task: each sender's publish status (1 published, 0 not yet), by userid."""
    moment_id = req.text("moment_id", required=True)
    moment = req.world.live_moment(moment_id)
    if moment is None or moment.create_type != 0:
        raise WeComError(errors.INVALID_PARAMETER, f"invalid moment_id {moment_id}")
    limit = req.limit(500, 1000)
    chunk, next_cursor = page(sorted(moment.senders), req.cursor(), limit)
    items = [
        {"userid": userid, "publish_status": 1 if userid in moment.published else 0}
        for userid in chunk
    ]
    return {"next_cursor": next_cursor, "task_list": items}


def _cancel_moment_task(req: ApiRequest) -> Json:
    moment_id = req.text("moment_id", required=True)
    moment = req.world.live_moment(moment_id)
    if moment is None or moment.create_type != 0:
        # Only corp moments can be stopped; members' own posts are theirs.
        raise WeComError(errors.INVALID_PARAMETER, f"invalid moment_id {moment_id}")
    moment.cancelled = True
    return {}


def _upload_attachment(req: ApiRequest) -> Json:
    world = req.world
    media_type = known_type(req.param("media_type"))
    attachment_type = req.param("attachment_type")
    allowed = UPLOAD_KINDS.get(attachment_type)
    if allowed is None:
        raise WeComError(errors.INVALID_PARAMETER, f"invalid attachment_type {attachment_type!r}")
    if media_type not in allowed:
        raise WeComError(errors.INVALID_TYPE, f"{media_type} for attachment_type {attachment_type}")
    upload = checked_upload(req, media_type)
    media = AttachmentMedia(
        new_media_id(world),
        media_type,
        upload.filename,
        len(upload.data),
        world.now(),
        int(attachment_type),
    )
    world.attachment_media[media.media_id] = media
    return uploaded(media)


ENDPOINTS: dict[str, Endpoint] = {
    "externalcontact/add_moment_task": Endpoint("POST", _add_moment_task),
    "externalcontact/get_moment_task_result": Endpoint("GET", _task_result),
    "externalcontact/get_moment_task": Endpoint("POST", _moment_task),
    "externalcontact/cancel_moment_task": Endpoint("POST", _cancel_moment_task),
    "media/upload_attachment": Endpoint("POST", _upload_attachment, multipart=True),
}
