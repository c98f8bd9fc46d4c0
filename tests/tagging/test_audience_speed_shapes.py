"""The statement shapes audiences take for speed, and the indexes they read (migration
0008): a union of branches counts each reachable customer once, and a tag term reads
hand-set corp tags from covering indexes."""

from __future__ import annotations

from alembic import command
from sqlalchemy import Connection, Engine, insert, inspect, select, update

from bot.store.db import Database, make_engine
from bot.store.migrate import alembic_config, upgrade
from bot.store.models import Base
from bot.tagging import audience
from tests.test_customer_numbers import (
    NOW,
    PROFILES,
    TAGS,
    add_customer,
    follow,
)

TAG_GROUPS = Base.metadata.tables["tag_groups"]
CORP_TAGS = Base.metadata.tables["corp_tags"]
FOLLOW_TAGS = Base.metadata.tables["follow_tags"]


def rule_tag(conn: Connection, eid: str, tag: str) -> None:
    values = {"family": "f", "rule": "r", "reason": "why", "since": NOW}
    conn.execute(insert(TAGS).values(external_userid=eid, tag=tag, **values))


def corp_tag(conn: Connection, tag_id: str, name: str) -> None:
    if conn.execute(select(TAG_GROUPS.c.group_id)).first() is None:
        conn.execute(insert(TAG_GROUPS).values(group_id="g1", name="hand", updated_at=NOW))
    conn.execute(insert(CORP_TAGS).values(tag_id=tag_id, group_id="g1", name=name, updated_at=NOW))


def hand_tag(conn: Connection, relation: int, tag_id: str) -> None:
    conn.execute(insert(FOLLOW_TAGS).values(follow_id=relation, tag_id=tag_id))


def test_an_or_counts_each_reachable_customer_once_whichever_branches_match(db: Database) -> None:
    """wm1 matches three branches (rule tag, corp tag, profile) and wm2 the corp tag on
    both of its relations: each counts once. wm3 opted out and wm4's only relation ended,
    so the union loses them however many branches matched them."""
    with db.engine.begin() as conn:
        corp_tag(conn, "et1", "A")
        for eid in ("wm1", "wm2", "wm4"):
            add_customer(conn, eid)
        add_customer(conn, "wm3", opted_out=True)
        hand_tag(conn, follow(conn, "wm1", "m1"), "et1")
        hand_tag(conn, follow(conn, "wm2", "m1"), "et1")
        hand_tag(conn, follow(conn, "wm2", "m2"), "et1")
        follow(conn, "wm3", "m1")
        follow(conn, "wm4", "m1", status="ended")
        for eid in ("wm1", "wm3", "wm4"):
            rule_tag(conn, eid, "A")
        profile = {"imported_at": NOW, "updated_at": NOW, "aum": 1000}
        for key, eid in (("K1", "wm1"), ("K3", "wm3"), ("K4", "wm4")):
            conn.execute(insert(PROFILES).values(customer_key=key, external_userid=eid, **profile))
    expression = 'tag("A") or aum >= 500'
    numbers = db.call(lambda s: list(s.execute(audience.numbers_query(expression)).scalars()))
    assert len(numbers) == len(set(numbers)) == 2
    assert audience.count(db, expression) == 2
    assert sorted(audience.ids(db, expression)) == ["wm1", "wm2"]
    assert audience.per_manager(db, expression) == {"m1": 2, "m2": 1}


def test_a_tag_row_without_its_number_never_yields_a_missing_number(db: Database) -> None:
    """A row whose number copy is missing must not show up as a member without a number
    (NOT IN the unreachable customers lets a NULL through when there are none)."""
    with db.engine.begin() as conn:
        for eid in ("wm1", "wm2"):
            add_customer(conn, eid)
            follow(conn, eid, "m1")
        rule_tag(conn, "wm1", "A")
        rule_tag(conn, "wm2", "B")
        conn.execute(update(TAGS).where(TAGS.c.external_userid == "wm2").values(cid=None))
    expression = 'tag("A") or tag("B")'
    numbers = db.call(lambda s: list(s.execute(audience.numbers_query(expression)).scalars()))
    assert None not in numbers
    assert len(numbers) == 1
    assert audience.count(db, expression) == 1
    assert audience.ids(db, expression) == ["wm1"]


# -- migration 0008 -----------------------------------------------------------------------


def indexes(engine: Engine, table: str) -> dict[str, list[str | None]]:
    return {i["name"] or "": i["column_names"] for i in inspect(engine).get_indexes(table)}


def test_migration_0008_indexes_the_corp_tag_path_and_goes_back(empty_url: str) -> None:
    engine = make_engine(empty_url)
    try:
        upgrade(engine, "0007")
        with engine.begin() as conn:
            add_customer(conn, "wm1")
            corp_tag(conn, "et1", "A")
            hand_tag(conn, follow(conn, "wm1", "m1"), "et1")
        upgrade(engine, "0008")
        relations = indexes(engine, "follow_relations")
        assert relations["ix_follow_relations_id_status_cid"] == ["id", "status", "cid"]
        tags = indexes(engine, "follow_tags")
        assert tags["ix_follow_tags_tag_follow"] == ["tag_id", "follow_id"]
        assert "ix_follow_tags_tag_id" not in tags  # its leading column is covered
        command.downgrade(alembic_config(engine), "0007")
        assert "ix_follow_relations_id_status_cid" not in indexes(engine, "follow_relations")
        assert indexes(engine, "follow_tags")["ix_follow_tags_tag_id"] == ["tag_id"]
        upgrade(engine)
        assert "ix_follow_tags_tag_follow" in indexes(engine, "follow_tags")
        # The hand-set tag written before any of it is found (0011 fills its holders).
        assert audience.ids(Database(engine), 'tag("A")') == ["wm1"]
    finally:
        engine.dispose()
