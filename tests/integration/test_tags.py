"""change_external_tag end to end, and API-made tag changes (which WeCom never calls back for)."""

from __future__ import annotations

from sqlalchemy import select

from bot import mirror
from bot.sandbox.script import NewCustomer
from bot.store.models import CorpTag, FollowRelation, FollowTag, TagGroup
from tests.integration.conftest import ZHANG, World


def tag_rows(world: World) -> dict[str, CorpTag]:
    return {t.tag_id: t for t in world.rows(CorpTag)}


def group_rows(world: World) -> dict[str, TagGroup]:
    return {g.group_id: g for g in world.rows(TagGroup)}


async def created(world: World) -> tuple[str, dict[str, str]]:
    group, tags = world.script.admin_creates_tag("活动参与", ["已签到", "已答题", "已抽奖"])
    await world.settle()
    return group.group_id, {t.name: t.tag_id for t in tags}


async def test_admin_creates_a_group_with_tags(world: World) -> None:
    group_id, ids = await created(world)
    groups = group_rows(world)
    assert (groups[group_id].name, groups[group_id].deleted) == ("活动参与", False)
    tags = tag_rows(world)
    assert {t.name for t in tags.values()} == {"已签到", "已答题", "已抽奖"}
    assert all(t.group_id == group_id and not t.deleted for t in tags.values())
    assert {t.tag_id: t.order for t in tags.values()} == {
        ids["已签到"]: 1,
        ids["已答题"]: 2,
        ids["已抽奖"]: 3,
    }
    # Adding a tag to the existing group later: one event, one more tag.
    world.clock.advance(5)
    world.script.admin_creates_tag("活动参与", ["已分享"])
    await world.settle()
    assert {t.name for t in tag_rows(world).values()} == {"已签到", "已答题", "已抽奖", "已分享"}


async def test_edits_rename_tags_and_groups(world: World) -> None:
    group_id, ids = await created(world)
    world.clock.advance(5)
    world.script.admin_edits_tag(ids["已签到"], name="本周已签到")
    world.script.admin_edits_tag(group_id, name="活动参与情况")
    await world.settle()
    assert tag_rows(world)[ids["已签到"]].name == "本周已签到"
    assert group_rows(world)[group_id].name == "活动参与情况"
    assert not any(t.deleted for t in tag_rows(world).values())


async def test_deleting_a_tag_then_the_group(world: World) -> None:
    group_id, ids = await created(world)
    world.clock.advance(5)
    world.script.admin_deletes_tag(ids["已答题"])
    await world.settle()
    tags = tag_rows(world)
    assert [name for name, i in ids.items() if tags[i].deleted] == ["已答题"]
    assert group_rows(world)[group_id].deleted is False

    world.clock.advance(5)
    world.script.admin_deletes_tag(group_id)
    await world.settle()
    assert group_rows(world)[group_id].deleted is True
    assert all(t.deleted for t in tag_rows(world).values())


async def test_deleting_the_last_tag_drops_its_group(world: World) -> None:
    group, [only] = world.script.admin_creates_tag("临时标签", ["一次性"])
    await world.settle()
    world.clock.advance(5)
    # WeCom removes the emptied group without an event of its own.
    world.script.admin_deletes_tag(only.tag_id)
    await world.settle()
    assert tag_rows(world)[only.tag_id].deleted is True
    assert group_rows(world)[group.group_id].deleted is True


async def test_shuffle_refreshes_orders(world: World) -> None:
    group_id, ids = await created(world)
    other, _ = world.script.admin_creates_tag("兴趣爱好", ["旅游"])
    await world.settle()
    world.clock.advance(5)
    # Dragging in the console reorders without an update event per tag.
    new_order = {"已签到": 30, "已答题": 10, "已抽奖": 20}
    for name, order in new_order.items():
        world.wecom.tags[ids[name]].order = order
    world.wecom.tag_groups[group_id].order = 7
    world.script.admin_shuffles_tags(group_id)
    await world.settle()
    tags = tag_rows(world)
    assert {name: tags[i].order for name, i in ids.items()} == new_order
    assert group_rows(world)[group_id].order == 7

    # Shuffling everything (empty Id) re-reads every group.
    world.clock.advance(5)
    world.wecom.tag_groups[other.group_id].order = 99
    world.script.admin_shuffles_tags()
    await world.settle()
    assert group_rows(world)[other.group_id].order == 99
    assert not any(g.deleted for g in group_rows(world).values())


async def test_tagging_through_the_api_sends_no_callback(world: World) -> None:
    _, ids = await created(world)
    ext = world.script.customer_adds_member(NewCustomer("黄蓉"), ZHANG).external_userid
    await world.settle()
    emitted = len(world.wecom.ledger.emitted_callbacks)

    await world.bot.wecom.tags.mark_tag(ZHANG, ext, add_tag=[ids["已签到"], ids["已答题"]])
    assert world.wecom.relations[(ZHANG, ext)].tag_ids == [ids["已签到"], ids["已答题"]]
    assert world.deliverer.pending == 0
    assert len(world.wecom.ledger.emitted_callbacks) == emitted
    assert await world.settle() == 0

    def follow_tags() -> set[str]:
        return set(
            world.q(
                lambda s: s.scalars(
                    select(FollowTag.tag_id)
                    .join(FollowRelation, FollowRelation.id == FollowTag.follow_id)
                    .where(FollowRelation.external_userid == ext)
                )
            )
        )

    assert follow_tags() == set()  # nothing told the mirror ...
    # ... until the code path that made the change records it.
    world.q(lambda s: mirror.apply_mark_tag(s, ZHANG, ext, add=[ids["已签到"], ids["已答题"]]))
    assert follow_tags() == {ids["已签到"], ids["已答题"]}
    world.q(lambda s: mirror.apply_mark_tag(s, ZHANG, ext, remove=[ids["已签到"]]))
    assert follow_tags() == {ids["已答题"]}
