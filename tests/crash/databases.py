"""Databases for the crash tests: migrated copies on SQLite and PostgreSQL, and a reader.

A test's bot processes own the database; the test only reads it, through `Peek`, which
opens a connection per query (SQLite: a plain deferred read, so the bot's writers are not
held up; PostgreSQL: no pool, so the database can be copied or dropped afterwards).
"""

from __future__ import annotations

import itertools
import os
import shutil
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import Connection, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from bot.store.db import make_engine, normalise_url
from bot.store.migrate import upgrade

Engine = Literal["sqlite", "postgresql"]
ENGINES: tuple[Engine, ...] = ("sqlite", "postgresql")


class Peek:
    """Read-only queries against a database the bot processes are using."""

    def __init__(self, url: str) -> None:
        self.engine = create_engine(normalise_url(url), poolclass=NullPool)

    @contextmanager
    def _connect(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            yield conn

    def rows(self, sql: str, **params: Any) -> Sequence[Any]:
        with self._connect() as conn:
            return conn.execute(text(sql), params).all()

    def scalar(self, sql: str, **params: Any) -> Any:
        with self._connect() as conn:
            return conn.execute(text(sql), params).scalar()

    def outbox_status(self, kind: str) -> dict[str, int]:
        rows = self.rows(
            "SELECT status, count(*) FROM outbox WHERE kind = :kind GROUP BY status", kind=kind
        )
        return {str(status): int(count) for status, count in rows}

    def bot_tags(self) -> tuple[set[str], dict[tuple[str, str], set[str]]]:
        """The WeCom tag ids the bot manages, and per (userid, external_userid) those it has
        pushed itself (its ledger of what it may remove)."""
        managed = {
            str(t)
            for (t,) in self.rows(
                "SELECT wecom_tag_id FROM rule_tag_map WHERE wecom_tag_id IS NOT NULL"
            )
        }
        pushed: dict[tuple[str, str], set[str]] = defaultdict(set)
        for userid, ext, tag in self.rows(
            "SELECT userid, external_userid, wecom_tag_id FROM pushed_tags"
        ):
            pushed[(str(userid), str(ext))].add(str(tag))
        return managed, pushed

    def open_outbox(self) -> int:
        return int(
            self.scalar(
                "SELECT count(*) FROM outbox WHERE status IN ('pending', 'sending', 'verify')"
            )
        )

    def close(self) -> None:
        self.engine.dispose()


class Databases:
    """Makes databases for one test session and drops the PostgreSQL ones at the end."""

    def __init__(self, sqlite_template: Path, postgres_url: str, folder: Path) -> None:
        self.sqlite_template = sqlite_template
        self.folder = folder
        self.admin_url = normalise_url(postgres_url)
        self.prefix = f"bot_crash_{os.getpid()}"
        self._names = itertools.count()
        self._created: list[str] = []
        self._pg_template: str | None = None

    # -- fresh, migrated --------------------------------------------------------------------

    def fresh(self, engine: Engine) -> str:
        """The URL of a new, migrated, empty database."""
        if engine == "sqlite":
            path = self.folder / f"bot-{next(self._names)}.db"
            shutil.copy(self.sqlite_template, path)
            return f"sqlite:///{path}"
        return self._create(template=self._migrated_pg_template())

    def copy(self, url: str) -> str:
        """A copy of a database no process is using (a synced starting point, reused)."""
        parsed = make_url(normalise_url(url))
        if parsed.drivername.startswith("sqlite"):
            source = Path(str(parsed.database))
            path = self.folder / f"bot-{next(self._names)}.db"
            shutil.copy(source, path)
            # A process that exits without closing its engine leaves committed pages in
            # the WAL; they belong to the copy.
            wal = source.with_name(source.name + "-wal")
            if wal.exists():
                shutil.copy(wal, path.with_name(path.name + "-wal"))
            return f"sqlite:///{path}"
        return self._create(template=str(parsed.database))

    # -- PostgreSQL -------------------------------------------------------------------------

    def _url_of(self, name: str) -> str:
        return make_url(self.admin_url).set(database=name).render_as_string(hide_password=False)

    def _admin(self, sql: str) -> None:
        engine = create_engine(self.admin_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
        try:
            with engine.connect() as conn:
                conn.execute(text(sql))
        finally:
            engine.dispose()

    def _create(self, template: str | None) -> str:
        name = f"{self.prefix}_{next(self._names)}"
        clause = f' TEMPLATE "{template}"' if template else ""
        self._admin(f'CREATE DATABASE "{name}"{clause}')
        self._created.append(name)
        return self._url_of(name)

    def _migrated_pg_template(self) -> str:
        if self._pg_template is None:
            url = self._create(template=None)
            engine = make_engine(url)
            try:
                upgrade(engine)
            finally:
                engine.dispose()
            self._pg_template = str(make_url(url).database)
        return self._pg_template

    def close(self) -> None:
        for name in reversed(self._created):
            self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self._created.clear()


__all__ = ["ENGINES", "Databases", "Engine", "Peek"]
