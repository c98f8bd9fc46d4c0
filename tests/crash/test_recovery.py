"""Lease takeover and reconcile-before-retry, with a process killed while WeCom holds its
answers.

Two groups, two tasks. The sandbox takes the first add_msg_template and creates the task
but holds the answer (timeout_after: the outcome is unknown to the caller), and holds the
second before doing anything (timeout_before: no task). `bot tick` is killed while both
calls hang, so both rows stay leased by a dead process. A restarted `bot serve` (lease 5 s)
must not touch them before the lease runs out, must take them over soon after, and must
look each task up before creating it: the first is found, the second created, once each.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.crash.calendar_files import calendar_env
from tests.crash.conftest import GroupsBranch
from tests.crash.databases import Peek
from tests.crash.procs import Processes, crash_env, free_port, poll, wait_port
from tests.crash.results import as_dict
from tests.crash.sandbox import ADD_MSG_TEMPLATE

log = logging.getLogger("tests.crash")
pytestmark = pytest.mark.slow

LIST_V2 = "externalcontact/get_groupmsg_list_v2"
LEASE_SECONDS = 5
# The sender looks for due rows every poll interval (1 s); the rest is scheduling slack.
TAKEOVER_SLACK = 4.0


def _epoch(value: Any) -> float:
    """A UTC timestamp column as epoch seconds (SQLite hands back text)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime), value
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return float(value.timestamp())


def test_rows_of_a_dead_process_are_taken_over_after_the_lease_and_reconciled(
    groups_branch: GroupsBranch, procs: Processes, tmp_path: Path
) -> None:
    sandbox, admin = groups_branch.sandbox, groups_branch.sandbox.admin
    url = groups_branch.synced("sqlite")
    chats = sorted(g["chat_id"] for g in admin.state()["groups"])[:2]
    slot_id, theme = "crash-lease", "租约演练"
    expr = " or ".join(f'chat_id == "{c}"' for c in chats)
    env = crash_env(
        url,
        api_port=sandbox.port,
        BOT_OUTBOX__LEASE_SECONDS=str(LEASE_SECONDS),
        **calendar_env(tmp_path, slot_id=slot_id, theme=theme, groups=expr),
    )
    peek = Peek(url)
    calls_before = len(admin.calls(ADD_MSG_TEMPLATE))
    admin.fault(kind="timeout", path=ADD_MSG_TEMPLATE, times=1, after_effect=True)
    admin.fault(kind="timeout", path=ADD_MSG_TEMPLATE, times=1, after_effect=False)
    try:
        tick = procs.bot("tick", ["tick"], env)

        def both_hang() -> list[dict[str, Any]] | None:
            calls = admin.calls(ADD_MSG_TEMPLATE)[calls_before:]
            return calls if len(calls) == 2 else None

        hung = poll("both calls to hang", both_hang, timeout=60, alive=tick)
        tick.kill9()
        killed_at = time.time()
        assert sorted(c["fault"] for c in hung) == ["timeout_after", "timeout_before"]
        rows = peek.rows(
            "SELECT id, status, leased_by, lease_until FROM outbox WHERE kind = 'mass_task'"
        )
        assert len(rows) == 2, rows
        assert {r[1] for r in rows} == {"sending"}, rows
        lease_until = max(_epoch(r[3]) for r in rows)
        created = [t for t in admin.tasks() if theme in t["text"]]
        assert len(created) == 1, "the timeout_after call created its task"

        port = free_port()
        serve = procs.bot("serve", ["serve", "--port", str(port)], env)
        wait_port(port, serve)
        ready_at = time.time()
        poll("both rows sent", lambda: peek.open_outbox() == 0, timeout=60, alive=serve)
        settled_at = time.time()
        serve.stop()

        # The takeover is the first lookup after the kill: not before the lease ran out,
        # and within a poll interval (plus slack) of it, or of the new process being up.
        lookups = [c["at"] for c in admin.calls(LIST_V2) if c["at"] > killed_at]
        assert lookups, "the rows were not reconciled"
        takeover_at = min(lookups)
        assert takeover_at >= lease_until, (
            f"rows taken over {lease_until - takeover_at:.2f} s before their lease ended"
        )
        assert takeover_at <= max(lease_until, ready_at) + TAKEOVER_SLACK

        results = [
            as_dict(r) for (r,) in peek.rows("SELECT result FROM outbox WHERE kind = 'mass_task'")
        ]
        assert peek.outbox_status("mass_task") == {"sent": 2}
        found = [r for r in results if r.get("reconciled")]
        assert [r["msgid"] for r in found] == [created[0]["msgid"]]
        tasks = [t for t in admin.tasks() if theme in t["text"]]
        assert sorted(r["target"] for t in tasks for r in t["recipients"]) == chats
        assert sorted(r["msgid"] for r in results) == sorted(t["msgid"] for t in tasks)

        # After the kill: nothing before the lease ended, then a lookup before the one retry.
        later = [c for c in admin.calls(ADD_MSG_TEMPLATE)[calls_before:] if c["at"] > killed_at]
        assert len(later) == 1
        assert later[0]["at"] >= lease_until
        assert takeover_at < later[0]["at"], "created again without looking it up first"
        log.info(
            f"lease ended {lease_until - killed_at:.1f} s after the kill, the new process "
            f"was up after {ready_at - killed_at:.1f} s; taken over "
            f"{takeover_at - lease_until:.2f} s after the lease ended; both rows settled "
            f"{settled_at - killed_at:.1f} s after the kill"
        )
    finally:
        admin.clear_faults()
        peek.close()
