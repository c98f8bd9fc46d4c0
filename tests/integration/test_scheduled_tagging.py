"""The scheduler's tagging jobs: the nightly full retag pushes what changed to WeCom."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from bot.sandbox.script import NewCustomer
from bot.store.models import CustomerProfile, CustomerTag, GroupSegment
from tests.integration.conftest import ZHANG, World


@pytest.fixture
def setting_overrides() -> dict[str, str]:
    return {"BOT_TAG_SYNC__ENABLED": "true"}


async def test_nightly_retag_tags_customers_and_pushes_the_tags(world: World) -> None:
    added = world.script.customer_adds_member(NewCustomer("钱芳"), ZHANG, state="qr_lobby")
    await world.settle()
    now = world.clock.now()

    def bank_data(session) -> None:
        session.add(
            CustomerProfile(
                customer_key="C1",
                external_userid=added.external_userid,
                aum=620_000.0,
                payroll=True,
                age=45,
                imported_at=now,
                updated_at=now,
            )
        )

    world.db.call(bank_data)  # as an import would leave it, before any retag
    pushed_on_add = len(world.calls("externalcontact/mark_tag"))
    queued = await world.bot.ticker.nightly_retag()
    tags = set(
        world.db.call(
            lambda s: s.scalars(
                select(CustomerTag.tag).where(CustomerTag.external_userid == added.external_userid)
            ).all()
        )
    )
    assert {"资产50万+", "代发客户", "渠道-大堂"} <= tags
    assert queued == 1  # one relation, one mark_tag row
    await world.bot.drain()
    assert len(world.calls("externalcontact/mark_tag")) == pushed_on_add + 1
    relation = world.wecom.relations[(ZHANG, added.external_userid)]
    names = {world.wecom.tags[t].name for t in relation.tag_ids}
    assert {"资产50万+", "代发客户", "渠道-大堂"} <= names
    # Nothing changed since: the next night queues nothing.
    assert await world.bot.ticker.nightly_retag() == 0


async def test_hourly_segments_follow_group_names(world: World) -> None:
    world.script.create_group(ZHANG, "城南代发工资群")
    await world.settle()
    await world.bot.ticker.refresh_segments()
    segments = world.db.call(lambda s: s.scalars(select(GroupSegment.segment)).all())
    assert segments == ["代发工资群"]
