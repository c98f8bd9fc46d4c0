"""A sent mark_tag, recorded locally: the tags the bot pushed and the follow_tags mirror."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, Final

from sqlalchemy import String, cast, delete, update
from sqlalchemy.orm import Session

from bot import mirror
from bot.outbox.queue import OUTBOX, SENT
from bot.store.inserts import insert_new
from bot.store.models import Base, PushedTag

KEY_PREFIX: Final = "mark_tag"
_PUSHED = Base.metadata.tables[PushedTag.__tablename__]


def mark_tag_key(
    userid: str, external_userid: str, add: Iterable[str], remove: Iterable[str]
) -> str:
    """The outbox key of one change on one relation: the same change is queued only once
    while it waits (the key is retired once it is sent, see `retire_key`)."""
    # Tag ids are letters, digits, '-' and '_': the separators cannot occur inside them.
    change = ",".join(sorted(add)) + "/" + ",".join(sorted(remove))
    digest = hashlib.sha256(change.encode("utf-8")).hexdigest()[:16]
    return f"{KEY_PREFIX}:{userid}:{external_userid}:{digest}"


def relation_of_key(key: str) -> tuple[str, str] | None:
    """(userid, external_userid) of a key `mark_tag_key` made, else None. WeCom ids hold
    no colon (userids are letters, digits and _-@.), so the split is unambiguous."""
    parts = key.split(":")
    if len(parts) != 4 or parts[0] != KEY_PREFIX:
        return None
    return parts[1], parts[2]


def mark_tag_payload(
    userid: str, external_userid: str, add: Sequence[str], remove: Sequence[str]
) -> dict[str, Any]:
    """The outbox payload the mark_tag effect sends as is."""
    return {
        "userid": userid,
        "external_userid": external_userid,
        "add_tag": sorted(add),
        "remove_tag": sorted(remove),
    }


def record_mark_tag(
    session: Session, payload: dict[str, Any], _result: dict[str, Any], now: datetime
) -> None:
    """The mark_tag effect's on_success, in the transaction that marks the row sent.

    WeCom sends no callback for a change made through the API, so this is where the mirror
    learns of it; pushed_tags remembers which tags the bot put on, the only ones it may
    ever take off again.
    """
    userid = str(payload["userid"])
    external_userid = str(payload["external_userid"])
    add = [str(t) for t in payload.get("add_tag") or ()]
    remove = [str(t) for t in payload.get("remove_tag") or ()]
    # Core statements on the tables, like the mirror's: one of these per relation of a
    # tag sync, where ORM objects and their flush cost more than the SQL.
    if remove:
        session.execute(
            delete(_PUSHED).where(
                _PUSHED.c.userid == userid,
                _PUSHED.c.external_userid == external_userid,
                _PUSHED.c.wecom_tag_id.in_(remove),
            )
        )
    if add:
        # A tag pushed before keeps its row (and the time it was first pushed).
        session.execute(
            insert_new(
                session.get_bind().dialect.name,
                _PUSHED,
                ["userid", "external_userid", "wecom_tag_id"],
            ),
            [
                {
                    "userid": userid,
                    "external_userid": external_userid,
                    "wecom_tag_id": t,
                    "pushed_at": now,
                }
                for t in dict.fromkeys(add)
            ],
        )
    mirror.apply_mark_tag(session, userid, external_userid, add=add, remove=remove)
    retire_key(session, mark_tag_key(userid, external_userid, add, remove))


def retire_key(session: Session, key: str) -> None:
    """Free a sent row's key by suffixing its row id.

    The key stands for a change, and a change can come back (a tier tag taken off, then
    put on again next month); the outbox keeps keys unique forever, so a sent change
    gives its key up. Rows that failed keep theirs: the same change is not retried until
    asked (`plan_tag_sync(retry_failed=True)`).
    """
    session.execute(
        update(OUTBOX)
        .where(OUTBOX.c.idempotency_key == key, OUTBOX.c.status == SENT)
        .values(idempotency_key=OUTBOX.c.idempotency_key + "@" + cast(OUTBOX.c.id, String))
    )
