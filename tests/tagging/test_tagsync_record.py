"""What a sent mark_tag records locally: the follow_tags mirror and the bot's pushed_tags."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot import mirror
from bot.clock import FrozenClock
from bot.store.db import Database
from bot.store.models import FollowRelation, FollowTag, PushedTag
from bot.tagging.tagsync_push import record_mark_tag
from tests.tagging.rules_world import add_customer, add_relation


def _follow_tags(db: Database) -> dict[str, int | None]:
    rows = db.call(
        lambda s: s.execute(
            select(FollowTag.tag_id, FollowTag.tag_type)
            .join(FollowRelation, FollowRelation.id == FollowTag.follow_id)
            .where(FollowRelation.external_userid == "c1", FollowRelation.userid == "m1")
        ).all()
    )
    return {str(t): ty for t, ty in rows}


def _pushed(db: Database) -> dict[str, object]:
    rows = db.call(lambda s: s.execute(select(PushedTag.wecom_tag_id, PushedTag.pushed_at)).all())
    return {str(t): at for t, at in rows}


def test_a_recorded_mark_tag_updates_the_mirror_and_the_pushed_ledger(
    db: Database, clock: FrozenClock
) -> None:
    now = clock.now()

    def world(s: Session) -> None:
        add_customer(s, "c1", now)
        s.flush()
        add_relation(s, "c1", "m1", now)
        s.flush()
        follow_id = s.scalars(select(FollowRelation.id)).one()
        # A tag the customer's manager set by hand (type 2 would be a personal tag).
        s.add(FollowTag(follow_id=follow_id, tag_id="hand", tag_type=2))
        s.add(FollowTag(follow_id=follow_id, tag_id="old", tag_type=1))

    db.call(world)

    def record(add: list[str], remove: list[str], at: datetime) -> None:
        payload = {"userid": "m1", "external_userid": "c1", "add_tag": add, "remove_tag": remove}
        db.call(lambda s: record_mark_tag(s, payload, {}, at))

    record(["t1", "t2", "hand"], ["old"], now)
    # Removed: gone. Added: there, as corp tags. Already there: kept as it was.
    assert _follow_tags(db) == {"hand": 2, "t1": 1, "t2": 1}
    assert set(_pushed(db)) == {"t1", "t2", "hand"}

    later = now + timedelta(hours=1)
    # The same tag added and removed in one change stays (pushed anew); a tag pushed
    # again keeps the time it was first pushed.
    record(["t1", "hand"], ["t1", "t2"], later)
    assert _follow_tags(db) == {"hand": 2, "t1": 1}
    assert _pushed(db) == {"t1": later, "hand": now}


def test_a_mark_tag_on_an_unknown_relation_changes_nothing(
    db: Database, clock: FrozenClock
) -> None:
    assert db.call(lambda s: mirror.apply_mark_tag(s, "m9", "c9", add=["t1"])) is False
    assert _follow_tags(db) == {}
