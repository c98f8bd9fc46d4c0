"""corp tag holders: who carries a hand-set tag, by tag name and customer number

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-23 13:00:00.000000

`tag(name)` in an audience includes the customers carrying a live corp tag of that name on
an active follow relation (a tag a manager set by hand in WeCom). Read through follow_tags,
follow_relations and corp_tags, that set cost 28–34 ms on SQLite and about 51 ms on
PostgreSQL per tag named, every time an audience was counted or listed: most of the gap
between the bench audience's count and its 200 ms target. corp_tag_holders holds the set
itself, (name, cid), one index range per tag.

Triggers keep it true whoever writes (the mirror's callbacks and sync, `bot forget`, a
hand-written fix): a change to a follow tag, a relation (added, ended, moved, renumbered,
deleted) or a corp tag (added, renamed, deleted) recomputes the holders of the customers
it touches. On PostgreSQL once per statement, over its transition tables, after locking
those customers in external_userid order (the order the reachability triggers lock in),
so that two transactions changing one customer's tags cannot leave a stale holder.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

# The definition, for the customers whose numbers meet `which` (a condition on fr.cid).
_HOLDERS = """
    SELECT DISTINCT ct.name, fr.cid
    FROM follow_relations fr
    JOIN follow_tags ft ON ft.follow_id = fr.id
    JOIN corp_tags ct ON ct.tag_id = ft.tag_id
    WHERE fr.status = 'active' AND fr.cid IS NOT NULL AND ct.deleted = {false}
      AND {which}"""


def _recompute_sqlite(cids: str) -> str:
    return (
        f"DELETE FROM corp_tag_holders WHERE cid IN ({cids});\n"
        "        INSERT OR IGNORE INTO corp_tag_holders (name, cid)"
        f"{_HOLDERS.format(false='0', which=f'fr.cid IN ({cids})')};"
    )


_RELATION_OF = "SELECT cid FROM follow_relations WHERE id = {row}.follow_id"
_TAGGED = (
    "SELECT fr.cid FROM follow_tags ft JOIN follow_relations fr ON fr.id = ft.follow_id"
    " WHERE ft.tag_id = {row}.tag_id"
)


def _sqlite_trigger(name: str, event: str, table: str, *cids: str) -> str:
    body = "\n        ".join(_recompute_sqlite(c) for c in cids)
    return f"CREATE TRIGGER {name} AFTER {event} ON {table}\n    BEGIN\n        {body}\n    END"


SQLITE_TRIGGERS = [
    _sqlite_trigger(
        "follow_tags_holders_insert", "INSERT", "follow_tags", _RELATION_OF.format(row="NEW")
    ),
    _sqlite_trigger(
        "follow_tags_holders_delete", "DELETE", "follow_tags", _RELATION_OF.format(row="OLD")
    ),
    _sqlite_trigger(
        "follow_tags_holders_update",
        "UPDATE",
        "follow_tags",
        _RELATION_OF.format(row="OLD"),
        _RELATION_OF.format(row="NEW"),
    ),
    _sqlite_trigger("follow_relations_holders_insert", "INSERT", "follow_relations", "NEW.cid"),
    _sqlite_trigger(
        "follow_relations_holders_update",
        "UPDATE OF status, cid, id",
        "follow_relations",
        "OLD.cid",
        "NEW.cid",
    ),
    _sqlite_trigger("follow_relations_holders_delete", "DELETE", "follow_relations", "OLD.cid"),
    _sqlite_trigger("corp_tags_holders_insert", "INSERT", "corp_tags", _TAGGED.format(row="NEW")),
    _sqlite_trigger(
        "corp_tags_holders_update",
        "UPDATE OF name, deleted, tag_id",
        "corp_tags",
        _TAGGED.format(row="OLD"),
        _TAGGED.format(row="NEW"),
    ),
    _sqlite_trigger("corp_tags_holders_delete", "DELETE", "corp_tags", _TAGGED.format(row="OLD")),
]

# PostgreSQL: per statement, the numbers of the customers it touched, from its transition
# tables (`changed` names them: new_rows, old_rows, or both).
_TOUCHED_POSTGRESQL = {
    "follow_tags": (
        "SELECT fr.cid FROM {changed} t JOIN follow_relations fr ON fr.id = t.follow_id"
    ),
    "follow_relations": "SELECT t.cid FROM {changed} t",
    "corp_tags": (
        "SELECT fr.cid FROM {changed} t JOIN follow_tags ft ON ft.tag_id = t.tag_id"
        " JOIN follow_relations fr ON fr.id = ft.follow_id"
    ),
}
_CHANGED = {
    "INSERT": ["new_rows"],
    "DELETE": ["old_rows"],
    "UPDATE": ["old_rows", "new_rows"],
}
_TABLES = {
    "INSERT": "NEW TABLE AS new_rows",
    "DELETE": "OLD TABLE AS old_rows",
    "UPDATE": "OLD TABLE AS old_rows NEW TABLE AS new_rows",
}


def _postgresql_function(table: str, event: str) -> str:
    touched = " UNION ".join(
        _TOUCHED_POSTGRESQL[table].format(changed=changed) for changed in _CHANGED[event]
    )
    holders = _HOLDERS.format(false="false", which="fr.cid = ANY(touched)")
    # Sequential scans off, as for the reachability triggers (0009): the cached generic
    # plan cannot see how few customers `touched` holds, and scanned every relation.
    return f"""CREATE FUNCTION bot_{table}_holders_{event.lower()}() RETURNS trigger
    LANGUAGE plpgsql SET enable_seqscan = off AS $$
    DECLARE
        touched bigint[] := ARRAY(
            SELECT DISTINCT cid FROM ({touched}) AS t WHERE cid IS NOT NULL);
    BEGIN
        IF cardinality(touched) = 0 THEN
            RETURN NULL;
        END IF;
        PERFORM 1 FROM customers WHERE cid = ANY(touched) ORDER BY external_userid FOR UPDATE;
        DELETE FROM corp_tag_holders WHERE cid = ANY(touched);
        INSERT INTO corp_tag_holders (name, cid){holders}
        ON CONFLICT DO NOTHING;
        RETURN NULL;
    END $$"""


def _postgresql_trigger(table: str, event: str) -> str:
    return (
        f"CREATE TRIGGER {table}_holders_{event.lower()} AFTER {event} ON {table}"
        f" REFERENCING {_TABLES[event]}"
        f" FOR EACH STATEMENT EXECUTE FUNCTION bot_{table}_holders_{event.lower()}()"
    )


POSTGRESQL_PAIRS = [(table, event) for table in _TOUCHED_POSTGRESQL for event in _CHANGED]


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    op.create_table(
        "corp_tag_holders",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("cid", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", "cid", name=op.f("pk_corp_tag_holders")),
        sqlite_with_rowid=False,
    )
    # By customer: every recomputation deletes a customer's rows.
    op.create_index("ix_corp_tag_holders_cid", "corp_tag_holders", ["cid"])
    op.execute(
        "INSERT INTO corp_tag_holders (name, cid)"
        + _HOLDERS.format(false="false" if postgres else "0", which="1 = 1")
    )
    if postgres:
        for table, event in POSTGRESQL_PAIRS:
            op.execute(_postgresql_function(table, event))
            op.execute(_postgresql_trigger(table, event))
    else:
        for statement in SQLITE_TRIGGERS:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table, event in POSTGRESQL_PAIRS:
            op.execute(f"DROP TRIGGER {table}_holders_{event.lower()} ON {table}")
            op.execute(f"DROP FUNCTION bot_{table}_holders_{event.lower()}()")
    else:
        for statement in SQLITE_TRIGGERS:
            op.execute(f"DROP TRIGGER {statement.split()[2]}")
    op.drop_index("ix_corp_tag_holders_cid", table_name="corp_tag_holders")
    op.drop_table("corp_tag_holders")
