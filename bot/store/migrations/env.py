"""Alembic environment: the engine comes from the caller (`bot db upgrade`)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, Engine

from bot.store.models import Base

config = context.config
engine = config.attributes.get("engine")
if not isinstance(engine, Engine):
    raise RuntimeError("run migrations through `bot db upgrade`")


def _foreign_keys(connection: Connection, on: bool) -> None:
    """Switch SQLite's foreign-key enforcement, on the driver's connection: SQLite ignores
    the pragma inside a transaction, and through SQLAlchemy it would begin one."""
    driver = connection.connection.driver_connection
    if driver is not None:
        driver.execute(f"PRAGMA foreign_keys={'ON' if on else 'OFF'}")


with engine.connect() as connection:
    sqlite = connection.dialect.name == "sqlite"
    # SQLite alters a table by copying it to a new one and dropping the old. With foreign
    # keys enforced, dropping customers or follow_relations that way cascades: every tag,
    # relation and profile of every customer would be deleted. Checked instead, before
    # the migration commits.
    if sqlite:
        _foreign_keys(connection, False)
    try:
        with connection.begin():
            context.configure(
                connection=connection,
                target_metadata=Base.metadata,
                render_as_batch=sqlite,
                compare_type=True,
            )
            before = context.get_context().get_current_revision()
            context.run_migrations()
            # On a large store the check reads every reference (seconds): only after a
            # migration that changed something.
            if sqlite and context.get_context().get_current_revision() != before:
                broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
                if broken:
                    raise RuntimeError(f"migration left rows without their parent: {broken[:5]}")
    finally:
        if sqlite:
            _foreign_keys(connection, True)
