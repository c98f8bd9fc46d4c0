"""Corp tags (96320): get_corp_tag_list, add_corp_tag, edit_corp_tag, del_corp_tag."""

# A self-built app may edit or delete only the tags and groups it created; WeCom answers
# 40068 (invalid tagid) otherwise, as developers report on the WeCom community.

from __future__ import annotations

from bot.sandbox import errors
from bot.sandbox.endpoints.base import ApiRequest, Endpoint, Json
from bot.sandbox.errors import WeComError
from bot.sandbox.models import CorpTag, TagGroup
from bot.sandbox.world import SandboxWorld

MAX_TAG_NAME = 30


def _tag_json(tag: CorpTag, *, with_deleted: bool = True) -> Json:
    data: Json = {
        "id": tag.tag_id,
        "name": tag.name,
        "create_time": tag.create_time,
        "order": tag.order,
    }
    if with_deleted:
        data["deleted"] = tag.deleted
    return data


def _group_json(group: TagGroup, tags: list[CorpTag], *, with_deleted: bool = True) -> Json:
    data: Json = {
        "group_id": group.group_id,
        "group_name": group.name,
        "create_time": group.create_time,
        "order": group.order,
    }
    if with_deleted:
        data["deleted"] = group.deleted
    # A larger order sorts first (96320).
    ordered = sorted(tags, key=lambda t: (-t.order, t.create_time, t.tag_id))
    data["tag"] = [_tag_json(t, with_deleted=with_deleted) for t in ordered]
    return data


def _live_groups(world: SandboxWorld) -> list[TagGroup]:
    groups = [g for g in world.tag_groups.values() if not g.deleted]
    return sorted(groups, key=lambda g: (-g.order, g.create_time, g.group_id))


def _list(req: ApiRequest) -> Json:
    world = req.world
    tag_ids, group_ids = req.strings("tag_id"), req.strings("group_id")
    result: list[Json] = []
    for group in _live_groups(world):
        tags = world.tags_in(group.group_id)
        if group_ids:
            # group_id wins when both filters are given.
            if group.group_id not in group_ids:
                continue
        elif tag_ids:
            tags = [t for t in tags if t.tag_id in tag_ids]
            if not tags:
                continue
        result.append(_group_json(group, tags))
    return {"tag_group": result}


def _check_name(name: str) -> None:
    if not 1 <= len(name) <= MAX_TAG_NAME:
        raise WeComError(errors.INVALID_TAG_NAME_LENGTH, name)


def _add(req: ApiRequest) -> Json:
    world = req.world
    specs = req.body.get("tag")
    if not isinstance(specs, list) or not specs:
        raise WeComError(errors.INVALID_PARAMETER, "tag missing: empty groups are not allowed")
    group_id, group_name = req.text("group_id"), req.text("group_name")
    if group_id:
        group = world.live_group(group_id)
        if group is None:
            raise WeComError(errors.INVALID_TAGID, group_id)
    elif group_name:
        _check_name(group_name)
        group = next((g for g in _live_groups(world) if g.name == group_name), None)
    else:
        raise WeComError(errors.INVALID_PARAMETER, "group_id or group_name required")
    names: list[tuple[str, int]] = []
    for spec in specs:
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise WeComError(errors.INVALID_PARAMETER, "Warning: wrong json format. tag")
        order = spec.get("order", 0)
        names.append((spec["name"], order if isinstance(order, int) else 0))
    existing = {t.name for t in world.tags_in(group.group_id)} if group else set()
    for name, _ in names:
        _check_name(name)
        if name in existing:
            raise WeComError(errors.TAG_NAME_EXISTS, name)
    if group is None:
        group = world.create_tag_group(
            group_name, order=req.integer("order", 0), agent=world.agent_id
        )
    created: list[CorpTag] = []
    for name, order in names:
        # Several tags of the same name in one call create only one.
        if any(t.name == name for t in created):
            continue
        created.append(world.create_tag(group.group_id, name, order=order, agent=world.agent_id))
    return {"tag_group": _group_json(group, created, with_deleted=False)}


def _owned(req: ApiRequest, item: CorpTag | TagGroup, item_id: str) -> None:
    if item.created_by_agent != req.world.agent_id:
        raise WeComError(errors.INVALID_TAGID, f"{item_id} was not created by this app")


def _edit(req: ApiRequest) -> Json:
    world = req.world
    item_id = req.text("id", required=True, code=errors.INVALID_TAGID)
    item: CorpTag | TagGroup | None = world.live_tag(item_id) or world.live_group(item_id)
    if item is None:
        raise WeComError(errors.INVALID_TAGID, item_id)
    _owned(req, item, item_id)
    name = req.text("name")
    if name:
        _check_name(name)
        if isinstance(item, CorpTag):
            siblings = {t.name for t in world.tags_in(item.group_id) if t is not item}
        else:
            siblings = {g.name for g in _live_groups(world) if g is not item}
        if name in siblings:
            raise WeComError(errors.TAG_NAME_EXISTS, name)
        item.name = name
    if "order" in req.body:
        item.order = req.integer("order")
    return {}


def _delete(req: ApiRequest) -> Json:
    world = req.world
    tag_ids, group_ids = req.strings("tag_id"), req.strings("group_id")
    if not tag_ids and not group_ids:
        raise WeComError(errors.INVALID_PARAMETER, "tag_id and group_id are both empty")
    tags: list[CorpTag] = []
    groups: list[TagGroup] = []
    for tag_id in tag_ids:
        tag = world.live_tag(tag_id)
        if tag is None:
            raise WeComError(errors.INVALID_TAGID, tag_id)
        _owned(req, tag, tag_id)
        tags.append(tag)
    for group_id in group_ids:
        group = world.live_group(group_id)
        if group is None:
            raise WeComError(errors.INVALID_TAGID, group_id)
        _owned(req, group, group_id)
        groups.append(group)
    for tag in tags:
        if not tag.deleted:
            world.delete_tag(tag.tag_id)
    for group in groups:
        world.delete_group(group.group_id)
    return {}


ENDPOINTS: dict[str, Endpoint] = {
    "externalcontact/get_corp_tag_list": Endpoint("POST", _list),
    "externalcontact/add_corp_tag": Endpoint("POST", _add),
    "externalcontact/edit_corp_tag": Endpoint("POST", _edit),
    "externalcontact/del_corp_tag": Endpoint("POST", _delete),
}
