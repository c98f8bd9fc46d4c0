"""The engine's bulk writes (COPY and UPDATE … FROM on PostgreSQL, executemany on SQLite)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy.orm import Session

from bot.clock import FrozenClock
from bot.store.db import Database
from bot.store.models import Base
from bot.tagging import bulk
from tests.tagging.rules_world import add_customer, tags_of

TAGS = Base.metadata.tables["customer_tags"]


@pytest.mark.parametrize("copy_update_min", [1, 10_000])
def test_insert_update_delete_round_trip(
    db: Database, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch, copy_update_min: int
) -> None:
    monkeypatch.setattr(bulk, "COPY_UPDATE_MIN", copy_update_min)
    now = clock.now()
    earlier = now - timedelta(days=2)

    def seed(s: Session) -> None:
        for i in range(3):
            add_customer(s, f"wm{i}", now)
        s.flush()
        bulk.insert_rows(
            s,
            TAGS,
            [
                {
                    "external_userid": f"wm{i}",
                    "tag": tag,
                    "family": "keyword",
                    "rule": "r",
                    "reason": "「老板」 in manager li's remark\tand a tab",
                    "since": earlier,
                }
                for i in range(3)
                for tag in ("a", "b")
            ],
        )

    def change(s: Session) -> None:
        # Twice in one transaction: the staging table is reused, not created again.
        for reason in ("first", "second"):
            bulk.update_rows(
                s,
                TAGS,
                ("external_userid", "tag"),
                [
                    {
                        "external_userid": "wm0",
                        "tag": "a",
                        "family": "f",
                        "rule": "r2",
                        "reason": reason,
                    },
                    {
                        "external_userid": "wm1",
                        "tag": "b",
                        "family": "f",
                        "rule": "r2",
                        "reason": reason,
                    },
                ],
            )
        bulk.delete_rows(s, TAGS, ("external_userid", "tag"), [("wm2", "a"), ("wm2", "b")])

    db.call(seed)
    db.call(change)
    tags = db.call(tags_of)
    assert set(tags) == {"wm0", "wm1"}
    assert tags["wm0"]["a"] == ("f", "r2", "second", earlier)
    assert tags["wm1"]["b"] == ("f", "r2", "second", earlier)
    assert tags["wm0"]["b"] == (
        "keyword",
        "r",
        "「老板」 in manager li's remark\tand a tab",
        earlier,
    )


def test_empty_writes_do_nothing(db: Database) -> None:
    def run(s: Session) -> None:
        bulk.insert_rows(s, TAGS, [])
        bulk.update_rows(s, TAGS, ("external_userid", "tag"), [])
        bulk.delete_rows(s, TAGS, ("external_userid", "tag"), [])

    db.call(run)
    assert db.call(tags_of) == {}
