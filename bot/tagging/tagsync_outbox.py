"""Many outbox rows in one statement, with `queue.enqueue`'s once-per-key semantics."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, text
from sqlalchemy.orm import Session

from bot.outbox.queue import NORMAL, OUTBOX, PENDING
from bot.store.inserts import insert_new
from bot.store.models import OutboxItem
from bot.store.types import UTCDateTime


def enqueue_many(
    session: Session,
    rows: Sequence[tuple[str, dict[str, Any]]],
    *,
    kind: str,
    now: datetime,
    lane: str = NORMAL,
) -> set[str]:
    """Insert each (key, payload) unless its key exists; returns the keys inserted.

    The same row values as `queue.enqueue`, but one statement for all rows (INSERT … ON
    CONFLICT DO NOTHING RETURNING) instead of one per row: planning 100,000 customers
    would otherwise spend minutes building statements.
    """
    if not rows:
        return set()
    if session.get_bind().dialect.name == "postgresql":
        return _insert_from_json(session, rows, kind=kind, now=now, lane=lane)
    stmt = insert_new("sqlite", OUTBOX, ["idempotency_key"]).returning(OUTBOX.c.idempotency_key)
    values = [
        {
            "idempotency_key": key,
            "kind": kind,
            "lane": lane,
            "payload": payload,
            "status": PENDING,
            "attempts": 0,
            "due_at": now,
            "expires_at": None,
            "created_at": now,
            "updated_at": now,
        }
        for key, payload in rows
    ]
    return set(session.connection().execute(stmt, values).scalars())


# PostgreSQL: all rows as one JSON document, instead of a VALUES list that psycopg would
# parse per page, or text arrays it would escape element by element (either took most of
# a 100,000-customer plan).
_FROM_JSON = text(
    f"""
    INSERT INTO {OutboxItem.__tablename__}
        (idempotency_key, kind, lane, payload, status, attempts, due_at, created_at, updated_at)
    SELECT row ->> 0, :kind, :lane, row -> 1, :status, 0, :now, :now, :now
    FROM json_array_elements(CAST(:rows AS json)) AS row
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING idempotency_key
    """
).bindparams(bindparam("now", type_=UTCDateTime()))


def _insert_from_json(
    session: Session,
    rows: Sequence[tuple[str, dict[str, Any]]],
    *,
    kind: str,
    now: datetime,
    lane: str,
) -> set[str]:
    params = {
        "kind": kind,
        "lane": lane,
        "status": PENDING,
        "now": now,
        # [[key, payload], ...]; the payload lands in the json column as it is.
        "rows": json.dumps([[key, payload] for key, payload in rows]),
    }
    return set(session.connection().execute(_FROM_JSON, params).scalars())
