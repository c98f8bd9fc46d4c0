"""What the bot learns when WeCom accepts a task: the mass_tasks row, and the targets WeCom
refused at creation (`fail_list`), whose cap units are given back at once."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

from sqlalchemy import update
from sqlalchemy.orm import Session

from bot.calendar import caps
from bot.store.inserts import insert_new
from bot.store.models import MassTask, SlotTarget

# Outbox kinds of the rows that create tasks (their effects: bot/calendar/effects.py).
MASS_TASK = "mass_task"
MOMENT_TASK = "moment_task"
CREATED = "created"
FAILED_TARGET = "not_friend"
# SlotTarget statuses this module moves between.
QUEUED: Final = "queued"
DELIVERED: Final = "delivered"
UNSENT: Final = "unsent"
CHUNK: Final = 500

log = logging.getLogger("bot.calendar.records")


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
    session.execute(
        insert_new(session.get_bind().dialect.name, MassTask, ["outbox_key"]).values(**values)
    )
    if failed:
        refuse_targets(session, payload["run_id"], failed, status=FAILED_TARGET)


def refuse_targets(session: Session, run_id: int, target_ids: list[str], *, status: str) -> int:
    """Mark targets that will not receive this run's post and give back their cap units."""
    moved, _ = release_targets(session, run_id, status, target_ids=target_ids)
    return moved


def release_targets(
    session: Session,
    run_id: int,
    status: str,
    *,
    task_key: str | None = None,
    target_ids: Sequence[str] | None = None,
) -> tuple[int, int]:
    """Move a run's still-queued targets (those of one task, or the named ones, or both) to
    `status`, and give back the cap units of those that will not get the post unless the
    new status is a delivery. Returns (targets moved, units given back).

    Exactly once even when two instances settle the same targets: the change away from
    "queued" is the guard, and only the rows this UPDATE moved are given back."""
    chunks: list[Sequence[str] | None] = (
        [None]
        if target_ids is None
        else [target_ids[i : i + CHUNK] for i in range(0, len(target_ids), CHUNK)]
    )
    moved = given_back = 0
    for chunk in chunks:
        stmt = update(SlotTarget).where(SlotTarget.run_id == run_id, SlotTarget.status == QUEUED)
        if task_key is not None:
            stmt = stmt.where(SlotTarget.task_key == task_key)
        if chunk is not None:
            stmt = stmt.where(SlotTarget.target_id.in_(chunk))
        rows = session.execute(
            stmt.values(status=status)
            .returning(SlotTarget.target_kind, SlotTarget.period, SlotTarget.target_id)
            .execution_options(synchronize_session=False)
        ).all()
        moved += len(rows)
        if status == DELIVERED:
            continue
        by_kind: dict[str, list[tuple[str, str]]] = {}
        for kind, period, target_id in rows:
            if period is not None:
                by_kind.setdefault(kind, []).append((period, target_id))
        for kind, counted in by_kind.items():
            given_back += caps.give_back(session, kind, counted)
    return moved, given_back


def release_task_not_created(
    session: Session, payload: dict[str, Any], status: str, now: datetime
) -> None:
    """Outbox on_give_up for mass_task rows: the task was never created (expired past the
    slot's lateness, refused for good, or given up after retries), so its targets will not
    get the post: they end "unsent" and their cap units come back."""
    moved, given_back = release_targets(
        session, int(payload["run_id"]), UNSENT, task_key=str(payload["key"])
    )
    log.warning(
        "mass-send task %s not created (%s): %d target(s) unsent, %d cap unit(s) given back",
        payload["key"],
        status,
        moved,
        given_back,
    )
