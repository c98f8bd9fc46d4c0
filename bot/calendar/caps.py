"""The receive cap: how many mass-sends a customer or group may get per month (or week, or
day), counted locally because WeCom only reports a breach after the fact (send status 3).

Units are counted when WeCom creates a task; a planned task not created yet reserves a unit
for each of its targets, which planning counts too, so two slots the same day cannot both
spend the last unit. A target whose send never arrives (not confirmed, not a friend, capped
by WeCom) is given back when the results are final.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable, Mapping
from datetime import date
from typing import Literal

from sqlalchemy import Table, bindparam, select, text, update
from sqlalchemy.orm import Session

from bot.store.models import Base, ReceiveCount

CapMode = Literal["month_days", "week_7", "day_1"]
CUSTOMER = "customer"
GROUP = "group"

COUNTS: Table = Base.metadata.tables["receive_counts"]


def period_of(day: date, mode: CapMode) -> str:
    """The cap period a day falls in: 2026-11, 2026-W48 or 2026-11-23."""
    if mode == "month_days":
        return f"{day.year:04d}-{day.month:02d}"
    if mode == "week_7":
        year, week, _ = day.isocalendar()
        return f"{year:04d}-W{week:02d}"
    return day.isoformat()


def cap_of(day: date, mode: CapMode) -> int:
    """Sends allowed per period: the month's days, 7 a week, or 1 a day."""
    if mode == "month_days":
        return calendar.monthrange(day.year, day.month)[1]
    return 7 if mode == "week_7" else 1


def at_cap(
    session: Session, kind: str, period: str, cap: int, pending: Mapping[str, int] | None = None
) -> set[str]:
    """Targets that have used up the period's cap, counting the units `pending` reserves
    for them (tasks planned but not created yet)."""
    pending = pending or {}
    most = max(pending.values(), default=0)
    rows = session.execute(
        select(ReceiveCount.target_id, ReceiveCount.count).where(
            ReceiveCount.period == period,
            ReceiveCount.target_kind == kind,
            ReceiveCount.count >= cap - most,
        )
    )
    counted = {str(target): int(count) for target, count in rows}
    return {
        target
        for target in counted.keys() | {t for t, n in pending.items() if n >= cap}
        if counted.get(target, 0) + pending.get(target, 0) >= cap
    }


def count_run(
    session: Session, kind: str, period: str, run_id: int, *, task_key: str | None = None
) -> None:
    """Add one send for each target a slot run (or one task of it) has just queued, inside
    the database (a million targets are not worth a round trip each)."""
    one_task = "" if task_key is None else "AND task_key = :task_key "
    session.execute(
        text(
            'INSERT INTO receive_counts (period, target_kind, target_id, "count") '
            "SELECT :period, :kind, target_id, 1 FROM slot_targets "
            f"WHERE run_id = :run_id AND status = 'queued' {one_task}"
            "ON CONFLICT (period, target_kind, target_id) "
            'DO UPDATE SET "count" = receive_counts."count" + 1'
        ),
        {"period": period, "kind": kind, "run_id": run_id, "task_key": task_key},
    )


def give_back(session: Session, kind: str, counted: Iterable[tuple[str, str]]) -> int:
    """Return one unit per (period, target_id) whose send never arrived."""
    rows = [{"b_period": p, "b_target": t} for p, t in counted]
    if not rows:
        return 0
    session.execute(
        update(COUNTS)
        .where(
            COUNTS.c.period == bindparam("b_period"),
            COUNTS.c.target_kind == kind,
            COUNTS.c.target_id == bindparam("b_target"),
            COUNTS.c.count > 0,
        )
        .values(count=COUNTS.c.count - 1),
        rows,
    )
    return len(rows)
