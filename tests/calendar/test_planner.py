"""Planning a slot: audience, drops (opt-out, cap, window, already), senders, tasks, writes."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from bot.calendar.due import run_due
from bot.calendar.planner import TaskPlan, commit_plan, compute_plan
from bot.calendar.records import record_task_created, release_task_not_created
from bot.clock import FrozenClock
from bot.store.db import Database
from bot.store.models import Member, OutboxItem
from tests.calendar.planner_world import (
    SHANGHAI,
    TIER,
    add_branch,
    branch_settings,
    counts,
    held,
    load,
    occurrence,
    outbox_rows,
    runs,
    targets,
    write_branch_files,
)
from tests.tagging.rules_world import add_customer, add_relation, add_tag

TEN = datetime(2026, 11, 23, 10, 0, tzinfo=SHANGHAI)


def by_sender(plan_tasks: list[TaskPlan]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for task in plan_tasks:
        out.setdefault(task.sender, []).extend(task.targets)
    return {k: sorted(v) for k, v in out.items()}


def test_audience_drops_and_senders(db: Database, clock: FrozenClock, tmp_path: Path) -> None:
    write_branch_files(tmp_path)
    settings = branch_settings(tmp_path)
    calendar, content = load(settings)
    add_branch(db, clock.now())
    plan = compute_plan(
        db, occurrence(calendar, "mon-vip", TEN), settings=settings, content=content
    )
    assert plan.error is None
    # c5 opted out, c6 at the cap (30 in November); c4 is a senior but 10:00 is in 9-11.
    assert plan.matched == 7
    assert (plan.dropped["opted_out"], plan.dropped["capped"]) == (1, 1)
    # c7 was added by m2 after m1: the later manager sends.
    assert by_sender(plan.tasks) == {"m1": ["c1", "c2"], "m2": ["c3", "c4", "c7"]}
    texts = {t.sender: t.text for t in plan.tasks}
    assert texts["m1"].startswith("张经理的周一早班车")
    assert texts["m2"].startswith("李经理的周一早班车")


def test_the_sender_is_the_manager_who_added_the_customer_last(
    db: Database, clock: FrozenClock, tmp_path: Path
) -> None:
    """Unknown add times count as the oldest, equal times go to the greater userid, and an
    ended relation never sends, however late it was added."""
    write_branch_files(tmp_path)
    settings = branch_settings(tmp_path)
    calendar, content = load(settings)
    add_branch(db, clock.now())
    early, late = datetime(2025, 1, 1, tzinfo=SHANGHAI), datetime(2026, 1, 1, tzinfo=SHANGHAI)

    def write(s: Session) -> None:
        s.add(Member(userid="m3", name="赵经理", updated_at=clock.now()))
        for eid in ("d1", "d2", "d3", "d4"):
            add_customer(s, eid, clock.now(), name="王小明")
        s.flush()
        for eid, userid, added_at, status in (
            ("d1", "m3", None, "active"),  # unknown: older than any known time
            ("d1", "m1", early, "active"),
            ("d2", "m1", late, "active"),  # a tie: the greater userid sends
            ("d2", "m2", late, "active"),
            ("d3", "m1", early, "active"),
            ("d3", "m3", late, "ended"),  # ended: never the sender
            ("d4", "m2", None, "active"),  # both unknown: the greater userid
            ("d4", "m3", None, "active"),
        ):
            add_relation(s, eid, userid, clock.now(), added_at=added_at, status=status)
        for eid in ("d1", "d2", "d3", "d4"):
            add_tag(s, eid, TIER, "asset", clock.now())

    db.call(write)
    plan = compute_plan(
        db, occurrence(calendar, "mon-vip", TEN), settings=settings, content=content
    )
    senders = {t: task.sender for task in plan.tasks for t in task.targets}
    assert {eid: senders[eid] for eid in ("d1", "d2", "d3", "d4", "c7")} == {
        "d1": "m1",
        "d2": "m2",
        "d3": "m1",
        "d4": "m3",
        "c7": "m2",
    }
    # One task target per customer, whatever the number of relations.
    assert plan.reached == len(senders)


def test_a_senior_outside_the_window_is_deferred_or_skipped(
    db: Database, clock: FrozenClock, tmp_path: Path
) -> None:
    add_branch(db, clock.now())
    noon = TEN.replace(hour=12)
    for policy, deferred, skipped in (("defer", {"14:00": ["c4"]}, 0), ("skip", {}, 1)):
        write_branch_files(tmp_path, window_policy=policy)
        settings = branch_settings(tmp_path)
        calendar, content = load(settings)
        occ = occurrence(calendar, "mon-vip", TEN)
        plan = compute_plan(db, occ, settings=settings, content=content, at=noon)
        got = {f"{at:%H:%M}": sorted(t) for at, t in plan.deferred.items()}
        assert got == deferred
        assert plan.dropped["window"] == skipped
        assert "c4" not in by_sender(plan.tasks).get("m2", [])


def test_commit_writes_once(db: Database, clock: FrozenClock, tmp_path: Path) -> None:
    write_branch_files(tmp_path)
    settings = branch_settings(tmp_path)
    calendar, content = load(settings)
    add_branch(db, clock.now())
    occ = occurrence(calendar, "mon-vip", TEN)
    plan = compute_plan(db, occ, settings=settings, content=content)
    run_id = commit_plan(db, plan, settings=settings, now=TEN)
    assert run_id is not None
    rows = outbox_rows(db)
    assert [(r.kind, r.payload["sender"], sorted(r.payload["external_userid"])) for r in rows] == [
        ("mass_task", "m1", ["c1", "c2"]),
        ("mass_task", "m2", ["c3", "c4", "c7"]),
    ]
    assert all(r.payload["chat_type"] == "single" and r.payload["run_id"] == run_id for r in rows)
    assert all(r.expires_at == TEN + timedelta(minutes=120) for r in rows)
    # The targets wait in the payloads: no rows and no cap units until WeCom creates them.
    assert all(
        (r.payload["target_kind"], r.payload["period"]) == ("customer", "2026-11") for r in rows
    )
    assert (counts(db), targets(db)) == ({"c6": 30}, {})
    # A second planner (another instance, or a restart) finds the run and writes nothing.
    again = compute_plan(db, occ, settings=settings, content=content)
    assert again.reached == 0
    assert again.dropped["already"] == 5
    assert commit_plan(db, plan, settings=settings, now=TEN) is None
    assert len(outbox_rows(db)) == 2
    # WeCom creates m1's task, refusing c2 (not a friend), and then m2's; recording a
    # creation twice writes and counts nothing more.
    results: dict[str, dict[str, Any]] = {
        "m1": {"msgid": "msg1", "fail_list": ["c2"]},
        "m2": {"msgid": "msg2"},
    }

    def created(session: Session, row: OutboxItem) -> None:
        # As the outbox sender does: the success and the row's end in one transaction.
        record_task_created(session, row.payload, results[row.payload["sender"]], TEN)
        session.execute(update(OutboxItem).where(OutboxItem.id == row.id).values(status="sent"))

    for row in (*rows, rows[0]):
        db.call(partial(created, row=row))
    assert counts(db) == {"c1": 1, "c3": 1, "c4": 1, "c6": 30, "c7": 1}
    assert targets(db) == {
        "c1": ("m1", "queued"),
        "c2": ("m1", "not_friend"),
        "c3": ("m2", "queued"),
        "c4": ("m2", "queued"),
        "c7": ("m2", "queued"),
    }
    again = compute_plan(db, occ, settings=settings, content=content)
    assert (again.reached, again.dropped["already"]) == (0, 5)


def test_a_customer_at_the_cap_is_excluded_until_a_new_month(
    db: Database, clock: FrozenClock, tmp_path: Path
) -> None:
    write_branch_files(tmp_path)
    settings = branch_settings(tmp_path, receive_cap="week_7")
    calendar, content = load(settings)
    add_branch(db, clock.now())
    # In week_7 mode the November count does not apply: c6 is reachable this week.
    plan = compute_plan(
        db, occurrence(calendar, "mon-vip", TEN), settings=settings, content=content
    )
    assert plan.dropped["capped"] == 0
    assert "c6" in by_sender(plan.tasks)["m1"]


def test_a_task_not_created_yet_holds_its_targets_units(
    db: Database, clock: FrozenClock, tmp_path: Path
) -> None:
    """With one send a day allowed, another slot the same day finds every customer of a
    planned task capped before WeCom has created it; once the task is given up, they are
    written as unsent, nothing was counted, and they are free again."""
    write_branch_files(tmp_path)
    settings = branch_settings(tmp_path, receive_cap="day_1")
    calendar, content = load(settings)
    add_branch(db, clock.now())
    occ = occurrence(calendar, "mon-vip", TEN)
    first = compute_plan(db, occ, settings=settings, content=content)
    assert commit_plan(db, first, settings=settings, now=TEN) is not None
    other = replace(occ, slot_id="mon-vip-again")
    second = compute_plan(db, other, settings=settings, content=content)
    assert (second.reached, second.dropped["capped"]) == (0, first.reached)

    def give_up(session: Session) -> None:
        for row in session.scalars(select(OutboxItem)):
            release_task_not_created(session, row.payload, "expired", TEN)
            row.status = "expired"

    db.call(give_up)
    assert {eid: status for eid, (_, status) in targets(db).items()} == dict.fromkeys(
        ["c1", "c2", "c3", "c4", "c6", "c7"], "unsent"
    )
    assert counts(db) == {"c6": 30}
    third = compute_plan(db, other, settings=settings, content=content)
    assert (third.reached, third.dropped["capped"]) == (first.reached, 0)


def test_groups_by_owner_and_per_group_copy(
    db: Database, clock: FrozenClock, tmp_path: Path
) -> None:
    add_branch(db, clock.now())
    write_branch_files(tmp_path)
    settings = branch_settings(tmp_path)
    calendar, content = load(settings)
    plan = compute_plan(
        db, occurrence(calendar, "mon-groups", TEN), settings=settings, content=content
    )
    # g3 has no owner to confirm a task; one task per owner otherwise.
    assert plan.dropped["no_owner"] == 1
    assert by_sender(plan.tasks) == {"m1": ["g1", "g4"], "m2": ["g2"]}
    assert len(plan.tasks) == 2

    write_branch_files(tmp_path, groups='segment("理财交流群")', group_template="group_named.md.j2")
    calendar, content = load(settings)
    plan = compute_plan(
        db, occurrence(calendar, "mon-groups", TEN), settings=settings, content=content
    )
    assert [(t.sender, t.targets) for t in plan.tasks] == [("m1", ("g1",))]
    assert plan.tasks[0].text.startswith("理财交流一群的朋友们早上好")


def test_a_group_in_a_window_segment_waits_for_its_window(
    db: Database, clock: FrozenClock, tmp_path: Path
) -> None:
    add_branch(db, clock.now())
    write_branch_files(tmp_path)
    settings = branch_settings(tmp_path)
    calendar, content = load(settings)
    occ = occurrence(calendar, "mon-groups", TEN)
    plan = compute_plan(db, occ, settings=settings, content=content, at=TEN.replace(hour=12))
    assert {f"{at:%H:%M}": sorted(t) for at, t in plan.deferred.items()} == {"14:00": ["g4"]}


def test_run_due_plans_once_then_the_deferred_part_at_its_window(
    db: Database, clock: FrozenClock, tmp_path: Path
) -> None:
    write_branch_files(tmp_path)
    settings = branch_settings(tmp_path)
    calendar, content = load(settings)
    add_branch(db, clock.now())
    # Nothing is due at 09:00.
    assert run_due(db, calendar, settings=settings, content=content, now=clock.now()).outcomes == []
    late = TEN + timedelta(minutes=100)  # 11:40: late, but within the 120 min window
    report = run_due(db, calendar, settings=settings, content=content, now=late)
    assert sorted((o.slot_id, o.status) for o in report.outcomes) == [
        ("mon-groups", "planned"),
        ("mon-vip", "planned"),
    ]
    # At 11:40 the senior c4 and the seniors' group g4 are outside 9-11: deferred to 14:00.
    assert ("mon-vip", "window-1400", "pending") in runs(db)
    assert held(db) == {"c4": "m2", "g4": "m1"}
    assert "c4" not in targets(db)
    before = len(outbox_rows(db))
    assert run_due(db, calendar, settings=settings, content=content, now=late).outcomes == []
    assert len(outbox_rows(db)) == before
    at_two = TEN.replace(hour=14, minute=0, second=30)
    report = run_due(db, calendar, settings=settings, content=content, now=at_two)
    assert sorted((o.slot_id, o.part, o.status, o.reached) for o in report.outcomes) == [
        ("mon-groups", "window-1400", "planned", 1),
        ("mon-vip", "window-1400", "planned", 1),
    ]
    # Kept: held no more, reserved in the task's payload (a row once WeCom creates it).
    assert "c4" not in targets(db)
    assert held(db) == {}
    newest = outbox_rows(db)[before:]
    sent = [r.payload.get("external_userid") or r.payload["chat_id_list"] for r in newest]
    assert sorted(sent) == [["c4"], ["g4"]]


def test_a_slot_missed_beyond_its_lateness_is_expired_not_sent(
    db: Database, clock: FrozenClock, tmp_path: Path
) -> None:
    write_branch_files(tmp_path)
    settings = branch_settings(tmp_path)
    calendar, content = load(settings)
    add_branch(db, clock.now())
    report = run_due(
        db, calendar, settings=settings, content=content, now=TEN + timedelta(minutes=121)
    )
    assert sorted((o.slot_id, o.status) for o in report.outcomes) == [
        ("mon-groups", "expired"),
        ("mon-vip", "expired"),
    ]
    assert outbox_rows(db) == []
    assert counts(db) == {"c6": 30}
    # Expired is final: a later tick does not send it either.
    assert (
        run_due(
            db, calendar, settings=settings, content=content, now=TEN + timedelta(hours=3)
        ).outcomes
        == []
    )
