"""What the bot learns when WeCom accepts a task: the mass_tasks row, and its targets.

A planned task's targets are reserved in its outbox row (the payload lists them and names
the cap period): the slot_targets rows and the receive-cap units are written here, in the
transaction that marks the row sent, when WeCom has created the task. A million targets
are then not a million rows written at the slot's time, and a task never created leaves
nothing to give back. Rows queued by a planner from before reservations (no "period" in
the payload) had their targets written at planning; for those, the targets WeCom refused
at creation (`fail_list`) give their units back here."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from bot.calendar import caps
from bot.outbox import queue
from bot.store.inserts import insert_new
from bot.store.models import MassTask, OutboxItem, SlotTarget

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
    created = session.execute(
        insert_new(session.get_bind().dialect.name, MassTask, ["outbox_key"])
        .values(**values)
        .returning(MassTask.id)
    ).scalar_one_or_none()
    if reserved(payload):
        if created is not None:  # once per task, were success recorded twice
            refused = set(failed)
            write_targets(session, payload, lambda t: FAILED_TARGET if t in refused else QUEUED)
            caps.count_run(
                session,
                payload["target_kind"],
                payload["period"],
                payload["run_id"],
                task_key=payload["key"],
            )
    elif failed:
        refuse_targets(session, payload["run_id"], failed, status=FAILED_TARGET)


def reserved(payload: dict[str, Any]) -> bool:
    """Whether the task's targets wait in its payload (written when the task is created)."""
    return "period" in payload and payload.get("chat_type") in ("single", "group")


@dataclass(frozen=True)
class Reservation:
    """An open task row's reserved targets (not created yet, nor given up)."""

    run_id: int
    period: str
    targets: tuple[str, ...]


def open_reservations(session: Session, kind: str) -> list[Reservation]:
    """The reservations of every open task row for `kind` targets (customer or group): read
    once per plan, since each payload may list 10,000 targets."""
    query = select(OutboxItem.payload).where(
        OutboxItem.kind == MASS_TASK,
        OutboxItem.status.in_(queue.OPEN_STATUSES),
        OutboxItem.payload["target_kind"].as_string() == kind,
    )
    return [
        Reservation(int(p["run_id"]), str(p["period"]), tuple(dict.fromkeys(task_targets(p))))
        for p in session.execute(query).scalars()
        if reserved(p)
    ]


def pending_units(reservations: Sequence[Reservation], period: str) -> Counter[str]:
    """The cap units the reservations hold for each target in `period`."""
    units: Counter[str] = Counter()
    for reservation in reservations:
        if reservation.period == period:
            units.update(reservation.targets)
    return units


def reserved_for(reservations: Sequence[Reservation], run_ids: Collection[int]) -> set[str]:
    """The targets the reservations of runs `run_ids` hold."""
    return {t for r in reservations if r.run_id in run_ids for t in r.targets}


def target_row(
    run_id: int,
    target: str,
    *,
    kind: str,
    sender: str | None,
    status: str,
    task_key: str | None = None,
    period: str | None = None,
) -> dict[str, Any]:
    """One slot_targets row, as the bulk writers take it."""
    return {
        "run_id": run_id,
        "target_id": target,
        "target_kind": kind,
        "sender": sender,
        "task_key": task_key,
        "status": status,
        "period": period,
    }


def write_targets(
    session: Session, payload: dict[str, Any], status_of: Callable[[str], str]
) -> int:
    """Write a reserved task's targets to slot_targets, each with `status_of(target)`;
    only queued targets carry the cap period (the others are not counted)."""

    def row(target: str) -> dict[str, Any]:
        status = status_of(target)
        return target_row(
            payload["run_id"],
            target,
            kind=payload["target_kind"],
            sender=payload.get("sender"),
            status=status,
            task_key=payload["key"],
            period=payload["period"] if status == QUEUED else None,
        )

    rows = [row(target) for target in dict.fromkeys(task_targets(payload))]
    if rows:
        dialect = session.get_bind().dialect.name
        session.execute(insert_new(dialect, SlotTarget, ["run_id", "target_id"]), rows)
    return len(rows)


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
    if reserved(payload):
        # Never created, never counted: the targets are written as unsent, nothing to give.
        moved, given_back = write_targets(session, payload, lambda _: UNSENT), 0
    else:
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
