"""What the bot learns when WeCom accepts a task: the mass_tasks row, and the targets WeCom
refused at creation (`fail_list`), whose cap units are given back at once."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from bot.calendar import caps
from bot.store.models import MassTask, SlotTarget

# Outbox kinds of the rows that create tasks (their effects: bot/calendar/effects.py).
MASS_TASK = "mass_task"
MOMENT_TASK = "moment_task"
CREATED = "created"
FAILED_TARGET = "not_friend"


def task_targets(payload: dict[str, Any]) -> list[str]:
    """The customers or groups a task payload names (for moments: the members asked to
    publish, since the customers who see a moment are chosen by tag, not by name)."""
    for name in ("external_userid", "chat_id_list", "senders"):
        if payload.get(name):
            return list(payload[name])
    return []


def record_task_created(
    session: Session, payload: dict[str, Any], result: dict[str, Any], now: datetime
) -> None:
    """Outbox on_success for mass_task and moment_task rows (runs in the row's transaction).

    payload: {"key", "run_id", "chat_type": single|group|moment, "sender", targets...};
    result: {"msgid", "fail_list"} from add_msg_template, or {"jobid"} for moments.
    """
    failed = [str(t) for t in result.get("fail_list") or []]
    targets = task_targets(payload)
    values = {
        "run_id": payload["run_id"],
        "outbox_key": payload["key"],
        "chat_type": payload["chat_type"],
        "sender": payload.get("sender"),
        "msgid": result.get("msgid") or result.get("jobid"),
        "targets": max(len(targets) - len(failed), 0),
        "status": CREATED,
        "created_at": now,
        "reminded_at": [],
        "delivered": 0,
        "not_friend": 0,
        "already_received": 0,
        "unsent": 0,
    }
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    session.execute(
        insert(MassTask).values(**values).on_conflict_do_nothing(index_elements=["outbox_key"])
    )
    if failed:
        refuse_targets(session, payload["run_id"], failed, status=FAILED_TARGET)


def refuse_targets(session: Session, run_id: int, target_ids: list[str], *, status: str) -> int:
    """Mark targets that will not receive this run's post and give back their cap units."""
    rows = session.execute(
        select(SlotTarget.target_kind, SlotTarget.period, SlotTarget.target_id).where(
            SlotTarget.run_id == run_id,
            SlotTarget.target_id.in_(target_ids),
            SlotTarget.status == "queued",
        )
    ).all()
    by_kind: dict[str, list[tuple[str, str]]] = {}
    for kind, period, target in rows:
        if period is not None:
            by_kind.setdefault(kind, []).append((period, target))
    for kind, counted in by_kind.items():
        caps.give_back(session, kind, counted)
    session.execute(
        update(SlotTarget)
        .where(
            SlotTarget.run_id == run_id,
            SlotTarget.target_id.in_([t for _, _, t in rows]),
        )
        .values(status=status)
    )
    return len(rows)
