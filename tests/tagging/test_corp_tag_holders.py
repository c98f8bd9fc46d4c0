"""corp_tag_holders: who carries a hand-set tag, kept by triggers whoever writes follow
tags, relations or corp tags (migration 0011), one row or many to a statement."""

from __future__ import annotations

from alembic import command
from sqlalchemy import Connection, delete, insert, select, text, update

from bot.store.db import Database, make_engine
from bot.store.migrate import alembic_config, upgrade
from bot.store.models import Base
from bot.tagging import audience
from tests.tagging.test_audience_speed_shapes import CORP_TAGS, FOLLOW_TAGS, corp_tag, hand_tag
from tests.test_customer_numbers import RELATIONS, add_customer, follow, number, take_turns

HOLDERS = Base.metadata.tables["corp_tag_holders"]


def holders(conn: Connection) -> set[tuple[str, str]]:
    """(tag name, external_userid) pairs, read through the customers' numbers."""
    customers = Base.metadata.tables["customers"]
    rows = conn.execute(
        select(HOLDERS.c.name, customers.c.external_userid).join(
            customers, customers.c.cid == HOLDERS.c.cid
        )
    )
    return {(name, eid) for name, eid in rows}


def test_a_hand_set_tag_holds_while_a_live_tag_sits_on_an_active_relation(db: Database) -> None:
    with db.engine.begin() as conn:
        corp_tag(conn, "et1", "A")
        corp_tag(conn, "et2", "B")
        add_customer(conn, "wm1")
        first, second = follow(conn, "wm1", "m1"), follow(conn, "wm1", "m2")
        hand_tag(conn, first, "et1")
        assert holders(conn) == {("A", "wm1")}
        hand_tag(conn, second, "et1")
        conn.execute(delete(FOLLOW_TAGS).where(FOLLOW_TAGS.c.follow_id == first))
        assert holders(conn) == {("A", "wm1")}  # m2's relation still carries it
        conn.execute(update(RELATIONS).where(RELATIONS.c.id == second).values(status="ended"))
        assert holders(conn) == set()
        conn.execute(update(RELATIONS).where(RELATIONS.c.id == second).values(status="active"))
        assert holders(conn) == {("A", "wm1")}
        hand_tag(conn, first, "et2")
        assert holders(conn) == {("A", "wm1"), ("B", "wm1")}
        conn.execute(delete(RELATIONS).where(RELATIONS.c.id == first))
        assert holders(conn) == {("A", "wm1")}


def test_renaming_or_deleting_a_corp_tag_moves_its_holders(db: Database) -> None:
    with db.engine.begin() as conn:
        corp_tag(conn, "et1", "A")
        for eid in ("wm1", "wm2"):
            add_customer(conn, eid)
            hand_tag(conn, follow(conn, eid, "m1"), "et1")
        assert holders(conn) == {("A", "wm1"), ("A", "wm2")}
        conn.execute(update(CORP_TAGS).where(CORP_TAGS.c.tag_id == "et1").values(name="A2"))
        assert holders(conn) == {("A2", "wm1"), ("A2", "wm2")}
        conn.execute(update(CORP_TAGS).where(CORP_TAGS.c.tag_id == "et1").values(deleted=True))
        assert holders(conn) == set()
        conn.execute(update(CORP_TAGS).where(CORP_TAGS.c.tag_id == "et1").values(deleted=False))
        assert holders(conn) == {("A2", "wm1"), ("A2", "wm2")}
        conn.execute(delete(CORP_TAGS).where(CORP_TAGS.c.tag_id == "et1"))
        assert holders(conn) == set()
        # A follow tag naming a corp tag the mirror learns of later counts from then on.
        corp_tag(conn, "et1", "A3")
        assert holders(conn) == {("A3", "wm1"), ("A3", "wm2")}


def test_many_rows_to_a_statement_and_a_moved_relation(db: Database) -> None:
    with db.engine.begin() as conn:
        corp_tag(conn, "et1", "A")
        ids = []
        for eid, userid in (("wm1", "m1"), ("wm2", "m1"), ("wm3", "m3")):
            add_customer(conn, eid)
            ids.append(follow(conn, eid, userid))
        conn.execute(insert(FOLLOW_TAGS), [{"follow_id": i, "tag_id": "et1"} for i in ids])
        assert holders(conn) == {("A", "wm1"), ("A", "wm2"), ("A", "wm3")}
        conn.execute(delete(FOLLOW_TAGS).where(FOLLOW_TAGS.c.follow_id.in_(ids[:2])))
        assert holders(conn) == {("A", "wm3")}
        # The relation is re-pointed at another customer: the tag goes with it.
        conn.execute(
            update(RELATIONS).where(RELATIONS.c.id == ids[2]).values(external_userid="wm1")
        )
        assert holders(conn) == {("A", "wm1")}
        conn.execute(update(RELATIONS).values(status="ended"))
        assert holders(conn) == set()
    assert audience.ids(db, 'tag("A")') == []


def test_holders_are_filled_from_existing_tags_and_dropped_on_the_way_down(
    empty_url: str,
) -> None:
    engine = make_engine(empty_url)
    try:
        upgrade(engine, "0010")
        with engine.begin() as conn:
            corp_tag(conn, "et1", "A")
            add_customer(conn, "wm1")
            add_customer(conn, "wm2")
            hand_tag(conn, follow(conn, "wm1", "m1"), "et1")
            hand_tag(conn, follow(conn, "wm2", "m1", status="ended"), "et1")
        upgrade(engine)
        with engine.connect() as conn:
            assert holders(conn) == {("A", "wm1")}
        command.downgrade(alembic_config(engine), "0010")
        with engine.begin() as conn:
            # No trigger is left behind to write into the dropped table.
            hand_tag(conn, follow(conn, "wm2", "m2"), "et1")
            tables = conn.execute(text("SELECT count(*) FROM follow_tags")).scalar_one()
        assert tables == 3
        upgrade(engine)
        with engine.connect() as conn:
            assert holders(conn) == {("A", "wm1"), ("A", "wm2")}
    finally:
        engine.dispose()


def test_two_transactions_tagging_one_customer_take_turns(postgres_db: Database) -> None:
    """One transaction removes the customer's only `A` while another adds `A` on the
    customer's other relation: the second waits for the first (the triggers lock the
    customer), recomputes once the first has committed, and the customer still holds `A`."""
    with postgres_db.engine.begin() as conn:
        corp_tag(conn, "et1", "A")
        add_customer(conn, "wm1")
        first_relation, second_relation = follow(conn, "wm1", "m1"), follow(conn, "wm1", "m2")
        hand_tag(conn, first_relation, "et1")
        assert number(conn, "wm1") > 0
    take_turns(
        postgres_db,
        lambda conn: conn.execute(
            delete(FOLLOW_TAGS).where(FOLLOW_TAGS.c.follow_id == first_relation)
        ),
        lambda conn: hand_tag(conn, second_relation, "et1"),
    )
    with postgres_db.engine.connect() as conn:
        assert holders(conn) == {("A", "wm1")}
