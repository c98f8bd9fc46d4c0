"""Alembic environment: the engine comes from the caller (`bot db upgrade`)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Engine

from bot.store.models import Base

config = context.config
engine = config.attributes.get("engine")
if not isinstance(engine, Engine):
    raise RuntimeError("run migrations through `bot db upgrade`")

with engine.begin() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    context.run_migrations()
