"""Reading JSON columns the same way on both engines."""

from __future__ import annotations

import json
from typing import Any


def as_dict(value: Any) -> dict[str, Any]:
    """A JSON column's value: PostgreSQL hands back the object, SQLite may hand back text."""
    if value is None:
        return {}
    if isinstance(value, str | bytes):
        value = json.loads(value)
    assert isinstance(value, dict), value
    return dict(value)
