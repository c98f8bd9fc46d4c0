"""The demo branch: realistic, deterministic, and playable join events."""

from __future__ import annotations

import random
import re

from bot.clock import FrozenClock
from bot.sandbox import Sandbox, build_branch, plan_join_events, play
from tests.sandbox.conftest import WeCom

CJK = re.compile(r"^[\u4e00-\u9fff]{2,4}$")


def test_branch_is_realistic(clock: FrozenClock) -> None:
    sandbox = Sandbox.create(clock, seed=3)
    world = sandbox.world
    branch = build_branch(world, managers=5, customers=120, groups=12, rng=random.Random(3))
    assert len(branch.managers) == 5
    assert all(world.members[m].name.endswith("（客户经理）") for m in branch.managers)
    assert len(branch.customers) == 120
    assert all(CJK.match(world.customers[c].name) for c in branch.customers)
    assert set(branch.tags) == {"资产等级", "客户类型", "生命周期", "渠道"}
    names = [world.groups[c].name for c in branch.groups]
    assert "代发工资客户群" in names
    assert "银发生活群" in names
    assert any(n.endswith("支行理财交流群") for n in names)
    mobiles = [m for r in world.relations.values() for m in r.remark_mobiles]
    assert mobiles
    assert all(re.fullmatch(r"100\d{8}", m) for m in mobiles)
    states = {r.state for r in world.relations.values()}
    assert states <= {"qr_branch_a", "qr_lobby", "link_wechat_article", "qr_event_poster"}
    # Standing state is not news: building the branch emits no callbacks.
    assert not world.ledger.pending_callbacks
    for relation in world.relations.values():
        channel = {world.tags[t].name for t in relation.tag_ids} & set(branch.tags["渠道"])
        assert len(channel) == 1


def test_branch_is_deterministic(clock: FrozenClock) -> None:
    def snapshot(seed: int) -> list[tuple[str, str]]:
        sandbox = Sandbox.create(clock, seed=seed)
        branch = build_branch(sandbox.world, customers=50, rng=random.Random(seed))
        return [(c, sandbox.world.customers[c].name) for c in branch.customers]

    assert snapshot(5) == snapshot(5)
    assert snapshot(5) != snapshot(6)


async def test_bot_can_read_the_branch(clock: FrozenClock) -> None:
    sandbox = Sandbox.create(clock, seed=3)
    branch = build_branch(sandbox.world, customers=120, rng=random.Random(3))
    async with sandbox.api_client() as http:
        wecom = WeCom(http, sandbox)
        await wecom.login()
        listing = await wecom.post("externalcontact/groupchat/list", {"limit": 100})
        assert len(listing["group_chat_list"]) == 12
        batch = await wecom.post(
            "externalcontact/batch/get_by_user", {"userid_list": branch.managers, "limit": 100}
        )
        assert batch["errcode"] == 0
        assert batch["external_contact_list"]
        tags = await wecom.post("externalcontact/get_corp_tag_list")
        assert next(g["group_name"] for g in tags["tag_group"]) == "资产等级"


def test_planned_joins_play_into_callbacks(clock: FrozenClock) -> None:
    sandbox = Sandbox.create(clock, seed=3)
    world = sandbox.world
    branch = build_branch(world, customers=60, rng=random.Random(3))
    events = list(plan_join_events(world, branch, rng=random.Random(4), count=15))
    assert [e.after for e in events] == sorted(e.after for e in events)
    known: dict[int, str] = {}
    for event in events:
        play(sandbox.script, event, known)
    adds = [c for c in world.ledger.emitted_callbacks if c.change_type == "add_external_contact"]
    joins = [c for c in world.ledger.emitted_callbacks if c.event == "change_external_chat"]
    assert len(adds) == 15
    assert len(joins) == sum(1 for e in events if e.kind == "join_group")
    # A newcomer who joins a group is the same customer who added the manager.
    for event in events:
        if event.kind == "join_group":
            assert world.chat(event.chat_id).member(known[event.ref]) is not None
