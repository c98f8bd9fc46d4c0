"""The soak script's pure parts: the day it plans, its fault schedule, its load summary."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from bench.soak_faults import fault_plan
from bench.soak_load import Outcome, Recorder, summarise
from bench.soak_profile import OTHER, classify
from bench.soak_setup import soak_calendar
from bot.calendar.occurrences import occurrences_on
from bot.calendar.schedule import load_calendar
from bot.clock import SHANGHAI

ROOT = Path(__file__).resolve().parents[2]


def test_every_default_slot_comes_due_once_at_its_moved_time(tmp_path: Path) -> None:
    # Sunday 23:58: the spread crosses midnight, so slots land on two weekdays.
    first = datetime(2026, 11, 22, 23, 58, tzinfo=SHANGHAI)
    times = soak_calendar(tmp_path / "schedules", first=first, spread_minutes=4)
    moved = load_calendar(tmp_path / "schedules", ROOT / "content")
    default = load_calendar(ROOT / "schedules", ROOT / "content")

    assert [t.slot_id for t in times] == [s.id for s in default.slots]
    assert {t.fire_at.date() for t in times} == {first.date(), first.date() + timedelta(days=1)}
    assert max(t.fire_at for t in times) - first <= timedelta(minutes=4)
    for t in times:
        found = [
            o for o in occurrences_on(moved, t.fire_at.date(), SHANGHAI) if o.slot_id == t.slot_id
        ]
        assert [o.fire_at for o in found] == [t.fire_at]
    assert not moved.overrides


def test_the_fault_schedule_is_ordered_and_inside_the_load() -> None:
    plan = fault_plan(600.0, first_slot_at=75.0)
    assert [s.at for s in plan] == sorted(s.at for s in plan)
    assert all(0 <= s.at < 600 for s in plan)
    kinds = {body["kind"] for step in plan for body in step.bodies}
    assert kinds == {"chaos", "expire_tokens", "revoke_tokens", "errcode", "timeout"}
    assert any(s.at == 78.0 and "add_msg_template" in s.label for s in plan)


def test_the_load_summary_counts_only_acknowledged_callbacks() -> None:
    recorder = Recorder()
    for i in range(100):
        due = i / 10
        recorder.outcomes.append(
            Outcome(due, due, due + 0.005 + i / 10_000, "200", f"k{i}", "text")
        )
    recorder.outcomes.append(Outcome(10.0, 10.0, 15.0, "timeout", "late", "text"))
    recorder.unsent = 2
    summary = summarise(recorder, rate=10.0, seconds=10.0)

    assert (summary["due"], summary["sent"], summary["acked"]) == (103, 101, 100)
    assert summary["achieved_rate"] == 10.0
    assert summary["statuses"] == {"200": 100, "timeout": 1}
    ack = summary["ack_ms"]
    assert isinstance(ack, dict)
    assert 5.0 <= ack["p50"] < ack["p99"] <= 15.0
    assert summary["over_100ms"] == 0
    assert summary["per_second_min"] == summary["per_second_max"] == 10


def test_a_gil_sample_is_charged_to_the_innermost_part_of_the_bot() -> None:
    sender = "Sender.process (bot/outbox/sender.py:176)"
    limiter = "DatabaseRateLimiter.reserve (bot/wecom/ratelimit_db.py:300)"
    endpoint = "CallbackGateway.receive (bot/gateway/endpoint.py:110)"
    uvicorn = "RequestResponseCycle.run_asgi (uvicorn/protocols/http/httptools_impl.py:422)"
    assert classify(f"main;{sender};{limiter};execute (psycopg/cursor.py:1)") == "rate limiter"
    assert classify(f"main;{sender};send (httpx/_client.py:1)") == "outbox sender"
    assert classify(f"main;{uvicorn};{endpoint};decrypt (cryptography/x.py:1)") == (
        "callback endpoint"
    )
    assert classify(f"main;{uvicorn};feed (xml/etree/ElementTree.py:1)") == (
        "HTTP server (uvicorn, starlette)"
    )
    assert classify("main;select (selectors.py:468)") == OTHER
