"""Attribute values in the form each engine stores them, so a row compares with no conversion.

SQLite keeps what SQLAlchemy's types write there: dates as "2026-11-20", date-times as
"2026-11-20 00:15:00.000000" in UTC, JSON as text. PostgreSQL hands back dates and aware
date-times as they are; its numeric is read as float8 and its JSON as text. Only changed
values are decoded back, for history. No SQLAlchemy here: the parsing process imports this.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, tzinfo
from typing import Any

Encoder = Callable[[Any], Any]
DATES = frozenset({"birth_date", "opened_at"})


def none_safe(encode: Encoder) -> Encoder:
    """`encode`, passing None (an empty cell) through."""

    def run(value: Any) -> Any:
        return None if value is None else encode(value)

    return run


def products_text(value: list[str]) -> str:
    # The text SQLAlchemy's JSON type writes, so stored and new values compare as text.
    return json.dumps(value)


def sqlite_datetime(moment: datetime) -> str:
    # isoformat is several times faster than strftime and gives the same text.
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def sqlite_date(day: date) -> str:
    return day.isoformat()


def encoders(dialect: str, attributes: Sequence[str]) -> dict[str, Encoder | None]:
    """Per attribute, how a parsed value becomes its stored form (None: it already is)."""
    out: dict[str, Encoder | None] = {}
    for name in attributes:
        if name == "products":
            out[name] = none_safe(products_text)
        elif dialect == "sqlite" and name in DATES:
            out[name] = none_safe(sqlite_date)
        elif dialect == "sqlite" and name == "last_login_at":
            out[name] = none_safe(sqlite_datetime)
        else:
            out[name] = None
    return out


def decode(dialect: str, attribute: str, stored: Any) -> Any:
    """A stored value back as Python (dates, datetimes, lists, bools)."""
    if stored is None:
        return None
    if attribute == "products" and isinstance(stored, str):
        return json.loads(stored)
    if dialect != "sqlite":
        return stored
    if attribute in DATES:
        return date.fromisoformat(stored)
    if attribute == "last_login_at":
        return datetime.fromisoformat(stored).replace(tzinfo=UTC)
    if attribute == "payroll":
        return bool(stored)
    return stored


def stamp(dialect: str, moment: datetime) -> Any:
    """A timestamp column's stored form."""
    return sqlite_datetime(moment) if dialect == "sqlite" else moment


def history_text(attribute: str, value: object, tz: tzinfo) -> str | None:
    """An attribute value as attribute_history keeps it (amounts to the fen, local times)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if attribute == "aum" and isinstance(value, int | float):
        # SQLite hands back a whole amount as an int.
        return f"{float(value):.2f}"
    if isinstance(value, datetime):
        return value.astimezone(tz).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)
