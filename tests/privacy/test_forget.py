"""Forgetting a customer: personal data gone from every table, counts kept, opted out."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from bot.clock import FrozenClock
from bot.privacy import hash_id
from bot.privacy_forget import (
    ERASED_REASON,
    MessagesInFlight,
    UnknownCustomer,
    forget,
    opt_out,
)
from bot.store.db import Database
from bot.store.models import (
    AttributeChange,
    Customer,
    CustomerProfile,
    CustomerTag,
    FollowRelation,
    GroupMember,
    MassTask,
    OutboxItem,
    ReceiveCount,
    SlotRun,
    SlotTarget,
)
from tests.privacy.people import OUYANG, ZHOU, Person, everything, row_counts, seed


@pytest.fixture
def seeded(db: Database, clock: FrozenClock) -> Database:
    now = clock.now()
    db.call(lambda s: seed(s, OUYANG, now, run_id=1))
    db.call(lambda s: seed(s, ZHOU, now, run_id=2))
    return db


def leftovers(db: Database, person: Person) -> list[str]:
    text = db.call(everything)
    return [value for value in person.personal_values() if value in text]


@pytest.mark.parametrize("given", [OUYANG.external_userid, OUYANG.customer_key])
def test_every_personal_value_is_gone_and_the_counts_stay(
    seeded: Database, clock: FrozenClock, given: str
) -> None:
    db = seeded
    assert leftovers(db, OUYANG) == OUYANG.personal_values()  # the search can find them
    before = db.call(row_counts)
    clock.advance(60)

    result = forget(db, given, now=clock.now())

    assert result.changed
    assert result.opted_out_now
    assert leftovers(db, OUYANG) == []
    # Rows are kept except the history and the receive-cap counts, which are deleted.
    after = db.call(row_counts)
    assert after["attribute_history"] == before["attribute_history"] - 2
    assert after["receive_counts"] == before["receive_counts"] - 1
    expected = {**before, "attribute_history": after["attribute_history"]}
    expected["receive_counts"] = after["receive_counts"]
    assert after == expected
    # The other customer is untouched.
    assert leftovers(db, ZHOU) == ZHOU.personal_values()
    other = db.call(lambda s: s.get(Customer, ZHOU.external_userid))
    assert other is not None
    assert other.forgotten_at is None


def test_the_fields_that_counts_are_made_of_are_kept(seeded: Database, clock: FrozenClock) -> None:
    db = seeded
    eid = OUYANG.external_userid
    clock.advance(60)
    forget(db, eid, now=clock.now())

    customer = db.call(lambda s: s.get(Customer, eid))
    assert customer is not None
    assert (customer.name, customer.avatar, customer.unionid, customer.corp_name) == (None,) * 4
    assert customer.gender is None
    assert customer.type == 2
    assert customer.opted_out
    assert customer.opted_out_at == clock.now()
    assert customer.forgotten_at == clock.now()

    relations = db.call(
        lambda s: s.scalars(
            select(FollowRelation).where(FollowRelation.external_userid == eid)
        ).all()
    )
    assert len(relations) == 2
    for relation in relations:
        assert relation.remark is None
        assert relation.description is None
        assert relation.remark_corp_name is None
        assert not relation.remark_mobiles
        assert relation.status == "active"
        assert relation.state == "qr_lobby"
        assert relation.added_at is not None

    profile = db.call(lambda s: s.get(CustomerProfile, OUYANG.customer_key))
    assert profile is not None
    assert profile.external_userid == eid
    assert (profile.asset_tier, profile.lifecycle, profile.payroll) == ("T3", "mature", True)
    assert profile.branch == "城南支行"
    for name in ("aum", "aum_trend", "birth_date", "age", "products", "occupation"):
        assert getattr(profile, name) is None, name
    for name in ("interests", "district", "last_login_at", "opened_at"):
        assert getattr(profile, name) is None, name

    tags = db.call(
        lambda s: s.scalars(select(CustomerTag).where(CustomerTag.external_userid == eid)).all()
    )
    assert sorted(t.tag for t in tags) == ["老年客户", "资产50万+"]
    assert {t.reason for t in tags} == {ERASED_REASON}

    member = db.call(
        lambda s: s.scalars(select(GroupMember).where(GroupMember.member_id == eid)).one()
    )
    assert (member.name, member.group_nickname, member.unionid) == (None, None, None)
    assert member.join_time is not None
    assert member.left_at is None

    # The calendar's record of what reached the customer stays whole.
    assert (
        db.call(lambda s: s.scalar(select(SlotTarget.status).where(SlotTarget.target_id == eid)))
        == "delivered"
    )
    task = db.call(lambda s: s.scalars(select(MassTask).where(MassTask.run_id == 1)).one())
    assert (task.targets, task.delivered) == (1, 1)
    stats = db.call(lambda s: s.scalar(select(SlotRun.stats).where(SlotRun.id == 1)))
    assert stats == {"matched": 1, "reached": 1, "tasks": 1, "dropped": {}}
    # The sent task keeps its recipients; its copy names the customer masked.
    payload = db.call(
        lambda s: s.scalars(
            select(OutboxItem.payload).where(OutboxItem.idempotency_key == "mass:1:li")
        ).one()
    )
    assert payload["external_userid"] == [eid]
    assert payload["text"]["content"].startswith("欧***您好")
    gone = db.call(
        lambda s: (
            s.scalars(
                select(AttributeChange).where(AttributeChange.customer_key == OUYANG.customer_key)
            ).all(),
            s.scalars(select(ReceiveCount).where(ReceiveCount.target_id == eid)).all(),
        )
    )
    assert gone == ([], [])


def test_forgetting_twice_changes_nothing_the_second_time(
    seeded: Database, clock: FrozenClock
) -> None:
    db = seeded
    first = forget(db, OUYANG.external_userid, now=clock.now())
    snapshot = db.call(everything)
    clock.advance(3600)

    second = forget(db, OUYANG.customer_key, now=clock.now())

    assert first.changed
    assert not second.changed
    assert not second.opted_out_now
    assert second.summary() == "nothing left to erase"
    assert db.call(everything) == snapshot


def test_forgetting_keeps_the_first_forget_time(seeded: Database, clock: FrozenClock) -> None:
    db = seeded
    eid = OUYANG.external_userid
    first = clock.now()
    forget(db, eid, now=first)
    clock.advance(3600)
    forget(db, eid, now=clock.now())
    customer = db.call(lambda s: s.get(Customer, eid))
    assert customer is not None
    assert customer.forgotten_at == first


def test_a_customer_erased_but_not_marked_is_marked(seeded: Database, clock: FrozenClock) -> None:
    # Forgotten before customers.forgotten_at existed: nothing left to erase, but the mark
    # that keeps the mirror from storing their data again is still missing.
    db = seeded
    eid = OUYANG.external_userid
    forget(db, eid, now=clock.now())
    db.call(lambda s: s.execute(update(Customer).values(forgotten_at=None)))
    clock.advance(3600)

    result = forget(db, eid, now=clock.now())

    assert result.changed
    assert result.forgotten_now
    assert not result.opted_out_now
    assert result.summary() == "nothing left to erase"
    customer = db.call(lambda s: s.get(Customer, eid))
    assert customer is not None
    assert customer.forgotten_at == clock.now()


def test_an_unknown_customer_is_a_clear_error_and_changes_nothing(
    seeded: Database, clock: FrozenClock
) -> None:
    db = seeded
    snapshot = db.call(everything)
    with pytest.raises(UnknownCustomer, match="no customer or bank customer key 'wmNobody'"):
        forget(db, "wmNobody", now=clock.now())
    assert db.call(everything) == snapshot


def test_a_bank_profile_without_a_wecom_customer_is_erased(
    db: Database, clock: FrozenClock
) -> None:
    now = clock.now()

    def add(session: Session) -> None:
        session.add(
            CustomerProfile(
                customer_key="C-PROSPECT",
                occupation="高级会计师",
                birth_date=OUYANG.birth_date,
                aum=1000.0,
                asset_tier=None,
                imported_at=now,
                updated_at=now,
            )
        )

    db.call(add)
    result = forget(db, "C-PROSPECT", now=now)
    assert result.external_userid is None
    assert not result.opted_out_now
    assert result.erased["customer_profiles"] == 1
    profile = db.call(lambda s: s.get(CustomerProfile, "C-PROSPECT"))
    assert profile is not None
    assert (profile.occupation, profile.birth_date, profile.aum) == (None, None, None)


def test_a_message_still_being_sent_holds_the_forget_back(
    seeded: Database, clock: FrozenClock
) -> None:
    db = seeded
    now = clock.now()

    def pending(session: Session) -> None:
        session.add(
            OutboxItem(
                idempotency_key="mass:9:li",
                kind="mass_task",
                payload={
                    "external_userid": [OUYANG.external_userid],
                    "text": {"content": f"{OUYANG.name}您好"},
                },
                status="sending",
                due_at=now,
                created_at=now,
                updated_at=now,
            )
        )

    db.call(pending)
    snapshot = db.call(everything)
    with pytest.raises(MessagesInFlight, match="1 message"):
        forget(db, OUYANG.external_userid, now=now)
    assert db.call(everything) == snapshot
    # Once it has gone out, the forget goes through and masks it too.
    db.call(
        lambda s: s.execute(
            update(OutboxItem)
            .where(OutboxItem.idempotency_key == "mass:9:li")
            .values(status="sent")
        )
    )
    result = forget(db, OUYANG.external_userid, now=now + timedelta(minutes=5))
    assert result.erased["outbox"] == 2
    assert leftovers(db, OUYANG) == []


def test_the_audit_line_carries_hashed_ids_only(
    seeded: Database, clock: FrozenClock, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        forget(seeded, OUYANG.customer_key, now=clock.now())
    [line] = [r.getMessage() for r in caplog.records if r.name == "bot.privacy"]
    assert hash_id(OUYANG.external_userid) in line
    assert hash_id(OUYANG.customer_key) in line
    assert OUYANG.external_userid not in line
    assert OUYANG.customer_key not in line
    assert "opted out" in line


def test_opt_out_and_back_in(seeded: Database, clock: FrozenClock) -> None:
    db = seeded
    eid = ZHOU.external_userid
    assert opt_out(db, ZHOU.customer_key, now=clock.now(), source="test") == (eid, True)
    assert opt_out(db, eid, now=clock.now(), source="test") == (eid, False)
    customer = db.call(lambda s: s.get(Customer, eid))
    assert customer is not None
    assert customer.opted_out
    assert customer.opted_out_at == clock.now()
    assert opt_out(db, eid, now=clock.now(), undo=True, source="test") == (eid, True)
    customer = db.call(lambda s: s.get(Customer, eid))
    assert customer is not None
    assert not customer.opted_out
    assert customer.opted_out_at is None
    # Opting out erases nothing.
    assert leftovers(db, ZHOU) == ZHOU.personal_values()
