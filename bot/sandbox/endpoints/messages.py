"""App messages (90236), template-card updates (94888) and welcome messages (92137)."""

# message/send silently drops what exceeds 30/min or 1000/h per member and still answers
# errcode 0, as WeCom does; the world records each drop as a breach so tests can see it.

from __future__ import annotations

import hashlib
import json
import re

from bot.sandbox import errors
from bot.sandbox.endpoints.base import ApiRequest, Endpoint, Json
from bot.sandbox.endpoints.masssend import check_content
from bot.sandbox.errors import WeComError
from bot.sandbox.limits import MemberMessageCap
from bot.sandbox.models import AppMessage, Card, WelcomeMessage
from bot.sandbox.world import ALNUM, SandboxWorld

MSG_TYPES = {
    "text",
    "image",
    "voice",
    "video",
    "file",
    "textcard",
    "news",
    "mpnews",
    "markdown",
    "miniprogram_notice",
    "template_card",
}
CARD_TYPES = {
    "text_notice",
    "news_notice",
    "button_interaction",
    "vote_interaction",
    "multiple_interaction",
}
# Cards a member can click; sending one returns a response_code (as do notices with a menu).
INTERACTIVE_CARDS = {"button_interaction", "vote_interaction", "multiple_interaction"}
TASK_ID = re.compile(r"^[0-9A-Za-z_\-@]{1,128}$")
MAX_DUPLICATE_INTERVAL = 4 * 3600


def _truncate(text: str, limit: int) -> str:
    # WeCom cuts text and markdown over the byte limit instead of rejecting them.
    return text.encode("utf-8")[:limit].decode("utf-8", "ignore")


def _content(req: ApiRequest, msgtype: str) -> Json:
    body = req.obj(msgtype)
    if not body:
        raise WeComError(errors.EMPTY_CONTENT, f"{msgtype} missing")
    if msgtype in ("text", "markdown"):
        content = body.get("content")
        if not isinstance(content, str) or not content:
            raise WeComError(errors.EMPTY_CONTENT, f"{msgtype}.content missing")
        limit = req.world.limits.text_message_bytes
        return {**body, "content": _truncate(content, limit)}
    if msgtype == "template_card":
        _check_card(req, body)
    return body


def _check_card(req: ApiRequest, card: Json) -> None:
    card_type = card.get("card_type")
    if card_type not in CARD_TYPES:
        raise WeComError(errors.INVALID_PARAMETER, f"template_card.card_type {card_type!r}")
    if card_type in ("text_notice", "news_notice") and not isinstance(
        card.get("card_action"), dict
    ):
        raise WeComError(errors.CARD_ACTION_MISSING)
    task_id = card.get("task_id")
    if card_type in INTERACTIVE_CARDS or card.get("action_menu"):
        if not isinstance(task_id, str) or not TASK_ID.match(task_id):
            raise WeComError(errors.INVALID_PARAMETER, "template_card.task_id invalid")
        if task_id in req.world.cards:
            raise WeComError(errors.INVALID_PARAMETER, f"task_id {task_id} already used")
    if card_type == "button_interaction" and not card.get("button_list"):
        raise WeComError(errors.INVALID_PARAMETER, "template_card.button_list missing")


def _recipients(req: ApiRequest) -> tuple[list[str], list[str]]:
    world = req.world
    touser = req.text("touser")
    if touser == "@all":
        return [m.userid for m in world.members.values() if m.visible], []
    valid: list[str] = []
    invalid: list[str] = []
    for userid in dict.fromkeys(u for u in touser.split("|") if u):
        member = world.members.get(userid)
        if member is not None and member.visible:
            valid.append(userid)
        else:
            # WeCom reports invalid userids lower-cased.
            invalid.append(userid.lower())
    return valid, invalid


def _digest(msgtype: str, content: Json) -> str:
    raw = json.dumps([msgtype, content], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def _duplicate_window(req: ApiRequest) -> float:
    if req.integer("enable_duplicate_check", 0) != 1:
        return 0.0
    interval = req.integer("duplicate_check_interval", 1800)
    return float(min(max(interval, 0), MAX_DUPLICATE_INTERVAL))


def _deliver(world: SandboxWorld, message: AppMessage, users: list[str], window: float) -> None:
    now = world.clock.timestamp()
    limits = world.limits
    digest = _digest(message.msgtype, message.content)
    for userid in users:
        seen = world.recent_messages.get((userid, digest))
        if window and seen is not None and now - seen < window:
            message.duplicate_for.append(userid)
            continue
        cap = world.member_caps.setdefault(userid, MemberMessageCap())
        if not cap.take(now, limits.member_messages_per_minute, limits.member_messages_per_hour):
            message.dropped_for.append(userid)
            world.breach("member_message_rate", userid=userid, msgid=message.msgid)
            continue
        world.recent_messages[(userid, digest)] = now
        message.delivered_to.append(userid)
        world.inbox.setdefault(userid, []).append(message)


def _send(req: ApiRequest) -> Json:
    world = req.world
    if req.integer("agentid", 0) != world.agent_id:
        raise WeComError(errors.INVALID_AGENTID)
    msgtype = req.text("msgtype", required=True, code=errors.INVALID_MSGTYPE)
    if msgtype not in MSG_TYPES:
        raise WeComError(errors.INVALID_MSGTYPE, msgtype)
    content = _content(req, msgtype)
    users, invalid = _recipients(req)
    party, tag = req.text("toparty"), req.text("totag")
    if not users and not party and not tag:
        raise WeComError(errors.USER_PARTY_TAG_ALL_INVALID)
    message = AppMessage(
        msgid=world.random_string(43, ALNUM),
        agentid=world.agent_id,
        msgtype=msgtype,
        content=content,
        sent_at=world.now(),
    )
    _deliver(world, message, users, _duplicate_window(req))
    world.app_messages.append(message)
    data: Json = {
        "invaliduser": "|".join(invalid),
        "invalidparty": party,
        "invalidtag": tag,
        "unlicenseduser": "",
        "msgid": message.msgid,
    }
    if msgtype == "template_card":
        task_id = content.get("task_id")
        if isinstance(task_id, str) and task_id:
            card_type = str(content["card_type"])
            message.task_id = task_id
            world.cards[task_id] = Card(
                task_id, card_type, message.msgid, list(message.delivered_to), content
            )
            if card_type in INTERACTIVE_CARDS or content.get("action_menu"):
                message.response_code = world.issue_response_code(task_id).code
                data["response_code"] = message.response_code
    return data


def _update_card(req: ApiRequest) -> Json:
    world = req.world
    if req.integer("agentid", 0) != world.agent_id:
        raise WeComError(errors.INVALID_AGENTID)
    value = req.text("response_code", required=True)
    code = world.response_codes.get(value)
    if code is None:
        raise WeComError(errors.INVALID_PARAMETER, "invalid response_code")
    if code.used_at is not None:
        raise WeComError(errors.INVALID_PARAMETER, "response_code already used")
    if world.now() >= code.issued_at + world.limits.response_code_ttl:
        raise WeComError(errors.INVALID_PARAMETER, "response_code expired (72 h)")
    card = world.cards[code.task_id]
    button, new_card = req.obj("button"), req.obj("template_card")
    if button:
        name = button.get("replace_name")
        if not isinstance(name, str) or not name:
            raise WeComError(errors.INVALID_PARAMETER, "button.replace_name missing")
        card.replaced_name = name
    elif new_card:
        card.body = new_card
        card.card_type = str(new_card.get("card_type", card.card_type))
    else:
        raise WeComError(errors.INVALID_PARAMETER, "button or template_card required")
    code.used_at = world.now()
    invalid = [u for u in req.strings("userids") if u not in card.recipients]
    return {"invaliduser": invalid}


def _send_welcome(req: ApiRequest) -> Json:
    world = req.world
    value = req.text("welcome_code", required=True)
    code = world.welcome_codes.get(value)
    if code is None:
        raise WeComError(errors.INVALID_PARAMETER, "invalid welcome_code")
    if code.used_at is not None:
        world.breach("welcome_code_reused", code=value)
        raise WeComError(errors.WELCOME_CODE_USED)
    if world.now() > code.issued_at + world.limits.welcome_code_ttl:
        world.breach("welcome_code_late", code=value, age=world.now() - code.issued_at)
        raise WeComError(errors.WELCOME_CODE_USED, "welcome_code expired (20 s)")
    text, attachments = check_content(req, text_limit=world.limits.mass_text_bytes)
    code.used_at = world.now()
    world.welcome_messages.append(
        WelcomeMessage(value, code.userid, code.external_userid, text, attachments, world.now())
    )
    return {}


ENDPOINTS: dict[str, Endpoint] = {
    "message/send": Endpoint("POST", _send),
    "message/update_template_card": Endpoint("POST", _update_card),
    "externalcontact/send_welcome_msg": Endpoint("POST", _send_welcome),
}
