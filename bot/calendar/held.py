"""Targets deferred to a later contact window, held on their part's run.

A slot planned outside some customers' (or groups') contact window defers them to a later
part of the same slot: a pending slot run whose `deferred_targets` maps each target to its
sender. One JSON document, not a row per target: a 1:1 slot at a million customers defers
its seniors, 144,000 of them in bench/plan.py, and writing them as rows cost 2–2.6 s of
the slot's planning (keys, an index and a foreign key per row) on either engine.

When the part is planned, the held targets are read back in SQL (the database's own JSON
table function joined to the relations or groups, to re-check each one), the kept ones
move into the part's task payloads and the others become rows saying why they were not
sent; an expired part turns them all into expired rows. Either way the document is
cleared, so a target is held, reserved or written, one at a time.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy import Select, Subquery, func, select, true, update
from sqlalchemy.orm import Session

from bot.calendar.records import target_row
from bot.store.models import Base, SlotRun
from bot.tagging.bulk import insert_rows

TARGETS = Base.metadata.tables["slot_targets"]


def held_pairs(run_id: int, *, postgres: bool) -> tuple[Select[Any], Subquery]:
    """A SELECT over the run's held targets and the subquery it reads them from: columns
    `key` (the target) and `value` (its sender). Join other tables to it and pick
    columns with `.with_only_columns`.

    In key order: PostgreSQL estimates any JSON table function at 100 rows and probes the
    relations and customers by key for each target; in key order those probes walk the
    indexes instead of jumping around them (144,000 deferred targets re-checked in 1.7–1.9
    instead of 3.4–3.6 s).
    """
    each = func.json_each_text if postgres else func.json_each
    doc = each(SlotRun.deferred_targets).table_valued("key", "value")
    held = (
        select(doc.c.key, doc.c.value)
        .select_from(SlotRun)
        .join(doc, true())
        .where(SlotRun.id == run_id, SlotRun.deferred_targets.is_not(None))
        .order_by(doc.c.key)
        .subquery("held")
    )
    return select(held.c.key, held.c.value), held


def held_targets(session: Session, run_ids: Sequence[int]) -> set[str]:
    """The targets the runs hold (deferred to them and not planned yet)."""
    if not run_ids:
        return set()
    query = select(SlotRun.deferred_targets).where(
        SlotRun.id.in_(run_ids), SlotRun.deferred_targets.is_not(None)
    )
    return {target for held in session.execute(query).scalars() for target in held or ()}


def release_held(
    session: Session, run_id: int, *, status: str, kind: str, keep: Collection[str] = ()
) -> int:
    """Write the run's held targets not in `keep` as rows with `status`, and clear the
    run's document; the number of rows written."""
    held = session.execute(
        select(SlotRun.deferred_targets).where(SlotRun.id == run_id)
    ).scalar_one_or_none()
    if not held:
        return 0
    rows = [
        target_row(run_id, target, kind=kind, sender=sender, status=status)
        for target, sender in held.items()
        if target not in keep
    ]
    insert_rows(session, TARGETS, rows)
    session.execute(update(SlotRun).where(SlotRun.id == run_id).values(deferred_targets=None))
    return len(rows)
