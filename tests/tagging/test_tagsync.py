"""Tag sync to WeCom against the in-process sandbox: the library, the pushes, hand-set tags."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from bot import mirror
from bot.app import BotApp, create_app
from bot.clock import FrozenClock
from bot.config import Settings
from bot.fetch import fetch_contact
from bot.outbox import queue
from bot.outbox.kinds import MARK_TAG
from bot.sandbox.harness import Sandbox
from bot.sandbox.models import CallRecord
from bot.sandbox.script import NewCustomer
from bot.sandbox.world import SandboxWorld
from bot.store.db import Database
from bot.store.models import (
    CorpTag,
    CustomerTag,
    FollowRelation,
    FollowTag,
    OutboxItem,
    PushedTag,
    RuleTagMapping,
    TagGroup,
)
from bot.tagging import tag_library
from bot.tagging.tag_library import ensure_tag_library, rule_tag_catalogue
from bot.tagging.tagsync import SyncPlan, TagSyncReport, plan_tag_sync, relation_diff, run_tag_sync
from bot.tagging.tagsync_push import mark_tag_key
from tests.integration.conftest import (
    AES_KEY,
    AGENT_ID,
    CORP_ID,
    SECRET,
    TOKEN,
    WANG,
    ZHANG,
    fast_commits,
    integration_settings,
)

MARK = "externalcontact/mark_tag"
ADD = "externalcontact/add_corp_tag"
LIST = "externalcontact/get_corp_tag_list"
EDIT = "externalcontact/edit_corp_tag"


@dataclass
class TagWorld:
    """The bot wired to a sandbox, with helpers for customers and their rule tags."""

    clock: FrozenClock
    sandbox: Sandbox
    db: Database
    settings: Settings
    bot: BotApp

    @property
    def wecom(self) -> SandboxWorld:
        return self.sandbox.world

    def calls(self, path: str | None = None) -> list[CallRecord]:
        return self.wecom.calls(path)

    def family_of(self, tag: str) -> str:
        for family, tags in rule_tag_catalogue(self.settings.tagging).items():
            if tag in tags:
                return family
        return "keyword"

    async def customer(self, name: str, *managers: str) -> str:
        """A customer following `managers` for an hour already, stored in the mirror the
        way the add-contact handler stores one."""
        ext = self.sandbox.script.new_customer(NewCustomer(name))
        for userid in managers:
            self.wecom.add_follow(userid, ext, at=self.clock.timestamp() - 3600)
        await self.refetch(ext)
        return ext

    async def refetch(self, ext: str) -> None:
        """What the edit_external_contact handler stores, without the rules engine that
        handler also runs (these tests set the desired tags themselves)."""
        contact, follow, complete = await fetch_contact(self.bot.wecom, ext)
        now = self.clock.now()
        await self.db.run(
            lambda s: mirror.apply_contact_detail(s, contact, follow, now=now, complete=complete)
        )

    def set_rule_tags(self, ext: str, *tags: str) -> None:
        """What the rules engine leaves in customer_tags: the desired state."""
        now = self.clock.now()

        def write(session: Session) -> None:
            session.execute(delete(CustomerTag).where(CustomerTag.external_userid == ext))
            for tag in tags:
                session.add(
                    CustomerTag(
                        external_userid=ext,
                        tag=tag,
                        family=self.family_of(tag),
                        rule="test",
                        reason="set by the test",
                        since=now,
                    )
                )

        self.db.call(write)

    def rule_tags(self, ext: str) -> set[str]:
        query = select(CustomerTag.tag).where(CustomerTag.external_userid == ext)
        return self.db.call(lambda s: set(s.scalars(query)))

    def tag_id(self, name: str) -> str:
        """The sandbox id of the bot's tag called `name`."""
        found = [
            t
            for t in self.wecom.tags.values()
            if t.name == name and not t.deleted and t.created_by_agent == AGENT_ID
        ]
        assert len(found) == 1, (name, found)
        return found[0].tag_id

    def on_customer(self, userid: str, ext: str) -> set[str]:
        """Tag names the sandbox shows on the relation."""
        return {self.wecom.tags[t].name for t in self.wecom.relations[(userid, ext)].tag_ids}

    def pushed(self, userid: str, ext: str) -> set[str]:
        ids = self.db.call(
            lambda s: set(
                s.scalars(
                    select(PushedTag.wecom_tag_id).where(
                        PushedTag.userid == userid, PushedTag.external_userid == ext
                    )
                )
            )
        )
        return {self.wecom.tags[t].name for t in ids}

    def mirrored(self, userid: str, ext: str) -> set[str]:
        ids = self.db.call(
            lambda s: set(
                s.scalars(
                    select(FollowTag.tag_id)
                    .join(FollowRelation, FollowRelation.id == FollowTag.follow_id)
                    .where(FollowRelation.userid == userid, FollowRelation.external_userid == ext)
                )
            )
        )
        return {self.wecom.tags[t].name for t in ids}

    def mapping(self) -> dict[str, str | None]:
        query = select(RuleTagMapping.tag, RuleTagMapping.wecom_tag_id)
        return self.db.call(lambda s: dict(s.execute(query).all()))

    def outbox(self) -> list[OutboxItem]:
        return list(
            self.db.call(
                lambda s: s.scalars(select(OutboxItem).where(OutboxItem.kind == MARK_TAG)).all()
            )
        )

    async def sync(self, *, retry_failed: bool = False) -> TagSyncReport:
        return await run_tag_sync(self.bot, send=True, retry_failed=retry_failed)

    async def settle(self) -> None:
        """Deliver owed callbacks (a member's edits in the client) and let the bot act."""
        deliverer = self.sandbox.deliverer_to(self.bot.asgi)
        try:
            await deliverer.flush()
        finally:
            await deliverer.aclose()
        await self.bot.drain()
        # The handler reads a new customer again as WeCom's listing catches up (84061).
        for _ in range(5):
            self.clock.advance(2)
            await self.bot.drain()

    async def until_idle(self, step: float = 61.0, rounds: int = 10) -> None:
        """Let simulated time pass until no mark_tag row is waiting for a retry."""
        for _ in range(rounds):
            if not [r for r in self.outbox() if r.status in queue.OPEN_STATUSES]:
                return
            self.clock.advance(step)
            await self.bot.drain()
        raise AssertionError("mark_tag rows still open")


@pytest.fixture
async def tw(clock: FrozenClock, db: Database) -> AsyncIterator[TagWorld]:
    sandbox = Sandbox.create(
        clock,
        seed=5,
        token=TOKEN,
        encoding_aes_key=AES_KEY,
        corp_id=CORP_ID,
        agent_id=AGENT_ID,
        secret=SECRET,
    )
    sandbox.world.add_member(ZHANG, "张丽（客户经理）")
    sandbox.world.add_member(WANG, "王建华（客户经理）")
    settings = integration_settings(db.engine.url.render_as_string(hide_password=False))
    fast_commits(db)
    bot = create_app(settings, clock=clock, transport=sandbox.api_transport(), db=db)
    try:
        yield TagWorld(clock, sandbox, db, settings, bot)
    finally:
        await bot.wecom.aclose()
        sandbox.world.assert_no_unknown_calls()


# -- the pure rule -------------------------------------------------------------------------


def test_relation_diff_adds_what_is_missing_and_removes_only_own_pushes() -> None:
    managed = {"a", "b", "c", "h"}
    # h was set by hand: present, never pushed. It is neither added over nor removed.
    add, remove = relation_diff({"a", "h"}, pushed={"b"}, present={"b", "h"}, managed=managed)
    assert (add, remove) == (["a"], ["b"])
    add, remove = relation_diff(set(), pushed=set(), present={"h"}, managed=managed)
    assert (add, remove) == ([], [])
    # A push from outside the bot's groups (another feature's tag) is not tag sync's to undo.
    assert relation_diff(set(), pushed={"x"}, present={"x"}, managed=managed) == ([], [])


def test_mark_tag_key_names_the_change_not_the_order() -> None:
    key = mark_tag_key("u", "wm1", ["b", "a"], ["c"])
    assert key == mark_tag_key("u", "wm1", ["a", "b"], ["c"])
    assert key.startswith("mark_tag:u:wm1:")
    assert key != mark_tag_key("u", "wm1", ["a", "b"], [])
    assert key != mark_tag_key("u", "wm1", ["c"], ["a", "b"])
    assert key != mark_tag_key("v", "wm1", ["a", "b"], ["c"])


# -- the tag library -----------------------------------------------------------------------


async def test_library_is_created_once_mapped_and_mirrored_without_callbacks(
    tw: TagWorld,
) -> None:
    catalogue = rule_tag_catalogue(tw.settings.tagging)
    names = tw.settings.tag_sync.group_names
    report = await ensure_tag_library(tw.bot.wecom, tw.db, settings=tw.settings, now=tw.clock.now())
    assert report.problems == []
    assert report.created_groups == len(catalogue) == 6
    assert report.created_tags == sum(len(t) for t in catalogue.values())
    # One add_corp_tag per family, each creating its group by name with all its tags.
    adds = tw.calls(ADD)
    assert sorted(c.body["group_name"] for c in adds) == sorted(names[f] for f in catalogue)
    groups = {g.name: g for g in tw.wecom.tag_groups.values()}
    for family, tags in catalogue.items():
        group = groups[names[family]]
        assert group.created_by_agent == AGENT_ID
        # Listed in config order (WeCom shows a larger order first).
        listed = sorted(tw.wecom.tags_in(group.group_id), key=lambda t: -t.order)
        assert [t.name for t in listed] == tags
    # rule_tag_map names each tag's WeCom id ...
    mapping = {r.tag: r for r in tw.db.call(lambda s: s.scalars(select(RuleTagMapping)).all())}
    for family, tags in catalogue.items():
        for tag in tags:
            assert mapping[tag].family == family
            assert mapping[tag].wecom_tag_id == tw.tag_id(tag)
            assert mapping[tag].wecom_group_id == groups[names[family]].group_id
    # ... and the mirror holds them although WeCom sends no callback for API changes.
    assert tw.wecom.ledger.emitted_callbacks == []
    mirrored = {t.tag_id: t for t in tw.db.call(lambda s: s.scalars(select(CorpTag)).all())}
    assert {m.wecom_tag_id for m in mapping.values()} <= set(mirrored)
    assert {g.name for g in tw.db.call(lambda s: s.scalars(select(TagGroup)).all())} == set(
        names.values()
    )

    # A second run finds the mapping and mirror complete: it does not even ask WeCom.
    before = len(tw.calls())
    again = await ensure_tag_library(tw.bot.wecom, tw.db, settings=tw.settings, now=tw.clock.now())
    assert len(tw.calls()) == before
    assert (again.created_groups, again.created_tags, again.read_wecom) == (0, 0, False)
    assert {f.status for f in again.families} == {tag_library.OK}
    # Asked to re-read, it reads once and creates nothing.
    refreshed = await ensure_tag_library(
        tw.bot.wecom, tw.db, settings=tw.settings, now=tw.clock.now(), refresh=True
    )
    assert [c.path for c in tw.calls()[before:]] == [LIST]
    assert refreshed.created_tags == 0


async def test_a_new_rule_tag_is_added_to_the_familys_own_group(tw: TagWorld) -> None:
    await ensure_tag_library(tw.bot.wecom, tw.db, settings=tw.settings, now=tw.clock.now())
    ext = await tw.customer("郭靖", ZHANG)
    # A keyword tag some rule set that config does not list (yet).
    tw.set_rule_tags(ext, "摄影爱好者")
    report = await ensure_tag_library(tw.bot.wecom, tw.db, settings=tw.settings, now=tw.clock.now())
    keyword = report.family("keyword")
    assert keyword is not None
    assert (keyword.status, keyword.created_tags) == (tag_library.EXTENDED, ["摄影爱好者"])
    group_id = next(g.group_id for g in tw.wecom.tag_groups.values() if g.name == "兴趣标签")
    last = tw.calls(ADD)[-1]
    assert last.body["group_id"] == group_id
    assert "group_name" not in last.body
    assert [t["name"] for t in last.body["tag"]] == ["摄影爱好者"]
    row = tw.db.call(lambda s: s.get(RuleTagMapping, "摄影爱好者"))
    assert row is not None
    assert row.wecom_tag_id == tw.tag_id("摄影爱好者")


async def test_a_group_of_the_same_name_made_by_someone_else_is_reported_and_left_alone(
    tw: TagWorld,
) -> None:
    # An admin made 资产等级 in the console before the bot ever ran.
    group, _ = tw.sandbox.script.admin_creates_tag("资产等级", ["资产5万+", "高净值"])
    before = {(t.tag_id, t.name, t.order) for t in tw.wecom.tags_in(group.group_id)}
    ext = await tw.customer("黄蓉", ZHANG)
    tw.set_rule_tags(ext, "资产5万+", "代发客户")

    report = await tw.sync()

    asset = report.library.family("asset")
    assert asset is not None
    assert asset.status == tag_library.FOREIGN
    assert asset.group_id == group.group_id
    assert asset.problem is not None
    assert "not created by this app" in asset.problem
    assert report.library.problems[0].startswith("asset (资产等级)")
    # Nothing was added to, or changed in, the foreign group; the other families exist.
    assert {(t.tag_id, t.name, t.order) for t in tw.wecom.tags_in(group.group_id)} == before
    assert all(c.body.get("group_id") != group.group_id for c in tw.calls(ADD))
    assert "资产等级" not in {c.body.get("group_name") for c in tw.calls(ADD)}
    # The one call that touched it: a no-op edit to learn who owns it, refused.
    assert [c.errcode for c in tw.calls(EDIT)] == [40068]
    assert tw.db.call(lambda s: s.get(RuleTagMapping, "资产5万+")) is None
    # The customer gets the tags that can be pushed; the asset tag is reported unmapped.
    assert tw.on_customer(ZHANG, ext) == {"代发客户"}
    assert report.plan.unmapped == {"资产5万+": 1}


async def test_a_lost_mapping_is_rebuilt_from_the_groups_this_app_created(tw: TagWorld) -> None:
    await ensure_tag_library(tw.bot.wecom, tw.db, settings=tw.settings, now=tw.clock.now())
    ids = tw.mapping()
    tw.db.call(lambda s: s.execute(delete(RuleTagMapping)))
    adds = len(tw.calls(ADD))

    report = await ensure_tag_library(tw.bot.wecom, tw.db, settings=tw.settings, now=tw.clock.now())

    assert {f.status for f in report.families} == {tag_library.ADOPTED}
    assert len(tw.calls(ADD)) == adds  # nothing created twice
    assert len(tw.calls(EDIT)) == 6  # one ownership probe per group, each a no-op
    assert tw.mapping() == ids


async def test_a_tag_deleted_in_the_console_is_recreated_and_pushed_again(tw: TagWorld) -> None:
    ext = await tw.customer("欧阳锋", ZHANG)
    tw.set_rule_tags(ext, "代发客户")
    await tw.sync()
    old = tw.tag_id("代发客户")
    tw.sandbox.script.admin_deletes_tag(old)  # WeCom strips it from every customer
    await tw.settle()  # the change_external_tag callback marks it deleted in the mirror
    assert tw.on_customer(ZHANG, ext) == set()
    # A callback's incremental plan neither removes the deleted tag (WeCom did) nor has
    # a tag to add until the library is repaired.
    quick = plan_tag_sync(tw.db, settings=tw.settings, now=tw.clock.now(), external_userids=[ext])
    assert (quick.changed, quick.unmapped) == (0, {"代发客户": 1})

    report = await tw.sync()

    new = tw.tag_id("代发客户")
    assert new != old
    assert report.plan.pruned == 1
    assert tw.on_customer(ZHANG, ext) == {"代发客户"}
    assert tw.pushed(ZHANG, ext) == {"代发客户"}


async def test_a_family_without_a_group_name_is_noted_and_not_synced(tw: TagWorld) -> None:
    names = {k: v for k, v in tw.settings.tag_sync.group_names.items() if k != "keyword"}
    tw.bot.settings = tw.settings.model_copy(
        update={"tag_sync": tw.settings.tag_sync.model_copy(update={"group_names": names})}
    )
    ext = await tw.customer("程英", ZHANG)
    tw.set_rule_tags(ext, "教师", "代发客户")

    report = await tw.sync()

    keyword = report.library.family("keyword")
    assert keyword is not None
    assert keyword.status == tag_library.UNCONFIGURED
    assert keyword.note is not None
    assert report.library.problems == []
    assert "兴趣标签" not in {g.name for g in tw.wecom.tag_groups.values()}
    assert tw.on_customer(ZHANG, ext) == {"代发客户"}
    assert report.plan.unmapped == {"教师": 1}


# -- pushing -------------------------------------------------------------------------------


async def test_rule_tags_reach_every_active_relation_and_the_mirror(tw: TagWorld) -> None:
    ext = await tw.customer("李娜", ZHANG, WANG)
    tw.set_rule_tags(ext, "资产50万+", "代发客户")
    emitted = len(tw.wecom.ledger.emitted_callbacks)

    report = await tw.sync()

    assert (report.plan.relations, report.plan.changed, report.plan.adds) == (2, 2, 4)
    assert report.plan.enqueued == 2
    assert report.still_open == 0
    calls = tw.calls(MARK)
    assert sorted(c.body["userid"] for c in calls) == [WANG, ZHANG]
    assert all(c.errcode == 0 and c.body["external_userid"] == ext for c in calls)
    for userid in (ZHANG, WANG):
        assert tw.on_customer(userid, ext) == {"资产50万+", "代发客户"}
        assert tw.pushed(userid, ext) == {"资产50万+", "代发客户"}
        assert tw.mirrored(userid, ext) == {"资产50万+", "代发客户"}
    assert [(r.status, r.lane) for r in tw.outbox()] == [(queue.SENT, queue.BULK)] * 2
    assert len(tw.wecom.ledger.emitted_callbacks) == emitted  # the API path told the mirror


async def test_running_twice_sends_nothing_the_second_time(tw: TagWorld) -> None:
    first = await tw.customer("张三", ZHANG, WANG)
    second = await tw.customer("李四", WANG)
    tw.set_rule_tags(first, "资产10万+", "老年客户", "渠道-大堂")
    tw.set_rule_tags(second, "成熟客户")
    await tw.sync()
    rows, calls = len(tw.outbox()), len(tw.calls())
    assert len(tw.calls(MARK)) == 3

    again = await tw.sync()

    assert (again.plan.changed, again.plan.enqueued, again.plan.existing) == (0, 0, 0)
    assert len(tw.outbox()) == rows
    assert len(tw.calls()) == calls  # no WeCom call of any kind


async def test_a_rule_tag_that_goes_away_comes_off_but_hand_set_tags_stay(tw: TagWorld) -> None:
    ext = await tw.customer("王五", ZHANG)
    vip_group, [vip] = tw.sandbox.script.admin_creates_tag("客户经理标记", ["重点客户"])
    tw.set_rule_tags(ext, "资产10万+", "老年客户")
    await tw.sync()
    # The manager, in the WeCom client, adds a tag of the bot's own asset group by hand
    # and one of the admin's group.
    tw.sandbox.script.member_edits_customer(
        ZHANG, ext, add_tags=[tw.tag_id("资产5万+"), vip.tag_id]
    )
    await tw.refetch(ext)
    assert tw.mirrored(ZHANG, ext) == {"资产10万+", "老年客户", "资产5万+", "重点客户"}

    # The customer moves up a tier and the senior tag no longer applies.
    tw.set_rule_tags(ext, "资产50万+")
    report = await tw.sync()

    assert (report.plan.adds, report.plan.removes) == (1, 2)
    last = tw.calls(MARK)[-1].body
    assert sorted(last["remove_tag"]) == sorted([tw.tag_id("资产10万+"), tw.tag_id("老年客户")])
    assert last["add_tag"] == [tw.tag_id("资产50万+")]
    assert tw.on_customer(ZHANG, ext) == {"资产50万+", "资产5万+", "重点客户"}
    assert tw.pushed(ZHANG, ext) == {"资产50万+"}
    assert tw.mirrored(ZHANG, ext) == {"资产50万+", "资产5万+", "重点客户"}

    # No rule tags at all: only the bot's own push comes off; the hand-set 资产5万+ stays.
    tw.set_rule_tags(ext)
    report = await tw.sync()
    assert (report.plan.adds, report.plan.removes) == (0, 1)
    assert tw.on_customer(ZHANG, ext) == {"资产5万+", "重点客户"}
    assert tw.pushed(ZHANG, ext) == set()
    assert vip_group.group_id in tw.wecom.tag_groups


async def test_a_tag_the_relation_has_by_hand_is_not_added_nor_later_removed(
    tw: TagWorld,
) -> None:
    await ensure_tag_library(tw.bot.wecom, tw.db, settings=tw.settings, now=tw.clock.now())
    ext = await tw.customer("赵六", ZHANG)
    tw.sandbox.script.member_edits_customer(ZHANG, ext, add_tags=[tw.tag_id("代发客户")])
    await tw.refetch(ext)
    tw.set_rule_tags(ext, "代发客户", "资产5万+")

    report = await tw.sync()

    assert report.plan.kept_by_hand == 1
    [call] = tw.calls(MARK)
    assert call.body["add_tag"] == [tw.tag_id("资产5万+")]
    assert call.body.get("remove_tag", []) == []
    assert tw.pushed(ZHANG, ext) == {"资产5万+"}

    # The payroll flag goes: the tag was the manager's, not the bot's, so it stays on.
    tw.set_rule_tags(ext, "资产5万+")
    again = await tw.sync()
    assert again.plan.changed == 0
    assert len(tw.calls(MARK)) == 1
    assert tw.on_customer(ZHANG, ext) == {"代发客户", "资产5万+"}


async def test_quota_busy_and_concurrency_faults_are_retried_to_the_right_state(
    tw: TagWorld,
) -> None:
    customers = [await tw.customer(f"客户{i}", ZHANG) for i in range(3)]
    for ext in customers:
        tw.set_rule_tags(ext, "资产10万+", "成长客户")
    tw.wecom.faults.fail_next(MARK, 45009)
    tw.wecom.faults.fail_next(MARK, -1)
    tw.wecom.faults.fail_next(MARK, 45033)

    report = await tw.sync()
    assert report.still_open > 0  # waiting out the quota block and the back-off
    await tw.until_idle()

    injected = [label for path, label in tw.wecom.faults.injected if path == MARK]
    assert sorted(injected) == ["errcode:-1", "errcode:45009", "errcode:45033"]
    assert [r.status for r in tw.outbox()] == [queue.SENT] * 3
    for ext in customers:
        assert tw.on_customer(ZHANG, ext) == {"资产10万+", "成长客户"}
        assert tw.pushed(ZHANG, ext) == {"资产10万+", "成长客户"}
    # Settled: nothing more to send.
    calls = len(tw.calls())
    assert (await tw.sync()).plan.enqueued == 0
    assert len(tw.calls()) == calls


async def test_callbacks_retag_and_push_while_hand_set_tags_stay(tw: TagWorld) -> None:
    """The whole path: a callback, the rules engine, tag sync, the outbox, WeCom."""
    await ensure_tag_library(tw.bot.wecom, tw.db, settings=tw.settings, now=tw.clock.now())
    ext = tw.sandbox.script.customer_adds_member(
        NewCustomer("杨过"), ZHANG, state="qr_lobby"
    ).external_userid
    await tw.settle()
    assert "渠道-大堂" in tw.rule_tags(ext)
    assert tw.on_customer(ZHANG, ext) == tw.rule_tags(ext)

    # The manager puts the top asset tier on by hand; then edits the remark, which the
    # keyword rules read.
    tw.sandbox.script.member_edits_customer(ZHANG, ext, add_tags=[tw.tag_id("资产600万+")])
    await tw.settle()
    tw.sandbox.script.member_edits_customer(ZHANG, ext, remark="退休干部")
    await tw.settle()

    assert "退休人员" in tw.rule_tags(ext)
    assert tw.on_customer(ZHANG, ext) == tw.rule_tags(ext) | {"资产600万+"}
    assert "资产600万+" not in tw.pushed(ZHANG, ext)
    # The explicit run finds nothing left to do.
    calls = len(tw.calls())
    assert (await tw.sync()).plan.changed == 0
    assert len(tw.calls()) == calls


async def test_ended_relations_are_not_pushed(tw: TagWorld) -> None:
    ext = await tw.customer("孙七", ZHANG, WANG)
    tw.sandbox.script.member_deletes_customer(WANG, ext)
    await tw.settle()
    ended = tw.db.call(
        lambda s: s.scalar(
            select(FollowRelation.status).where(
                FollowRelation.userid == WANG, FollowRelation.external_userid == ext
            )
        )
    )
    assert ended == mirror.ENDED
    tw.set_rule_tags(ext, "代发客户")
    before = len(tw.calls(MARK))  # the callbacks' own retag may already have pushed

    report = await tw.sync()

    assert report.plan.relations == 1
    assert [c.body["userid"] for c in tw.calls(MARK)[before:]] == [ZHANG]
    assert tw.pushed(WANG, ext) == set()


async def test_a_change_waits_while_an_earlier_row_of_its_relation_is_open(tw: TagWorld) -> None:
    ext = await tw.customer("周八", ZHANG)
    tw.set_rule_tags(ext, "代发客户")
    first = await run_tag_sync(tw.bot)  # queued, not sent
    assert first.plan.enqueued == 1
    tw.set_rule_tags(ext, "代发客户", "老年客户")

    second = plan_tag_sync(tw.db, settings=tw.settings, now=tw.clock.now())
    named = plan_tag_sync(tw.db, settings=tw.settings, now=tw.clock.now(), external_userids=[ext])

    assert (second.deferred, second.enqueued) == (1, 0)
    assert (named.deferred, named.enqueued) == (1, 0)
    await tw.bot.drain()
    third = await tw.sync()
    assert third.plan.enqueued == 1
    assert tw.on_customer(ZHANG, ext) == {"代发客户", "老年客户"}


async def test_a_change_can_come_back_after_it_was_undone(tw: TagWorld) -> None:
    ext = await tw.customer("吴九", ZHANG)
    for tags in (("资产5万+",), (), ("资产5万+",)):
        tw.set_rule_tags(ext, *tags)
        report = await tw.sync()
        assert report.plan.enqueued == 1
        assert tw.on_customer(ZHANG, ext) == set(tags)
    # The first and the third rows are the same change; the sent one gave its key up.
    keys = sorted(r.idempotency_key for r in tw.outbox())
    assert len(keys) == 3
    assert sum("@" in k for k in keys) == 3


async def test_only_the_named_customers_are_planned(tw: TagWorld) -> None:
    first = await tw.customer("郑十", ZHANG)
    second = await tw.customer("钱十一", ZHANG)
    tw.set_rule_tags(first, "代发客户")
    tw.set_rule_tags(second, "代发客户")

    report = await run_tag_sync(tw.bot, external_userids=[first], send=True)

    assert report.plan.customers == 1
    assert [c.body["external_userid"] for c in tw.calls(MARK)] == [first]
    assert tw.on_customer(ZHANG, second) == set()


async def test_a_change_that_failed_for_good_is_requeued_only_when_asked(tw: TagWorld) -> None:
    ext = await tw.customer("冯十二", ZHANG)
    tw.set_rule_tags(ext, "代发客户")
    tw.wecom.faults.fail_next(MARK, 60011)  # outside the app's visibility scope: final
    await tw.sync()
    assert [r.status for r in tw.outbox()] == [queue.FAILED]

    again = await tw.sync()
    assert (again.plan.enqueued, again.plan.existing) == (0, 1)
    assert tw.on_customer(ZHANG, ext) == set()

    retried = await tw.sync(retry_failed=True)
    assert (retried.plan.requeued_failed, retried.plan.enqueued) == (1, 1)
    assert tw.on_customer(ZHANG, ext) == {"代发客户"}


async def test_dry_run_creates_and_queues_nothing(tw: TagWorld) -> None:
    ext = await tw.customer("陈十三", ZHANG)
    tw.set_rule_tags(ext, "代发客户", "资产5万+")

    report = await run_tag_sync(tw.bot, dry_run=True, send=True)

    assert {f.status for f in report.library.families} == {tag_library.WOULD_CREATE}
    assert tw.calls(ADD) == []
    assert tw.wecom.tag_groups == {}
    assert report.plan.unmapped == {"代发客户": 1, "资产5万+": 1}
    # With the library in place, a dry run shows the pushes without queueing them.
    await ensure_tag_library(tw.bot.wecom, tw.db, settings=tw.settings, now=tw.clock.now())
    plan = await run_tag_sync(tw.bot, dry_run=True)
    assert (plan.plan.enqueued, plan.plan.adds) == (1, 2)
    assert plan.plan.sample[0].add == ("代发客户", "资产5万+")
    assert tw.outbox() == []
    assert tw.calls(MARK) == []


async def test_disabled_tag_sync_does_nothing(tw: TagWorld) -> None:
    settings = tw.settings.model_copy(
        update={"tag_sync": tw.settings.tag_sync.model_copy(update={"enabled": False})}
    )
    tw.bot.settings = settings
    report = await run_tag_sync(tw.bot, send=True)
    assert report.enabled is False
    assert report.summary().startswith("tag sync is disabled")
    assert tw.calls() == []


def test_plan_summary_reads_well() -> None:
    plan = SyncPlan(customers=3, relations=4, changed=2, adds=3, removes=1, enqueued=2)
    plan.unmapped["资产5万+"] = 2
    text = plan.summary()
    assert "2 to change: +3 tag(s), -1 tag(s)" in text
    assert "enqueued 2 mark_tag row(s)" in text
    assert "资产5万+ (2)" in text
