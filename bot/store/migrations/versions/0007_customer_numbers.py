"""customer numbers: an integer key per customer, and who can still be reached

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23 08:00:00.000000

Audience queries work on a million customers at a time. On text external_userids their
indexes are five times the size and every comparison is a string compare; on an integer
they fit in memory and compare in one instruction. So each customer gets `cid`, and the
tables audiences are drawn from (customer_tags, customer_profiles, follow_relations) carry
it next to their external_userid. `customers.reachable` (an active follow relation, and not opted
out) replaces a probe of follow_relations per audience member by a lookup in the few
unreachable customers.

Triggers keep all three true whoever writes the rows (the mirror, the importer, the rule
engine, `bot forget`, a hand-written fix), so no writer has to know about them.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# The same reachability rule in both dialects' spelling, for the row of `customers` being
# updated (triggers on SQLite allow no alias there).
_REACH_SQLITE = (
    "(customers.opted_out = 0 AND EXISTS (SELECT 1 FROM follow_relations f"
    " WHERE f.external_userid = customers.external_userid AND f.status = 'active'))"
)
_REACH_POSTGRESQL = (
    "(NOT customers.opted_out AND EXISTS (SELECT 1 FROM follow_relations f"
    " WHERE f.external_userid = customers.external_userid AND f.status = 'active'))"
)


def _refresh_sqlite(row: str) -> str:
    """Recompute `reachable` for the customer of trigger row `row` (NEW or OLD), writing
    only when it changes."""
    return (
        f"UPDATE customers SET reachable = {_REACH_SQLITE}"
        f" WHERE customers.external_userid = {row}.external_userid"
        f" AND customers.reachable IS NOT {_REACH_SQLITE};"
    )


# The row each numbered table's trigger rewrites, by its primary key.
_ROW_OF = {
    "customer_tags": "external_userid = NEW.external_userid AND tag = NEW.tag",
    "follow_relations": "id = NEW.id",
    "customer_profiles": "customer_key = NEW.customer_key",
}


def _number_sqlite(name: str, event: str, table: str, when: str | None = None) -> str:
    """A trigger copying customers.cid of the row's external_userid into `table`."""
    condition = f" WHEN {when}" if when else ""
    return (
        f"CREATE TRIGGER {name} AFTER {event} ON {table}{condition}\n"
        f"    BEGIN\n        UPDATE {table}\n"
        "        SET cid = (SELECT cid FROM customers"
        " WHERE external_userid = NEW.external_userid)\n"
        f"        WHERE {_ROW_OF[table]};\n    END"
    )


SQLITE_TRIGGERS = [
    # A new customer gets the next number (max + 1 is one step down the unique index).
    """CREATE TRIGGER customers_number AFTER INSERT ON customers WHEN NEW.cid IS NULL
    BEGIN
        UPDATE customers SET cid = (SELECT coalesce(max(cid), 0) + 1 FROM customers)
        WHERE external_userid = NEW.external_userid;
    END""",
    f"""CREATE TRIGGER customers_reach_opt_out AFTER UPDATE OF opted_out ON customers
    BEGIN {_refresh_sqlite("NEW")} END""",
    f"""CREATE TRIGGER follow_relations_reach_insert AFTER INSERT ON follow_relations
    BEGIN {_refresh_sqlite("NEW")} END""",
    f"""CREATE TRIGGER follow_relations_reach_update
    AFTER UPDATE OF status, external_userid ON follow_relations
    BEGIN {_refresh_sqlite("NEW")} {_refresh_sqlite("OLD")} END""",
    f"""CREATE TRIGGER follow_relations_reach_delete AFTER DELETE ON follow_relations
    BEGIN {_refresh_sqlite("OLD")} END""",
    _number_sqlite("customer_tags_number", "INSERT", "customer_tags", "NEW.cid IS NULL"),
    _number_sqlite(
        "follow_relations_number_insert", "INSERT", "follow_relations", "NEW.cid IS NULL"
    ),
    _number_sqlite(
        "follow_relations_number_update", "UPDATE OF external_userid", "follow_relations"
    ),
    _number_sqlite(
        "customer_profiles_number_insert",
        "INSERT",
        "customer_profiles",
        "NEW.external_userid IS NOT NULL",
    ),
    _number_sqlite(
        "customer_profiles_number_update", "UPDATE OF external_userid", "customer_profiles"
    ),
]

POSTGRESQL_FUNCTIONS = [
    # The customer number of the row's external_userid (NULL for an unmatched profile).
    """CREATE FUNCTION bot_customer_number() RETURNS trigger LANGUAGE plpgsql
    SET plan_cache_mode = force_custom_plan AS $$
    BEGIN
        IF NEW.external_userid IS NULL THEN
            NEW.cid := NULL;
        ELSE
            SELECT cid INTO NEW.cid FROM customers WHERE external_userid = NEW.external_userid;
        END IF;
        RETURN NEW;
    END $$""",
    # Lock the customer row first: under READ COMMITTED the recomputation that follows
    # then sees a concurrent transaction's relation change once that one has committed, so
    # two managers ending their relations at once cannot both leave the customer reachable.
    f"""CREATE FUNCTION bot_refresh_reach(customer text) RETURNS void LANGUAGE plpgsql
    SET plan_cache_mode = force_custom_plan AS $$
    BEGIN
        PERFORM 1 FROM customers WHERE external_userid = customer FOR UPDATE;
        UPDATE customers SET reachable = {_REACH_POSTGRESQL}
        WHERE customers.external_userid = customer
          AND customers.reachable IS DISTINCT FROM {_REACH_POSTGRESQL};
    END $$""",
    """CREATE FUNCTION bot_relation_reach() RETURNS trigger LANGUAGE plpgsql
    SET plan_cache_mode = force_custom_plan AS $$
    BEGIN
        IF TG_OP <> 'DELETE' THEN
            PERFORM bot_refresh_reach(NEW.external_userid);
        END IF;
        IF TG_OP = 'DELETE'
           OR (TG_OP = 'UPDATE' AND OLD.external_userid IS DISTINCT FROM NEW.external_userid) THEN
            PERFORM bot_refresh_reach(OLD.external_userid);
        END IF;
        RETURN NULL;
    END $$""",
    """CREATE FUNCTION bot_opt_out_reach() RETURNS trigger LANGUAGE plpgsql
    SET plan_cache_mode = force_custom_plan AS $$
    BEGIN
        NEW.reachable := NOT NEW.opted_out AND EXISTS (
            SELECT 1 FROM follow_relations f
            WHERE f.external_userid = NEW.external_userid AND f.status = 'active');
        RETURN NEW;
    END $$""",
]
POSTGRESQL_TRIGGERS = [
    """CREATE TRIGGER customers_reach_opt_out BEFORE UPDATE OF opted_out ON customers
    FOR EACH ROW EXECUTE FUNCTION bot_opt_out_reach()""",
    """CREATE TRIGGER follow_relations_reach
    AFTER INSERT OR DELETE OR UPDATE OF status, external_userid ON follow_relations
    FOR EACH ROW EXECUTE FUNCTION bot_relation_reach()""",
    """CREATE TRIGGER customer_tags_number BEFORE INSERT ON customer_tags
    FOR EACH ROW WHEN (NEW.cid IS NULL) EXECUTE FUNCTION bot_customer_number()""",
    """CREATE TRIGGER customer_profiles_number
    BEFORE INSERT OR UPDATE OF external_userid ON customer_profiles
    FOR EACH ROW EXECUTE FUNCTION bot_customer_number()""",
    """CREATE TRIGGER follow_relations_number
    BEFORE INSERT OR UPDATE OF external_userid ON follow_relations
    FOR EACH ROW EXECUTE FUNCTION bot_customer_number()""",
]


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    if postgres:
        op.execute("ALTER TABLE customers ADD COLUMN cid BIGINT GENERATED BY DEFAULT AS IDENTITY")
    else:
        op.add_column("customers", sa.Column("cid", sa.BigInteger(), nullable=True))
        # rowids are unique already; later customers continue from the largest.
        op.execute("UPDATE customers SET cid = rowid")
    op.create_index("uq_customers_cid", "customers", ["cid"], unique=True)
    op.add_column(
        "customers",
        sa.Column("reachable", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    reach = _REACH_POSTGRESQL if postgres else _REACH_SQLITE
    op.execute(f"UPDATE customers SET reachable = {reach}")
    op.create_index(
        "ix_customers_unreachable",
        "customers",
        ["cid"],
        sqlite_where=sa.text("reachable = 0"),
        postgresql_where=sa.text("NOT reachable"),
    )

    number_of = "(SELECT c.cid FROM customers c WHERE c.external_userid = {table}.external_userid)"
    op.add_column("customer_tags", sa.Column("cid", sa.BigInteger(), nullable=True))
    op.execute(f"UPDATE customer_tags SET cid = {number_of.format(table='customer_tags')}")
    op.drop_index("ix_customer_tags_tag_customer", table_name="customer_tags")
    op.create_index("ix_customer_tags_tag_cid", "customer_tags", ["tag", "cid"])

    op.add_column("follow_relations", sa.Column("cid", sa.BigInteger(), nullable=True))
    op.execute(f"UPDATE follow_relations SET cid = {number_of.format(table='follow_relations')}")
    op.create_index("ix_follow_relations_cid_status", "follow_relations", ["cid", "status"])

    op.add_column("customer_profiles", sa.Column("cid", sa.BigInteger(), nullable=True))
    op.execute(
        f"UPDATE customer_profiles SET cid = {number_of.format(table='customer_profiles')}"
        " WHERE external_userid IS NOT NULL"
    )
    # Probed once per candidate by every condition on the profile ("and aum >= …").
    op.create_index("uq_customer_profiles_cid", "customer_profiles", ["cid"], unique=True)
    op.drop_index("ix_customer_profiles_lifecycle_aum", table_name="customer_profiles")
    op.create_index(
        "ix_customer_profiles_lifecycle_aum", "customer_profiles", ["lifecycle", "aum", "cid"]
    )

    for statement in POSTGRESQL_FUNCTIONS + POSTGRESQL_TRIGGERS if postgres else SQLITE_TRIGGERS:
        op.execute(statement)


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    if postgres:
        for trigger, table in [
            ("customers_reach_opt_out", "customers"),
            ("follow_relations_reach", "follow_relations"),
            ("customer_tags_number", "customer_tags"),
            ("customer_profiles_number", "customer_profiles"),
            ("follow_relations_number", "follow_relations"),
        ]:
            op.execute(f"DROP TRIGGER {trigger} ON {table}")
        for function in [
            "bot_customer_number()",
            "bot_relation_reach()",
            "bot_refresh_reach(text)",
            "bot_opt_out_reach()",
        ]:
            op.execute(f"DROP FUNCTION {function}")
    else:
        for statement in SQLITE_TRIGGERS:
            name = statement.split()[2]
            op.execute(f"DROP TRIGGER {name}")
    op.drop_index("ix_customer_profiles_lifecycle_aum", table_name="customer_profiles")
    op.create_index(
        "ix_customer_profiles_lifecycle_aum",
        "customer_profiles",
        ["lifecycle", "aum", "external_userid"],
    )
    op.drop_index("uq_customer_profiles_cid", table_name="customer_profiles")
    with op.batch_alter_table("customer_profiles") as batch:
        batch.drop_column("cid")
    op.drop_index("ix_follow_relations_cid_status", table_name="follow_relations")
    with op.batch_alter_table("follow_relations") as batch:
        batch.drop_column("cid")
    op.drop_index("ix_customer_tags_tag_cid", table_name="customer_tags")
    op.create_index("ix_customer_tags_tag_customer", "customer_tags", ["tag", "external_userid"])
    with op.batch_alter_table("customer_tags") as batch:
        batch.drop_column("cid")
    op.drop_index("ix_customers_unreachable", table_name="customers")
    op.drop_index("uq_customers_cid", table_name="customers")
    with op.batch_alter_table("customers") as batch:
        batch.drop_column("reachable")
        batch.drop_column("cid")
