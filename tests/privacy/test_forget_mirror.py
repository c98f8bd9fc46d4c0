"""A forgotten customer stays forgotten: WeCom still lists them for their managers, but what
the mirror reads back (contact callbacks, group changes, `bot sync`) stores their ids,
statuses and relations only, never their personal data. Customers not forgotten still get
theirs stored, so every check here can fail."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import event, select

from bot.privacy_forget import forget
from bot.sandbox.branch import build_branch
from bot.store.models import Customer, FollowRelation, FollowTag, GroupMember
from bot.sync import run_sync
from tests.integration.conftest import WANG, ZHANG, World
from tests.privacy.people import OUYANG, ZHOU, Person, everything

BATCH = "externalcontact/batch/get_by_user"
GROUP_LIST = "externalcontact/groupchat/list"
FORGOTTEN_LOOKUP = re.compile(r"forgotten_at IS NOT NULL", re.IGNORECASE)


@pytest.fixture
def setting_overrides() -> dict[str, str]:
    # Small pages, so a sync stores several batches of each kind.
    return {
        "BOT_TAG_SYNC__ENABLED": "false",
        "BOT_SYNC__PAGE_LIMIT": "5",
        "BOT_SYNC__GROUP_PAGE_LIMIT": "2",
    }


def wecom_values(person: Person) -> list[str]:
    """What WeCom holds about `person` and a mirror could copy."""
    return [
        person.name,
        person.mobile,
        person.unionid,
        person.avatar,
        person.corp_name,
        person.remark,
        person.description,
        person.remark_corp_name,
        person.nickname,
    ]


def stored_values(world: World, person: Person) -> list[str]:
    text = world.q(everything)
    return [value for value in wecom_values(person) if value in text]


def customer(world: World, external_userid: str) -> Customer:
    found = world.q(lambda s: s.get(Customer, external_userid))
    assert found is not None
    return found


def relations(world: World, external_userid: str) -> dict[str, FollowRelation]:
    rows = world.rows(FollowRelation, FollowRelation.external_userid == external_userid)
    return {r.userid: r for r in rows}


def tags(world: World, external_userid: str, userid: str) -> set[str]:
    return set(
        world.q(
            lambda s: s.scalars(
                select(FollowTag.tag_id)
                .join(FollowRelation, FollowRelation.id == FollowTag.follow_id)
                .where(
                    FollowRelation.external_userid == external_userid,
                    FollowRelation.userid == userid,
                )
            ).all()
        )
    )


def membership(world: World, chat_id: str, member_id: str) -> GroupMember:
    found = world.q(lambda s: s.get(GroupMember, (chat_id, member_id)))
    assert found is not None
    return found


@dataclass(frozen=True)
class Branch:
    """Two customers known to WeCom with everything a manager can write about them, both
    mirrored through callbacks; then OUYANG is forgotten."""

    world: World
    gold: str
    silver: str
    chat_id: str
    forgotten_at: datetime


@pytest.fixture
async def branch(world: World) -> Branch:
    script, wecom = world.script, world.wecom
    _group, [gold, silver] = script.admin_creates_tag("客户等级", ["金卡", "银卡"])
    for person in (OUYANG, ZHOU):
        wecom.add_customer(
            person.name,
            type=2,
            gender=2,
            unionid=person.unionid,
            corp_name=person.corp_name,
            avatar=person.avatar,
            external_userid=person.external_userid,
        )
        script.customer_adds_member(person.external_userid, ZHANG, state="qr_lobby")
        script.customer_adds_member(person.external_userid, WANG, state="qr_lobby")
    await world.settle()
    world.clock.advance(60)
    for person in (OUYANG, ZHOU):
        wecom.relations[(ZHANG, person.external_userid)].remark_corp_name = person.remark_corp_name
        script.member_edits_customer(
            ZHANG,
            person.external_userid,
            remark=person.remark,
            description=person.description,
            remark_mobiles=[person.mobile],
            add_tags=[gold.tag_id],
        )
    chat = script.create_group(
        ZHANG, "城南支行理财交流群", [WANG, OUYANG.external_userid, ZHOU.external_userid]
    )
    for person in (OUYANG, ZHOU):
        found = chat.member(person.external_userid)
        assert found is not None
        found.group_nickname = person.nickname
    await world.settle()
    # The mirror holds all of it (so the searches below can find what comes back).
    assert stored_values(world, OUYANG) == wecom_values(OUYANG)
    assert stored_values(world, ZHOU) == wecom_values(ZHOU)

    world.clock.advance(60)
    forget(world.db, OUYANG.external_userid, now=world.clock.now())
    assert stored_values(world, OUYANG) == []
    forgotten = Branch(world, gold.tag_id, silver.tag_id, chat.chat_id, world.clock.now())
    world.clock.advance(60)
    return forgotten


def assert_still_forgotten(branch: Branch) -> None:
    world = branch.world
    eid = OUYANG.external_userid
    assert stored_values(world, OUYANG) == []
    mirrored = customer(world, eid)
    assert (mirrored.name, mirrored.avatar, mirrored.unionid, mirrored.corp_name) == (None,) * 4
    assert mirrored.gender is None
    assert mirrored.type == 2
    assert mirrored.forgotten_at == branch.forgotten_at
    assert mirrored.opted_out
    for relation in relations(world, eid).values():
        assert (relation.remark, relation.description, relation.remark_corp_name) == (None,) * 3
        assert not relation.remark_mobiles


async def test_contact_callbacks_keep_relations_and_tags_but_store_nothing_personal(
    branch: Branch,
) -> None:
    world, script = branch.world, branch.world.script
    eid = OUYANG.external_userid
    # Managers keep editing both customers in the client: edit_external_contact.
    for person in (OUYANG, ZHOU):
        script.member_edits_customer(
            ZHANG,
            person.external_userid,
            remark=f"{person.name} 新备注",
            remark_mobiles=[person.mobile, "13700001111"],
            add_tags=[branch.silver],
        )
    await world.settle()

    assert_still_forgotten(branch)
    kept = relations(world, eid)
    assert set(kept) == {ZHANG, WANG}
    assert {r.status for r in kept.values()} == {"active"}
    assert {r.state for r in kept.values()} == {"qr_lobby"}
    assert all(r.added_at is not None and r.add_way is not None for r in kept.values())
    assert tags(world, eid, ZHANG) == {branch.gold, branch.silver}
    # The customer not forgotten gets the new remark as ever.
    other = relations(world, ZHOU.external_userid)[ZHANG]
    assert other.remark == f"{ZHOU.name} 新备注"
    assert other.remark_mobiles == [ZHOU.mobile, "13700001111"]
    assert customer(world, ZHOU.external_userid).name == ZHOU.name
    assert tags(world, ZHOU.external_userid, ZHANG) == {branch.gold, branch.silver}


async def test_a_customer_deleted_and_added_back_stays_forgotten_and_opted_out(
    branch: Branch,
) -> None:
    world, script = branch.world, branch.world.script
    eid = OUYANG.external_userid
    script.member_deletes_customer(WANG, eid)
    await world.settle()
    assert relations(world, eid)[WANG].status == "ended"
    world.clock.advance(3600)

    # add_external_contact: the same external_userid, a new relation with a fresh remark.
    script.customer_adds_member(eid, WANG, state="qr_event")
    world.wecom.relations[(WANG, eid)].remark = f"{OUYANG.name} 重新加回"
    world.wecom.relations[(WANG, eid)].remark_mobiles = [OUYANG.mobile]
    await world.settle()

    assert_still_forgotten(branch)
    back = relations(world, eid)[WANG]
    assert (back.status, back.state, back.ended_at) == ("active", "qr_event", None)
    assert "重新加回" not in world.q(everything)


async def test_sync_reads_everything_again_and_stores_nothing_personal(branch: Branch) -> None:
    world = branch.world
    eid = OUYANG.external_userid

    report = await run_sync(world.bot)

    assert report.customers >= 2
    assert_still_forgotten(branch)
    kept = relations(world, eid)
    assert {userid: r.status for userid, r in kept.items()} == {ZHANG: "active", WANG: "active"}
    assert tags(world, eid, ZHANG) == {branch.gold}
    member = membership(world, branch.chat_id, eid)
    assert (member.name, member.group_nickname, member.unionid) == (None, None, None)
    assert (member.type, member.left_at) == (2, None)
    assert member.join_time is not None
    # The customer not forgotten is stored whole, groups included.
    assert stored_values(world, ZHOU) == wecom_values(ZHOU)
    assert membership(world, branch.chat_id, ZHOU.external_userid).group_nickname == ZHOU.nickname


async def test_group_changes_store_the_membership_without_names(branch: Branch) -> None:
    world, script = branch.world, branch.world.script
    eid, chat_id = OUYANG.external_userid, branch.chat_id
    script.customer_leaves_group(chat_id, eid)
    await world.settle()
    assert membership(world, chat_id, eid).left_at is not None
    world.clock.advance(60)

    # Joining again is applied from the callback's member diff...
    script.customer_joins_group(chat_id, eid)
    await world.settle()
    rejoined = membership(world, chat_id, eid)
    assert (rejoined.left_at, rejoined.join_time) == (None, world.wecom.now())
    assert (rejoined.name, rejoined.unionid) == (None, None)

    # ...and a rename re-reads the whole group, names and nicknames included.
    found = world.wecom.chat(chat_id).member(eid)
    assert found is not None
    found.group_nickname = OUYANG.nickname
    script.rename_group(chat_id, "城南支行理财交流二群")
    await world.settle()

    assert stored_values(world, OUYANG) == []
    member = membership(world, chat_id, eid)
    assert (member.name, member.group_nickname, member.unionid) == (None, None, None)
    assert (member.type, member.left_at, member.join_time) == (2, None, world.wecom.now())
    other = membership(world, chat_id, ZHOU.external_userid)
    assert (other.name, other.group_nickname) == (ZHOU.name, ZHOU.nickname)


async def test_sync_asks_which_customers_are_forgotten_once_per_page(world: World) -> None:
    branch = build_branch(world.wecom, managers=3, customers=30, groups=4, rng=random.Random(8))
    await run_sync(world.bot)
    gone = branch.customers[0]
    named = customer(world, gone).name
    assert named
    forget(world.db, gone, now=world.clock.now())
    world.clock.advance(60)
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    event.listen(world.db.engine, "before_cursor_execute", seen)
    try:
        first_call = len(world.calls(BATCH)), len(world.calls(GROUP_LIST))
        await run_sync(world.bot)
    finally:
        event.remove(world.db.engine, "before_cursor_execute", seen)

    assert customer(world, gone).name is None
    assert named not in world.q(everything)
    pages = len(world.calls(BATCH)) - first_call[0] + len(world.calls(GROUP_LIST)) - first_call[1]
    lookups = [s for s in statements if FORGOTTEN_LOOKUP.search(s)]
    stored = world.count(FollowRelation)
    assert 0 < len(lookups) <= pages < stored
