"""reachability per statement on PostgreSQL: bulk relation writes stay linear

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-23 10:00:00.000000

Migration 0007 kept `customers.reachable` with a row-level trigger on follow_relations
that locked and recomputed the customer once per changed relation, planning its queries
on every call (a plan cached while the table was small turned bulk inserts quadratic).
That cost about 0.6 ms per relation: 20,000 relations inserted in one transaction took
13 s instead of 1.2 s without the trigger, which a large `bot sync` pays in full.

Here one trigger per statement (INSERT, UPDATE and DELETE each: PostgreSQL gives no
transition tables to a trigger with a column list or several events) collects the
customers the statement touched, locks them in one order (two statements touching the
same customers cannot deadlock), and recomputes them in one set-based UPDATE. An UPDATE
that changes neither a relation's status nor its customer (a new remark) touches nobody.

The customer-number copy stays a BEFORE row trigger (it sets the row being written), now
with sequential scans off instead of a plan per call: its one query is a primary-key
lookup, and the cached plan stays one however small the table was when it was made.

SQLite keeps its row triggers: they run in process, without planning or locks, and showed
no such cost.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# Lock the customers a statement touched, in one order, then recompute them in one UPDATE.
# Under READ COMMITTED the UPDATE's snapshot is taken after the locks are granted, so it
# sees the relation changes of a transaction that held them (two managers ending their
# relations with one customer at once cannot both leave the customer reachable).
_REFRESH = """
        PERFORM 1 FROM customers
        WHERE external_userid IN ({touched})
        ORDER BY external_userid
        FOR UPDATE;
        -- MATERIALIZED: inlined, the planner repeats the EXISTS in the filter as a hash of
        -- every active relation, built anew for each statement.
        WITH reach AS MATERIALIZED (
            SELECT c.external_userid, NOT c.opted_out AND EXISTS (
                SELECT 1 FROM follow_relations f
                WHERE f.external_userid = c.external_userid AND f.status = 'active') AS value
            FROM customers c
            WHERE c.external_userid IN ({touched})
        )
        UPDATE customers SET reachable = reach.value
        FROM reach
        WHERE customers.external_userid = reach.external_userid
          AND customers.reachable IS DISTINCT FROM reach.value;
"""

_TOUCHED = {
    "INSERT": "SELECT external_userid FROM new_relations",
    "DELETE": "SELECT external_userid FROM old_relations",
    # Only relations whose status or customer changed; for a moved relation, both customers.
    "UPDATE": (
        "SELECT unnest(ARRAY[o.external_userid, n.external_userid]) AS external_userid"
        " FROM old_relations o JOIN new_relations n ON n.id = o.id"
        " WHERE o.status IS DISTINCT FROM n.status"
        " OR o.external_userid IS DISTINCT FROM n.external_userid"
    ),
}

_TABLES = {
    "INSERT": "NEW TABLE AS new_relations",
    "DELETE": "OLD TABLE AS old_relations",
    "UPDATE": "OLD TABLE AS old_relations NEW TABLE AS new_relations",
}

_NUMBER_FUNCTIONS = ["bot_customer_number()"]
_REACH_FUNCTIONS = ["bot_relation_reach()", "bot_refresh_reach(text)"]


def _function(event: str) -> str:
    # Transition tables are visible to every statement of the function.
    return f"""CREATE FUNCTION bot_relations_reach_{event.lower()}() RETURNS trigger
    LANGUAGE plpgsql SET enable_seqscan = off AS $$
    BEGIN{_REFRESH.format(touched=_TOUCHED[event])}
        RETURN NULL;
    END $$"""


def _trigger(event: str) -> str:
    return (
        f"CREATE TRIGGER follow_relations_reach_{event.lower()} AFTER {event}"
        f" ON follow_relations REFERENCING {_TABLES[event]}"
        f" FOR EACH STATEMENT EXECUTE FUNCTION bot_relations_reach_{event.lower()}()"
    )


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER follow_relations_reach ON follow_relations")
    for function in _REACH_FUNCTIONS:
        op.execute(f"DROP FUNCTION {function}")
    for event in _TOUCHED:
        op.execute(_function(event))
        op.execute(_trigger(event))
    for function in _NUMBER_FUNCTIONS:
        op.execute(f"ALTER FUNCTION {function} RESET plan_cache_mode")
        op.execute(f"ALTER FUNCTION {function} SET enable_seqscan = off")


def _revision_0007() -> ModuleType:
    """Migration 0007's module, whose row-level definitions the downgrade restores."""
    path = Path(__file__).with_name("0007_customer_numbers.py")
    spec = importlib.util.spec_from_file_location("bot_revision_0007", path)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    earlier = _revision_0007()
    for event in _TOUCHED:
        op.execute(f"DROP TRIGGER follow_relations_reach_{event.lower()} ON follow_relations")
        op.execute(f"DROP FUNCTION bot_relations_reach_{event.lower()}()")
    for function in _NUMBER_FUNCTIONS:
        op.execute(f"ALTER FUNCTION {function} RESET enable_seqscan")
        op.execute(f"ALTER FUNCTION {function} SET plan_cache_mode = force_custom_plan")
    for statement in earlier.POSTGRESQL_FUNCTIONS:
        if any(f"FUNCTION {name.split('(')[0]}(" in statement for name in _REACH_FUNCTIONS):
            op.execute(statement)
    for statement in earlier.POSTGRESQL_TRIGGERS:
        if "TRIGGER follow_relations_reach\n" in statement:
            op.execute(statement)
