"""`bot sync` against a small branch: a complete mirror, idempotent, resumable."""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import asdict
from typing import Any

import pytest
from sqlalchemy import select

from bot.sandbox.branch import Branch, build_branch
from bot.store.models import (
    CorpTag,
    Customer,
    FollowRelation,
    FollowTag,
    Group,
    GroupMember,
    Member,
    SyncCheckpoint,
    TagGroup,
)
from bot.sync import SyncReport, run_sync
from bot.wecom.errors import ConfigurationError
from tests.integration.conftest import World

BATCH = "externalcontact/batch/get_by_user"
GROUP_LIST = "externalcontact/groupchat/list"

# Small pages so a 40-customer branch needs several of each.
PAGE = 10


@pytest.fixture
def setting_overrides() -> dict[str, str]:
    return {
        "BOT_SYNC__PAGE_LIMIT": str(PAGE),
        "BOT_SYNC__BATCH_USERIDS": "2",
        "BOT_SYNC__GROUP_PAGE_LIMIT": "2",
    }


@pytest.fixture
def branch(world: World) -> Branch:
    return build_branch(world.wecom, managers=3, customers=40, groups=4, rng=random.Random(5))


def live_relations(world: World) -> dict[tuple[str, str], Any]:
    return {key: r for key, r in world.wecom.relations.items() if r.alive}


def assert_mirror_matches(world: World) -> None:
    """Every live relation, group membership and corp tag of the sandbox, and nothing else."""
    wecom = world.wecom
    truth = live_relations(world)
    relations = {(r.userid, r.external_userid): r for r in world.rows(FollowRelation)}
    active = {key for key, r in relations.items() if r.status == "active"}
    assert active == set(truth)
    for key, rel in truth.items():
        mirrored = relations[key]
        assert (mirrored.remark, mirrored.state, mirrored.add_way) == (
            rel.remark,
            rel.state,
            rel.add_way,
        )
        assert mirrored.remark_mobiles == rel.remark_mobiles
        assert int(mirrored.added_at.timestamp()) == rel.createtime
    tags: dict[tuple[str, str], set[str]] = defaultdict(set)
    for userid, ext, tag_id in world.q(
        lambda s: s.execute(
            select(FollowRelation.userid, FollowRelation.external_userid, FollowTag.tag_id).join(
                FollowRelation, FollowRelation.id == FollowTag.follow_id
            )
        ).all()
    ):
        tags[(userid, ext)].add(tag_id)
    assert {k: v for k, v in tags.items() if k in truth} == {
        key: set(r.tag_ids) for key, r in truth.items() if r.tag_ids
    }
    customers = {c.external_userid: c for c in world.rows(Customer)}
    assert set(customers) >= {ext for _, ext in truth}
    for ext in {ext for _, ext in truth}:
        assert customers[ext].name == wecom.customers[ext].name
        assert customers[ext].unionid == wecom.customers[ext].unionid

    groups = {g.chat_id: g for g in world.rows(Group)}
    live_groups = {c: g for c, g in wecom.groups.items() if not g.dismissed}
    assert {c for c, g in groups.items() if g.status == "active"} == set(live_groups)
    memberships: dict[str, set[str]] = defaultdict(set)
    for m in world.rows(GroupMember, GroupMember.left_at.is_(None)):
        memberships[m.chat_id].add(m.member_id)
    assert dict(memberships) == {c: {m.userid for m in g.members} for c, g in live_groups.items()}
    for chat_id, g in live_groups.items():
        assert (groups[chat_id].name, groups[chat_id].owner) == (g.name, g.owner)
        assert groups[chat_id].member_version == g.member_version

    live_tags = {t.tag_id: t for t in wecom.tags.values() if not t.deleted}
    mirrored_tags = {t.tag_id: t for t in world.rows(CorpTag) if not t.deleted}
    assert {i: (t.group_id, t.name, t.order) for i, t in mirrored_tags.items()} == {
        i: (t.group_id, t.name, t.order) for i, t in live_tags.items()
    }
    assert {g.group_id: g.name for g in world.rows(TagGroup) if not g.deleted} == {
        g.group_id: g.name for g in wecom.tag_groups.values() if not g.deleted
    }


def snapshot(world: World) -> dict[str, Any]:
    """Every mirror row, as plain values (timestamps left out)."""

    def plain(rows: list[Any]) -> list[tuple[Any, ...]]:
        out = []
        for row in rows:
            values = {
                k: v
                for k, v in vars(row).items()
                if not k.startswith("_") and k not in {"updated_at", "fetched_at"}
            }
            out.append(tuple(sorted(values.items(), key=lambda kv: kv[0])))
        return sorted(out, key=repr)

    models: list[type[Any]] = [Member, Customer, FollowRelation, FollowTag, Group]
    models += [GroupMember, TagGroup, CorpTag]
    return {m.__name__: plain(world.rows(m)) for m in models}


def counts(report: SyncReport) -> dict[str, Any]:
    data = asdict(report)
    del data["run_id"]
    return data


async def test_sync_mirrors_the_branch(world: World, branch: Branch) -> None:
    report = await run_sync(world.bot)
    assert_mirror_matches(world)
    truth = live_relations(world)
    assert (report.members, report.relations, report.groups) == (3, len(truth), 4)
    assert report.tags == sum(len(t) for t in branch.tags.values())
    assert report.ended_relations == 0
    assert not report.resumed
    # Paged as configured: 2 + 1 members a batch, 10 relations a page.
    pages = world.calls(BATCH)
    assert len(pages) > 4
    assert all(c.body["limit"] == PAGE for c in pages)
    managers = sorted(branch.managers)
    assert {tuple(c.body["userid_list"]) for c in pages} == {
        tuple(managers[:2]),
        tuple(managers[2:]),
    }
    assert world.rows(SyncCheckpoint) == []


async def test_sync_twice_is_idempotent(world: World, branch: Branch) -> None:
    first = await run_sync(world.bot)
    before = snapshot(world)
    world.clock.advance(3600)
    second = await run_sync(world.bot)
    assert counts(second) == counts(first)
    assert snapshot(world) == before
    assert_mirror_matches(world)


async def test_interrupted_sync_resumes_from_its_checkpoint(
    world: World, branch: Branch, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = world.bot.wecom.externalcontact
    original = api.batch_get_by_user

    async def first_page_then_fault(*args: Any, **kwargs: Any) -> Any:
        page = await original(*args, **kwargs)
        # The next page fails with an errcode nothing retries: the sync stops there.
        world.faults.fail_next(BATCH, 60011)
        monkeypatch.undo()
        return page

    monkeypatch.setattr(api, "batch_get_by_user", first_page_then_fault)
    with pytest.raises(ConfigurationError):
        await run_sync(world.bot)
    interrupted = world.calls(BATCH)
    assert [c.errcode for c in interrupted] == [0, 60011]
    stored = world.count(FollowRelation)
    assert stored == PAGE
    [mark] = [c for c in world.rows(SyncCheckpoint) if c.step.startswith("customers:")]
    assert mark.cursor
    assert not mark.done

    world.clock.advance(60)
    report = await run_sync(world.bot)
    assert report.resumed
    resumed = world.calls(BATCH)[len(interrupted) :]
    first_batch = interrupted[0].body["userid_list"]
    # The first page of the first batch is not read again: the resumed run starts at the
    # cursor the interrupted one saved (the page that failed).
    assert resumed[0].body["userid_list"] == first_batch
    assert resumed[0].body["cursor"] == mark.cursor == interrupted[1].body["cursor"]
    assert not any(
        c.body["userid_list"] == first_batch and not c.body.get("cursor") for c in resumed
    )
    assert report.relations == len(live_relations(world)) - stored
    assert_mirror_matches(world)
    assert world.rows(SyncCheckpoint) == []


async def test_next_sync_ends_what_wecom_no_longer_lists(world: World, branch: Branch) -> None:
    await run_sync(world.bot)
    wecom = world.wecom
    # Changes whose callbacks never arrived: a member dropped a customer, a customer left a
    # group, a group was dismissed.
    gone = next(iter(live_relations(world)))
    wecom.end_follow(*gone)
    chat_id = branch.groups[0]
    leaver = next(m.userid for m in wecom.groups[chat_id].members if m.type == 2)
    wecom.leave_group(chat_id, leaver)
    dismissed = branch.groups[1]
    wecom.groups[dismissed].dismissed = True

    world.clock.advance(3600)
    report = await run_sync(world.bot)
    assert (report.ended_relations, report.dismissed_groups) == (1, 1)
    ended = world.rows(
        FollowRelation, FollowRelation.userid == gone[0], FollowRelation.external_userid == gone[1]
    )
    assert [(r.status, r.ended_reason) for r in ended] == [("ended", "not_listed")]
    left = world.rows(GroupMember, GroupMember.chat_id == chat_id, GroupMember.member_id == leaver)
    assert [r.left_at for r in left] == [world.clock.now()]
    closed = world.q(lambda s: s.get(Group, dismissed))
    assert closed is not None
    assert closed.status == "dismissed"
    assert_mirror_matches(world)
