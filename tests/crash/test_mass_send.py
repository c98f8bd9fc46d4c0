"""A day's mass-send killed with SIGKILL mid-send, then restarted: every (slot, group) task
exists in WeCom exactly once, and nothing is left open.

`bot tick` plans the slot (one task per group, 320 groups) and starts sending; once some
tasks exist in the sandbox it is killed. `bot serve` then finishes: rows still pending go
out, rows the dead process had leased come back after the lease and are reconciled with
get_groupmsg_list_v2 before any retry, so a task created just before the kill is found,
not created again.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.crash.calendar_files import calendar_env
from tests.crash.conftest import GroupsBranch
from tests.crash.databases import ENGINES, Databases, Engine, Peek
from tests.crash.procs import Processes, crash_env, free_port, poll
from tests.crash.results import as_dict

log = logging.getLogger("tests.crash")
pytestmark = pytest.mark.slow

# Kill once this many tasks exist: some, far from all, and not a multiple of the batch size
# (20), so calls are in flight.
KILL_AFTER = 50


@pytest.mark.parametrize("engine", ENGINES)
def test_mass_send_killed_mid_send_creates_every_task_once(
    engine: Engine,
    groups_branch: GroupsBranch,
    crash_dbs: Databases,
    procs: Processes,
    tmp_path: Path,
) -> None:
    sandbox, admin = groups_branch.sandbox, groups_branch.sandbox.admin
    url = groups_branch.synced(engine)
    slot_id, theme = f"crash-mass-{engine}", f"群发演练{engine}"
    env = crash_env(
        url, api_port=sandbox.port, **calendar_env(tmp_path, slot_id=slot_id, theme=theme)
    )
    peek = Peek(url)
    try:
        before = admin.task_count()
        started = time.monotonic()
        tick = procs.bot("tick", ["tick"], env)
        poll(
            "the first tasks",
            lambda: admin.task_count() - before >= KILL_AFTER,
            timeout=120,
            interval=0.02,
            alive=tick,
        )
        tick.kill9()
        killed = time.monotonic()
        created_at_kill = admin.task_count() - before
        planned = int(peek.scalar("SELECT count(*) FROM outbox WHERE kind = 'mass_task'"))
        at_kill = peek.outbox_status("mass_task")
        assert planned >= 300, at_kill
        assert KILL_AFTER <= created_at_kill < planned, "the kill did not land mid-send"
        assert at_kill.get("sent", 0) < planned

        serve = procs.bot("serve", ["serve", "--port", str(free_port())], env)
        poll(
            "an empty outbox",
            lambda: peek.open_outbox() == 0,
            timeout=120,
            interval=0.2,
            alive=serve,
        )
        finished = time.monotonic()
        serve.stop()

        # Every planned (group, sender) pair is in exactly one sandbox task of this slot.
        targets = peek.rows(
            "SELECT t.target_id, t.sender FROM slot_targets t "
            "JOIN slot_runs r ON r.id = t.run_id WHERE r.slot_id = :slot",
            slot=slot_id,
        )
        wanted = {(str(sender), str(target)) for target, sender in targets}
        tasks = [t for t in admin.tasks() if theme in t["text"]]
        reached = Counter((r["userid"], r["target"]) for t in tasks for r in t["recipients"])
        assert len(wanted) == planned
        assert set(reached) == wanted
        twice = {pair: n for pair, n in reached.items() if n != 1}
        assert not twice, f"groups with more than one task: {twice}"
        assert len(tasks) == planned

        # The outbox: every row sent, each with the msgid of a distinct sandbox task.
        assert peek.outbox_status("mass_task") == {"sent": planned}
        results = [
            as_dict(r) for (r,) in peek.rows("SELECT result FROM outbox WHERE kind = 'mass_task'")
        ]
        msgids = [r["msgid"] for r in results]
        assert sorted(msgids) == sorted(t["msgid"] for t in tasks)
        recorded = peek.rows("SELECT msgid FROM mass_tasks WHERE msgid IS NOT NULL")
        assert sorted(str(m) for (m,) in recorded) == sorted(msgids)
        assert peek.open_outbox() == 0
        reconciled = sum(1 for r in results if r.get("reconciled"))
        log.info(
            f"[{engine}] {planned} tasks; killed after {killed - started:.1f} s with "
            f"{created_at_kill} created ({at_kill}); serve finished {finished - killed:.1f} s "
            f"after the kill; {reconciled} found by reconcile"
        )
    finally:
        peek.close()
