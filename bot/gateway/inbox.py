"""The inbox: every accepted callback stored once, under a unique dedupe key, before the ACK."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import NamedTuple

from sqlalchemy import Connection, Table, delete
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import Insert

from bot.gateway.events import EventKey
from bot.store.db import Database
from bot.store.inserts import insert_new
from bot.store.models import InboxEvent

# Terminal states: rows in them are never claimed again and may be purged by age.
FINISHED = ("done", "unhandled", "failed")


def dedupe_key(plaintext: bytes) -> str:
    """sha256 hex of the decrypted message.

    Not FromUserName+CreateTime (WeCom's advice): every change_external_* event comes
    from `sys`, so distinct events in the same second would collapse (WxJava #2314).
    A retry carries the same plaintext, whatever random prefix its encryption used.
    """
    return hashlib.sha256(plaintext).hexdigest()


_INBOX: Table = InboxEvent.metadata.tables[InboxEvent.__tablename__]


@lru_cache(maxsize=4)
def _insert_keys(dialect: str) -> Insert:
    """INSERT … ON CONFLICT (dedupe_key) DO NOTHING RETURNING dedupe_key, built once per
    dialect from the Core table: an ORM-enabled INSERT per callback cost about 1 ms of CPU,
    most of the gateway's budget."""
    return insert_new(dialect, _INBOX, ["dedupe_key"]).returning(_INBOX.c.dedupe_key)


def _row(key: str, routing: EventKey, payload: bytes, now: datetime) -> dict[str, object]:
    return {
        "dedupe_key": key,
        "received_at": now,
        # Truncated to the columns' widths: an odd value from WeCom must not turn a
        # storable callback into a database error (and a lost event).
        "msg_type": routing.msg_type[:32],
        "event": routing.event[:64] if routing.event else None,
        "change_type": routing.change_type[:64] if routing.change_type else None,
        "payload": payload,
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": now,
        # lease_until, leased_by, processed_at and last_error start NULL: left out, since
        # every bound value is processed per row (two fewer datetimes each).
    }


class Callback(NamedTuple):
    """One accepted callback, as the inbox stores it."""

    key: str
    routing: EventKey  # (MsgType, Event, ChangeType), stored as columns for queries
    payload: bytes
    now: datetime


def store_events(connection: Connection, callbacks: Sequence[Callback]) -> list[bool]:
    """Insert callbacks in one statement; per callback, True if it stored the row (False:
    its key was stored before, or by an earlier callback of this group).

    One statement for the group instead of one per callback: under load the group commit
    holds dozens, and per-statement work in SQLAlchemy was most of the insert's cost.
    """
    first: dict[str, int] = {}
    for index, callback in enumerate(callbacks):
        first.setdefault(callback.key, index)
    new = [callbacks[index] for index in first.values()]
    if connection.dialect.name == "postgresql":
        stored = set(_store_postgresql(connection, new))
    else:
        stored = set(
            connection.execute(
                _insert_keys(connection.dialect.name), [_row(*callback) for callback in new]
            ).scalars()
        )
    return [first[c.key] == index and c.key in stored for index, c in enumerate(callbacks)]


# The group's columns as arrays, one fixed statement whatever the group's size: a multi-row
# VALUES list changes the SQL text with every size, so psycopg converted the query anew for
# each group (and the server planned it anew), a third of the insert's CPU in the soak.
# The same values as `_row`, in the order given (WITH ORDINALITY keeps the ids in it).
_INSERT_ARRAYS = """
INSERT INTO inbox (dedupe_key, received_at, msg_type, event, change_type, payload,
                   status, attempts, next_attempt_at)
SELECT k, r, m, e, c, p, 'pending', 0, r
FROM unnest(%s::text[], %s::timestamptz[], %s::text[], %s::text[], %s::text[], %s::bytea[])
     WITH ORDINALITY AS g(k, r, m, e, c, p, n)
ORDER BY n
ON CONFLICT (dedupe_key) DO NOTHING
RETURNING dedupe_key
"""


def _store_postgresql(connection: Connection, callbacks: Sequence[Callback]) -> list[str]:
    rows = [_row(*callback) for callback in callbacks]
    columns = ("dedupe_key", "received_at", "msg_type", "event", "change_type", "payload")
    arrays = tuple([row[column] for row in rows] for column in columns)
    return [str(key) for (key,) in connection.exec_driver_sql(_INSERT_ARRAYS, arrays)]


@dataclass(frozen=True)
class _Pending:
    callback: Callback
    done: asyncio.Future[bool]


class InboxWriter:
    """Group commit for the gateway: callbacks arriving while a write is in flight share the
    next transaction (and thread hop), each row still under its own ON CONFLICT insert.

    A caller's future resolves only after the transaction holding its row committed, so an
    acknowledgement still means "stored". With no concurrency every batch holds one row.
    """

    def __init__(self, db: Database, *, max_batch: int = 64) -> None:
        self.db = db
        self.max_batch = max_batch
        self._queue: list[_Pending] = []
        self._flusher: asyncio.Task[None] | None = None

    async def store(self, *, key: str, routing: EventKey, payload: bytes, now: datetime) -> bool:
        """Store one callback; True if new, False if its key was already stored."""
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(Callback(key, routing, payload, now), done))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        # A caller that goes away cancels only its own future; the row is still written (and
        # WeCom's retry then finds it stored).
        return await done

    async def _flush(self) -> None:
        while self._queue:
            batch = self._queue[: self.max_batch]
            del self._queue[: self.max_batch]

            def write(connection: Connection, batch: list[_Pending] = batch) -> list[bool]:
                return store_events(connection, [p.callback for p in batch])

            try:
                results = await self.db.run_core(write)
            except Exception as exc:
                for pending in batch:
                    if not pending.done.done():
                        pending.done.set_exception(exc)
                continue
            for pending, new in zip(batch, results, strict=True):
                if not pending.done.done():
                    pending.done.set_result(new)


def purge_finished(session: Session, *, before: datetime) -> int:
    """Delete finished rows received before `before` (retention); pending work is kept."""
    result = session.execute(
        delete(InboxEvent)
        .where(InboxEvent.status.in_(FINISHED), InboxEvent.received_at < before)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


__all__ = [
    "FINISHED",
    "Callback",
    "InboxWriter",
    "dedupe_key",
    "purge_finished",
    "store_events",
]
