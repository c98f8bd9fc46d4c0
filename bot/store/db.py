"""The database handle: one engine, short transactions, work run off the event loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeout
from sqlalchemy.orm import Session, sessionmaker

T = TypeVar("T")


class DatabaseNotMigrated(RuntimeError):
    """The schema is missing or older than this code; the message says what to run."""


def normalise_url(url: str) -> str:
    """Pick the drivers the project pins: psycopg 3 for PostgreSQL."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def _sqlite_pragmas(busy_timeout_ms: int) -> Callable[..., None]:
    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's begin event issue BEGIN itself (see _begin_immediate).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        # WAL lets readers run during writes; FULL makes an acknowledged callback survive
        # power loss, not only a process crash.
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cur.execute("PRAGMA foreign_keys=ON")
        # 16 MiB of page cache instead of 2: a day's plan writes a million index entries,
        # and with the default cache each one re-reads pages it just wrote.
        cur.execute("PRAGMA cache_size=-16384")
        cur.close()

    return on_connect


def _begin_immediate(conn: Any) -> None:
    """Take SQLite's write lock when a transaction starts, not at its first write.

    Each `Database.run` uses its own pooled connection, so a transaction that reads and then
    writes (claim a row, upsert a customer) would otherwise fail at once with
    SQLITE_BUSY_SNAPSHOT whenever another connection committed in between; busy_timeout
    cannot wait that out, but it does wait for an IMMEDIATE lock.
    """
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def make_engine(
    url: str, *, busy_timeout_ms: int = 5000, echo: bool = False, **options: Any
) -> Engine:
    """Create an engine with the settings each backend needs."""
    url = normalise_url(url)
    # Errors quote the statement; its parameters (names, remarks, decrypted callbacks)
    # must not follow them into logs and last_error columns.
    options.setdefault("hide_parameters", True)
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            echo=echo,
            connect_args={"check_same_thread": False, "timeout": busy_timeout_ms / 1000},
            pool_size=8,
            max_overflow=8,
            **options,
        )
        event.listen(engine, "connect", _sqlite_pragmas(busy_timeout_ms))
        event.listen(engine, "begin", _begin_immediate)
        return engine
    return create_engine(
        url, echo=echo, pool_size=10, max_overflow=10, pool_pre_ping=True, **options
    )


class Database:
    """Engine plus session factory. Async code calls `run`, which runs a function in one
    transaction on a worker thread so the event loop never waits on the database."""

    def __init__(self, engine: Engine, *, lock_timeout: float = 5.0) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        # SQLite has one writer, and every transaction here takes the write lock at BEGIN.
        # Threads of this process queue on a lock of their own instead: SQLite's busy
        # handler waits by sleeping 1, 2, 5, 10… ms between retries, which put tens of
        # milliseconds on callbacks that queued behind the dispatcher's short transactions.
        # Other processes (a CLI command next to `bot serve`) still meet busy_timeout.
        self._writer = threading.Lock() if engine.dialect.name == "sqlite" else None
        self._lock_timeout = lock_timeout

    @classmethod
    def from_url(cls, url: str, *, busy_timeout_ms: int = 5000, echo: bool = False) -> Database:
        engine = make_engine(url, busy_timeout_ms=busy_timeout_ms, echo=echo)
        return cls(engine, lock_timeout=busy_timeout_ms / 1000)

    @contextmanager
    def _turn(self) -> Iterator[None]:
        """This thread's turn to write (SQLite), waiting at most as long as busy_timeout."""
        if self._writer is None:
            yield
            return
        if not self._writer.acquire(timeout=self._lock_timeout):
            raise SQLAlchemyTimeout(
                f"waited {self._lock_timeout:g} s for this process's turn to write"
            )
        try:
            yield
        finally:
            self._writer.release()

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @property
    def is_postgres(self) -> bool:
        return self.dialect == "postgresql"

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session in one transaction: committed on success, rolled back on error."""
        with self._turn(), self._sessions.begin() as session:
            yield session

    def call(self, fn: Callable[[Session], T]) -> T:
        """Run `fn` in one transaction on this thread."""
        with self.session() as session:
            return fn(session)

    async def run(self, fn: Callable[[Session], T]) -> T:
        """Run `fn` in one transaction on a worker thread."""
        return await asyncio.to_thread(self.call, fn)

    def call_core(self, fn: Callable[[Connection], T], *, durable: bool = True) -> T:
        """Run `fn` on a Core connection in one transaction on this thread.

        For the per-callback paths, which use only prepared Core statements: building and
        tearing down an ORM session costs about 100 µs of CPU per transaction.

        `durable=False` is for writes that may be lost to a power cut without harm, because
        they are recomputed (the dispatcher's outcomes: a lost one only means an idempotent
        handler runs again once the lease runs out). On SQLite that commit then skips the
        fsync (`synchronous=NORMAL`, still safe against a crash of the process); a later
        durable commit syncs the log, earlier frames included, so the order of what
        survives is kept. Other engines ignore it.
        """
        relaxed = not durable and self.dialect == "sqlite"
        with self._turn(), self.engine.connect() as connection:
            raw = connection.connection.dbapi_connection if relaxed else None
            if raw is not None:
                # On the driver's connection: through SQLAlchemy it would begin a transaction.
                raw.execute("PRAGMA synchronous=NORMAL")
            try:
                with connection.begin():
                    return fn(connection)
            finally:
                if raw is not None:
                    raw.execute("PRAGMA synchronous=FULL")

    async def run_core(self, fn: Callable[[Connection], T], *, durable: bool = True) -> T:
        """`call_core` on a worker thread."""
        return await asyncio.to_thread(partial(self.call_core, fn, durable=durable))

    def check_migrated(self) -> None:
        """Refuse to run on a database that `bot db upgrade` has not brought up to date."""
        from bot.store.migrate import current_revision, head_revision

        head = head_revision()
        current = current_revision(self.engine)
        if current != head:
            shown = current or "empty"
            raise DatabaseNotMigrated(
                f"database {self.engine.url.render_as_string(hide_password=True)} is not "
                f"migrated (at {shown}, code needs {head}): run `bot db upgrade`"
            )

    def has_table(self, name: str) -> bool:
        return inspect(self.engine).has_table(name)

    def dispose(self) -> None:
        self.engine.dispose()
