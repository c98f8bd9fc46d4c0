"""Customer numbers (customers.cid, and the cid copies in customer_tags and
customer_profiles) and `customers.reachable`, kept by the database whoever writes the rows;
and migration 0007 filling them in for a store that existed before it."""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Connection, delete, insert, inspect, select, text, update
from sqlalchemy.orm import Session

from bot.store.db import Database, make_engine
from bot.store.migrate import alembic_config, current_revision, upgrade
from bot.store.models import Base, Customer
from bot.tagging import audience

NOW = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)
CUSTOMERS = Base.metadata.tables["customers"]
RELATIONS = Base.metadata.tables["follow_relations"]
TAGS = Base.metadata.tables["customer_tags"]
PROFILES = Base.metadata.tables["customer_profiles"]


def add_customer(conn: Connection, eid: str, *, opted_out: bool = False) -> None:
    conn.execute(
        insert(CUSTOMERS).values(
            external_userid=eid, opted_out=opted_out, created_at=NOW, updated_at=NOW
        )
    )


def follow(conn: Connection, eid: str, userid: str, status: str = "active") -> int:
    """Add a follow relation; its id."""
    row = conn.execute(
        insert(RELATIONS)
        .values(external_userid=eid, userid=userid, status=status, updated_at=NOW)
        .returning(RELATIONS.c.id)
    )
    return int(row.scalar_one())


def reachable(conn: Connection, eid: str) -> bool:
    value = conn.execute(
        select(CUSTOMERS.c.reachable).where(CUSTOMERS.c.external_userid == eid)
    ).scalar_one()
    return bool(value)


def number(conn: Connection, eid: str) -> int:
    value = conn.execute(select(CUSTOMERS.c.cid).where(CUSTOMERS.c.external_userid == eid))
    return int(value.scalar_one())


def profile(key: str, eid: str | None) -> dict[str, object]:
    return {"customer_key": key, "external_userid": eid, "imported_at": NOW, "updated_at": NOW}


def test_every_customer_gets_its_own_number_however_it_is_written(db: Database) -> None:
    with db.engine.begin() as conn:
        add_customer(conn, "wm1")
        add_customer(conn, "wm2")
    with Session(db.engine) as session, session.begin():
        session.add(Customer(external_userid="wm3", created_at=NOW, updated_at=NOW))
    with db.engine.begin() as conn:
        numbers = [number(conn, e) for e in ("wm1", "wm2", "wm3")]
        add_customer(conn, "wm4")
        numbers.append(number(conn, "wm4"))
    assert numbers == sorted(numbers)
    assert len(set(numbers)) == 4
    assert all(n > 0 for n in numbers)


def test_reachable_follows_relations_and_opt_out(db: Database) -> None:
    with db.engine.begin() as conn:
        add_customer(conn, "wm1")
        assert not reachable(conn, "wm1")  # nobody follows them yet
        follow(conn, "wm1", "m1")
        follow(conn, "wm1", "m2")
        assert reachable(conn, "wm1")
        ended = update(RELATIONS).where(RELATIONS.c.external_userid == "wm1")
        conn.execute(ended.where(RELATIONS.c.userid == "m1").values(status="ended"))
        assert reachable(conn, "wm1")  # m2 still follows
        conn.execute(ended.where(RELATIONS.c.userid == "m2").values(status="ended"))
        assert not reachable(conn, "wm1")
        conn.execute(ended.where(RELATIONS.c.userid == "m2").values(status="active"))
        assert reachable(conn, "wm1")

        opt = update(CUSTOMERS).where(CUSTOMERS.c.external_userid == "wm1")
        conn.execute(opt.values(opted_out=True))
        assert not reachable(conn, "wm1")
        follow(conn, "wm1", "m3")  # a new relation does not undo the opt-out
        assert not reachable(conn, "wm1")
        conn.execute(opt.values(opted_out=False))
        assert reachable(conn, "wm1")

        conn.execute(delete(RELATIONS).where(RELATIONS.c.userid != "m1"))
        assert not reachable(conn, "wm1")  # only the ended relation is left


def test_a_relation_moved_to_another_customer_updates_both(db: Database) -> None:
    with db.engine.begin() as conn:
        add_customer(conn, "wm1")
        add_customer(conn, "wm2")
        follow(conn, "wm1", "m1")
        conn.execute(update(RELATIONS).values(external_userid="wm2"))
        assert (reachable(conn, "wm1"), reachable(conn, "wm2")) == (False, True)
        moved = conn.execute(select(RELATIONS.c.cid)).scalar_one()
        assert moved == number(conn, "wm2")


def test_reachable_follows_relations_written_many_to_a_statement(db: Database) -> None:
    """Bulk writes (a sync, an import, a hand-written fix) change many relations in one
    statement; each customer they touch is recomputed, and only those."""
    with db.engine.begin() as conn:
        for eid in ("wm1", "wm2", "wm3", "wm4"):
            add_customer(conn, eid)
        conn.execute(
            insert(RELATIONS),
            [
                {"external_userid": eid, "userid": userid, "status": "active", "updated_at": NOW}
                for eid, userid in (("wm1", "m1"), ("wm2", "m1"), ("wm2", "m2"), ("wm3", "m1"))
            ],
        )
        conn.execute(
            text(
                "INSERT INTO follow_relations (external_userid, userid, status, updated_at)"
                " SELECT external_userid, 'm9', 'ended', updated_at FROM customers"
            )
        )
        state = {eid: reachable(conn, eid) for eid in ("wm1", "wm2", "wm3", "wm4")}
        assert state == {"wm1": True, "wm2": True, "wm3": True, "wm4": False}
        # One UPDATE ends m1's relations: wm2 keeps m2, the others have nobody left.
        conn.execute(update(RELATIONS).where(RELATIONS.c.userid == "m1").values(status="ended"))
        state = {eid: reachable(conn, eid) for eid in ("wm1", "wm2", "wm3", "wm4")}
        assert state == {"wm1": False, "wm2": True, "wm3": False, "wm4": False}
        # One UPDATE that changes neither status nor customer leaves customers alone: a
        # value set by hand on wm4 survives it.
        conn.execute(
            update(CUSTOMERS).where(CUSTOMERS.c.external_userid == "wm4").values(reachable=True)
        )
        conn.execute(update(RELATIONS).values(remark="新备注"))
        assert reachable(conn, "wm4")
        conn.execute(
            update(CUSTOMERS).where(CUSTOMERS.c.external_userid == "wm4").values(reachable=False)
        )
        # One UPDATE reactivates m9's relations with wm1 and wm3, one moves wm3's to wm5.
        add_customer(conn, "wm5")
        conn.execute(
            update(RELATIONS)
            .where(RELATIONS.c.userid == "m9", RELATIONS.c.external_userid.in_(["wm1", "wm3"]))
            .values(status="active")
        )
        conn.execute(
            update(RELATIONS)
            .where(RELATIONS.c.userid == "m9", RELATIONS.c.external_userid == "wm3")
            .values(external_userid="wm5")
        )
        state = {eid: reachable(conn, eid) for eid in ("wm1", "wm2", "wm3", "wm4", "wm5")}
        assert state == {"wm1": True, "wm2": True, "wm3": False, "wm4": False, "wm5": True}
        # One DELETE of every active relation.
        conn.execute(delete(RELATIONS).where(RELATIONS.c.status == "active"))
        assert not any(reachable(conn, eid) for eid in ("wm1", "wm2", "wm3", "wm4", "wm5"))


def test_two_managers_leaving_one_customer_at_once_leave_them_unreachable(
    postgres_db: Database,
) -> None:
    """Each transaction alone still sees the other's relation as active; the customer row
    lock makes the second recompute after the first has committed."""
    with postgres_db.engine.begin() as conn:
        add_customer(conn, "wm1")
        follow(conn, "wm1", "m1")
        follow(conn, "wm1", "m2")

    def end(conn: Connection, userid: str) -> None:
        conn.execute(
            update(RELATIONS)
            .where(RELATIONS.c.external_userid == "wm1", RELATIONS.c.userid == userid)
            .values(status="ended")
        )

    # The second waits for wm1's row lock, which the first holds until it commits.
    take_turns(postgres_db, partial(end, userid="m1"), partial(end, userid="m2"))
    with postgres_db.engine.connect() as conn:
        assert not reachable(conn, "wm1")


def take_turns(
    db: Database, first: Callable[[Connection], object], second: Callable[[Connection], object]
) -> None:
    """Run `first` in a transaction left open, then `second` in another one, which must
    block on a lock the first holds; commit the first and let the second finish."""
    holder = db.engine.connect()
    waiter = db.engine.connect()
    try:
        holder.begin()
        first(holder)
        pid = waiter.execute(text("SELECT pg_backend_pid()")).scalar_one()
        waiter.commit()

        def run_second() -> None:
            with waiter.begin():
                second(waiter)

        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            waiting = pool.submit(run_second)
            _until_blocked(db, pid)
            holder.commit()
            waiting.result(timeout=30)
    finally:
        holder.close()
        waiter.close()


def _until_blocked(db: Database, pid: int) -> None:
    """Wait until backend `pid` waits for a lock another backend holds."""
    with db.engine.connect() as conn:
        for _ in range(3000):
            blockers = conn.execute(text("SELECT pg_blocking_pids(:pid)"), {"pid": pid})
            if blockers.scalar_one():
                return
            conn.rollback()
            time.sleep(0.01)
    raise AssertionError(f"backend {pid} never waited for the customer's lock")


def test_relations_tags_and_profiles_carry_their_customers_number(db: Database) -> None:
    with db.engine.begin() as conn:
        add_customer(conn, "wm1")
        add_customer(conn, "wm2")
        follow(conn, "wm1", "m1")
        follow(conn, "wm2", "m1")
        followed = dict(conn.execute(select(RELATIONS.c.external_userid, RELATIONS.c.cid)).all())
        assert followed == {"wm1": number(conn, "wm1"), "wm2": number(conn, "wm2")}
        tag = {"family": "asset", "rule": "tier", "reason": "r", "since": NOW}
        conn.execute(
            insert(TAGS), [{"external_userid": e, "tag": "T", **tag} for e in ("wm1", "wm2")]
        )
        conn.execute(insert(PROFILES), [profile("K1", "wm2"), profile("K2", None)])
        tagged = dict(conn.execute(select(TAGS.c.external_userid, TAGS.c.cid)).all())
        assert tagged == {"wm1": number(conn, "wm1"), "wm2": number(conn, "wm2")}

        def profile_number(key: str) -> int | None:
            query = select(PROFILES.c.cid).where(PROFILES.c.customer_key == key)
            value = conn.execute(query).scalar_one()
            return None if value is None else int(value)

        assert profile_number("K1") == number(conn, "wm2")
        assert profile_number("K2") is None  # not matched to a WeCom customer
        matched = update(PROFILES).where(PROFILES.c.customer_key == "K2")
        conn.execute(matched.values(external_userid="wm1"))
        assert profile_number("K2") == number(conn, "wm1")
        conn.execute(matched.values(external_userid=None))
        assert profile_number("K2") is None


# -- the migration, on a store written before it ------------------------------------------


def test_migration_numbers_existing_customers_and_finds_who_is_reachable(empty_url: str) -> None:
    engine = make_engine(empty_url)
    try:
        upgrade(engine, "0006")
        old = "INSERT INTO customers (external_userid, opted_out, created_at, updated_at)"
        when = "'2026-11-23 01:00:00'"
        with engine.begin() as conn:
            for eid, opted in (("wm1", False), ("wm2", False), ("wm3", True), ("wm4", False)):
                conn.execute(text(f"{old} VALUES (:e, :o, {when}, {when})"), {"e": eid, "o": opted})
            for eid, status in (("wm1", "active"), ("wm2", "ended"), ("wm3", "active")):
                conn.execute(
                    text(
                        "INSERT INTO follow_relations (external_userid, userid, status,"
                        f" updated_at) VALUES (:e, 'm1', :s, {when})"
                    ),
                    {"e": eid, "s": status},
                )
            conn.execute(
                text(
                    "INSERT INTO customer_tags (external_userid, tag, family, rule, reason,"
                    f" since) VALUES ('wm2', 'T', 'f', 'r', 'why', {when})"
                )
            )
            conn.execute(
                text(
                    "INSERT INTO customer_profiles (customer_key, external_userid, imported_at,"
                    f" updated_at) VALUES ('K1', 'wm4', {when}, {when}),"
                    f" ('K2', NULL, {when}, {when})"
                )
            )
        upgrade(engine)
        with engine.begin() as conn:
            numbers = {e: number(conn, e) for e in ("wm1", "wm2", "wm3", "wm4")}
            assert len(set(numbers.values())) == 4
            assert {e: reachable(conn, e) for e in numbers} == {
                "wm1": True,
                "wm2": False,  # its only relation ended
                "wm3": False,  # opted out
                "wm4": False,  # never followed
            }
            assert conn.execute(select(TAGS.c.cid)).scalar_one() == numbers["wm2"]
            followed = conn.execute(select(RELATIONS.c.external_userid, RELATIONS.c.cid)).all()
            assert sorted(followed) == [(e, numbers[e]) for e in ("wm1", "wm2", "wm3")]
            profiles = dict(conn.execute(select(PROFILES.c.customer_key, PROFILES.c.cid)).all())
            assert profiles == {"K1": numbers["wm4"], "K2": None}
            # New customers continue after the numbers the migration gave out.
            add_customer(conn, "wm5")
            assert number(conn, "wm5") > max(numbers.values())
    finally:
        engine.dispose()


def test_a_sqlite_migration_leaving_orphans_is_refused_and_rolled_back(tmp_path: Path) -> None:
    """With foreign keys unenforced during migrations, the check before commit is what
    stops a broken store: the migration fails naming the rows, and the store stays at its
    revision."""
    engine = make_engine(f"sqlite:///{tmp_path / 'orphans.db'}")
    try:
        upgrade(engine, "0008")
        raw = engine.raw_connection()
        try:
            raw.execute("PRAGMA foreign_keys=OFF")
            raw.execute("INSERT INTO follow_tags (follow_id, tag_id) VALUES (999, 'et9')")
            raw.commit()
        finally:
            raw.close()
        with pytest.raises(RuntimeError, match="without their parent"):
            upgrade(engine)
        assert current_revision(engine) == "0008"
    finally:
        engine.dispose()


def test_the_migration_goes_back_down_and_up_again(empty_url: str) -> None:
    engine = make_engine(empty_url)
    try:
        upgrade(engine)
        with engine.begin() as conn:
            add_customer(conn, "wm9")
            follow(conn, "wm9", "m1")
            tag = {"family": "payroll", "rule": "payroll", "reason": "r", "since": NOW}
            conn.execute(insert(TAGS).values(external_userid="wm9", tag="代发客户", **tag))
            conn.execute(insert(PROFILES).values(profile("k9", "wm9")))
            conn.execute(
                text(
                    "INSERT INTO follow_tags (follow_id, tag_id)"
                    " SELECT id, 'et1' FROM follow_relations"
                )
            )
        kept = ("follow_relations", "customer_tags", "customer_profiles", "follow_tags")
        command.downgrade(alembic_config(engine), "0006")
        columns = {c["name"] for c in inspect(engine).get_columns("customers")}
        assert not columns & {"cid", "reachable"}
        with engine.connect() as conn:
            # Rebuilding customers and follow_relations (SQLite's way of dropping a
            # column) must not cascade to the rows that refer to them.
            counts = {t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one() for t in kept}
        assert counts == dict.fromkeys(kept, 1)
        with engine.begin() as conn:
            # No trigger is left behind to refer to the dropped columns.
            conn.execute(
                text(
                    "INSERT INTO customers (external_userid, opted_out, created_at, updated_at)"
                    " VALUES ('wm0', false, '2026-11-23 01:00:00', '2026-11-23 01:00:00')"
                )
            )
            conn.execute(text("DELETE FROM customers WHERE external_userid = 'wm0'"))
        upgrade(engine)
        with engine.begin() as conn:
            assert reachable(conn, "wm9")
            tagged = conn.execute(select(TAGS.c.cid).where(TAGS.c.external_userid == "wm9"))
            assert tagged.scalar_one() == number(conn, "wm9")
            add_customer(conn, "wm1")
            follow(conn, "wm1", "m1")
            assert reachable(conn, "wm1")
    finally:
        engine.dispose()


def test_an_audience_lists_each_customer_once_whatever_matches_them(db: Database) -> None:
    """Callers join on the audience's numbers, so a customer matched by two branches (a
    rule tag and a corp tag of that name, and a profile condition) must come out once."""
    with db.engine.begin() as conn:
        for eid in ("wm1", "wm2"):
            add_customer(conn, eid)
            follow(conn, eid, "m1")
            follow(conn, eid, "m2")
        tag = {"tag": "T", "family": "f", "rule": "r", "reason": "why", "since": NOW}
        conn.execute(insert(TAGS), [{"external_userid": "wm1", **tag}])
        conn.execute(insert(PROFILES), [{**profile("K1", "wm1"), "aum": 1000}])
    expression = 'tag("T") or aum >= 500 or manager == "m1"'
    numbers = audience.numbers_query(expression)
    found = db.call(lambda s: list(s.execute(numbers).scalars()))
    assert len(found) == len(set(found)) == 2
    assert audience.per_manager(db, expression) == {"m1": 2, "m2": 2}
