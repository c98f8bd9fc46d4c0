"""Customer endpoints: get, list, batch/get_by_user, get_follow_user_list, remark, mark_tag."""

from __future__ import annotations

from bot.sandbox import errors
from bot.sandbox.endpoints.base import ApiRequest, Endpoint, Json, page
from bot.sandbox.errors import WeComError
from bot.sandbox.models import FollowRelation
from bot.sandbox.world import SandboxWorld

MAX_REMARK = 20
MAX_DESCRIPTION = 150
MAX_REMARK_COMPANY = 20


def follow_json(world: SandboxWorld, relation: FollowRelation, *, batch: bool) -> Json:
    """A follow_user entry (get) or follow_info (batch/get_by_user)."""
    data: Json = {
        "userid": relation.userid,
        "remark": relation.remark,
        "description": relation.description,
        "createtime": relation.createtime,
    }
    live = [t for t in (world.live_tag(tid) for tid in relation.tag_ids) if t is not None]
    if batch:
        data["tag_id"] = [t.tag_id for t in live]
    else:
        data["tags"] = [
            {
                "group_name": world.tag_groups[t.group_id].name,
                "tag_name": t.name,
                "type": 1,
                "tag_id": t.tag_id,
            }
            for t in live
        ]
    if relation.remark_corp_name:
        data["remark_corp_name"] = relation.remark_corp_name
    data["remark_mobiles"] = list(relation.remark_mobiles)
    data["oper_userid"] = relation.oper_userid
    data["add_way"] = relation.add_way
    if relation.state:
        data["state"] = relation.state
    return data


def _get(req: ApiRequest) -> Json:
    world = req.world
    ext = req.param("external_userid")
    if not ext:
        raise WeComError(errors.INVALID_EXTERNAL_USERID, "external_userid missing")
    customer = world.customer(ext)
    followers = world.followers(ext)
    if not followers:
        raise WeComError(errors.NOT_EXTERNAL_CONTACT, ext)
    cursor = req.param("cursor")
    offset = req.cursor(cursor) if cursor else 0
    chunk, next_cursor = page(followers, offset, world.limits.follow_user_page_size)
    data: Json = {
        "external_contact": customer.as_json(),
        "follow_user": [follow_json(world, r, batch=False) for r in chunk],
    }
    if next_cursor:
        data["next_cursor"] = next_cursor
    return data


def _following_member(req: ApiRequest, userid: str) -> None:
    member = req.world.member(userid)
    if not member.follow_enabled:
        raise WeComError(errors.NO_CONTACT_PERMISSION, userid)


def _list(req: ApiRequest) -> Json:
    userid = req.param("userid")
    if not userid:
        raise WeComError(errors.INVALID_USERID, "userid missing")
    _following_member(req, userid)
    return {"external_userid": [r.external_userid for r in req.world.relations_of(userid)]}


def _follow_user_list(req: ApiRequest) -> Json:
    members = req.world.members.values()
    return {"follow_user": [m.userid for m in members if m.follow_enabled and m.visible]}


def _batch_get_by_user(req: ApiRequest) -> Json:
    world = req.world
    userids = list(dict.fromkeys(req.strings("userid_list")))
    if not userids:
        raise WeComError(errors.INVALID_PARAMETER, "userid_list missing")
    if len(userids) > 100:
        raise WeComError(errors.INVALID_PARAMETER, "userid_list exceeds 100")
    limit = req.limit(50, 100)
    offset = req.cursor()
    relations: list[FollowRelation] = []
    for userid in userids:
        _following_member(req, userid)
        relations.extend(world.relations_of(userid))
    chunk, next_cursor = page(relations, offset, limit)
    return {
        "external_contact_list": [
            {
                "external_contact": world.customers[r.external_userid].as_json(),
                "follow_info": follow_json(world, r, batch=True),
            }
            for r in chunk
        ],
        "next_cursor": next_cursor,
    }


def _relation(req: ApiRequest) -> FollowRelation:
    world = req.world
    userid = req.text("userid", required=True, code=errors.INVALID_USERID)
    ext = req.text("external_userid", required=True, code=errors.INVALID_EXTERNAL_USERID)
    world.member(userid)
    world.customer(ext)
    relation = world.relation(userid, ext)
    if relation is None:
        raise WeComError(errors.NOT_EXTERNAL_CONTACT, f"{userid} / {ext}")
    return relation


def _remark(req: ApiRequest) -> Json:
    world = req.world
    relation = _relation(req)
    fields = ("remark", "description", "remark_company", "remark_mobiles", "remark_pic_mediaid")
    if not any(name in req.body for name in fields):
        raise WeComError(errors.INVALID_PARAMETER, "nothing to remark")
    remark, description = req.text("remark"), req.text("description")
    company = req.text("remark_company")
    for value, limit, name in (
        (remark, MAX_REMARK, "remark"),
        (description, MAX_DESCRIPTION, "description"),
        (company, MAX_REMARK_COMPANY, "remark_company"),
    ):
        if len(value) > limit:
            raise WeComError(errors.INVALID_PARAMETER, f"{name} longer than {limit} characters")
    mobiles = req.strings("remark_mobiles")
    media_id = req.text("remark_pic_mediaid")
    if media_id and media_id not in world.media:
        raise WeComError(errors.INVALID_MEDIA_ID, media_id)
    if "remark" in req.body:
        relation.remark = remark
    if "description" in req.body:
        relation.description = description
    # remark_company only takes effect for WeChat users (type 1).
    if "remark_company" in req.body and world.customers[relation.external_userid].type == 1:
        relation.remark_corp_name = company
    if "remark_mobiles" in req.body:
        # A list holding one empty string clears the mobiles.
        relation.remark_mobiles = [m for m in mobiles if m]
    return {}


def _mark_tag(req: ApiRequest) -> Json:
    world = req.world
    relation = _relation(req)
    add, remove = req.strings("add_tag"), req.strings("remove_tag")
    if not add and not remove:
        raise WeComError(errors.INVALID_PARAMETER, "add_tag and remove_tag are both empty")
    for tag_id in add + remove:
        if world.live_tag(tag_id) is None:
            raise WeComError(errors.INVALID_TAGID, tag_id)
    world.retag(relation, add, remove)
    return {}


ENDPOINTS: dict[str, Endpoint] = {
    "externalcontact/get": Endpoint("GET", _get),
    "externalcontact/list": Endpoint("GET", _list),
    "externalcontact/get_follow_user_list": Endpoint("GET", _follow_user_list),
    "externalcontact/batch/get_by_user": Endpoint("POST", _batch_get_by_user),
    "externalcontact/remark": Endpoint("POST", _remark),
    "externalcontact/mark_tag": Endpoint("POST", _mark_tag),
}
