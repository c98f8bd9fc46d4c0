"""Customer-group endpoints: groupchat/list (93414) and groupchat/get."""

from __future__ import annotations

from bot.sandbox import errors
from bot.sandbox.endpoints.base import ApiRequest, Endpoint, Json, page
from bot.sandbox.errors import WeComError
from bot.sandbox.models import CustomerGroup, GroupMember

MAX_VISIBLE_WITHOUT_FILTER = 1000


def _visible_member_count(req: ApiRequest) -> int:
    world = req.world
    override = world.limits.visible_member_count
    if override is not None:
        return override
    return sum(1 for m in world.members.values() if m.visible)


def _owner_visible(req: ApiRequest, group: CustomerGroup) -> bool:
    member = req.world.members.get(group.owner)
    return member is not None and member.visible


def _list(req: ApiRequest) -> Json:
    world = req.world
    status_filter = req.integer("status_filter", 0)
    if status_filter not in (0, 1, 2, 3):
        raise WeComError(errors.INVALID_PARAMETER, "status_filter must be 0..3")
    limit = req.integer("limit", 0)
    if not 1 <= limit <= 1000:
        raise WeComError(errors.INVALID_PARAMETER, "limit must be 1..1000")
    owner_filter = req.obj("owner_filter")
    owners = req.strings("userid_list", owner_filter)
    if len(owners) > 100:
        raise WeComError(errors.INVALID_PARAMETER, "owner_filter.userid_list exceeds 100")
    if not owners and _visible_member_count(req) > MAX_VISIBLE_WITHOUT_FILTER:
        raise WeComError(errors.OWNER_FILTER_REQUIRED)
    offset = req.cursor()
    chats = [
        g
        for g in sorted(world.groups.values(), key=lambda g: (g.create_time, g.chat_id))
        if not g.dismissed
        and _owner_visible(req, g)
        and (not owners or g.owner in owners)
        and (status_filter == 0 or g.status == status_filter)
    ]
    chunk, next_cursor = page(chats, offset, limit)
    return {
        "group_chat_list": [{"chat_id": g.chat_id, "status": g.status} for g in chunk],
        "next_cursor": next_cursor,
    }


def _member_json(member: GroupMember, *, need_name: bool) -> Json:
    data: Json = {
        "userid": member.userid,
        "type": member.type,
        "join_time": member.join_time,
        "join_scene": member.join_scene,
    }
    if member.type == 2 and member.unionid:
        data["unionid"] = member.unionid
    # invitor is returned only when a member of this corp invited them.
    if member.invitor:
        data["invitor"] = {"userid": member.invitor}
    data["group_nickname"] = member.group_nickname
    if need_name:
        data["name"] = member.name
    if member.state:
        data["state"] = member.state
    return data


def _get(req: ApiRequest) -> Json:
    chat_id = req.text("chat_id", required=True, code=errors.INVALID_CHATID)
    need_name = req.integer("need_name", 0) == 1
    group = req.world.chat(chat_id)
    if not _owner_visible(req, group):
        raise WeComError(errors.INVALID_CHATID, f"{chat_id}: owner outside the app's scope")
    return {
        "group_chat": {
            "chat_id": group.chat_id,
            "name": group.name,
            "owner": group.owner,
            "create_time": group.create_time,
            "notice": group.notice,
            "member_list": [_member_json(m, need_name=need_name) for m in group.members],
            "admin_list": [{"userid": a} for a in group.admins],
            "member_version": group.member_version,
        }
    }


ENDPOINTS: dict[str, Endpoint] = {
    "externalcontact/groupchat/list": Endpoint("POST", _list),
    "externalcontact/groupchat/get": Endpoint("POST", _get),
}
