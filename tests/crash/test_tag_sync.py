"""A large tag sync killed with SIGKILL mid-push, then restarted: every planned tag change is
in WeCom, the bot's pushed_tags ledger matches what WeCom shows, nothing is left open, and
the only relations marked twice are those whose rows the dead process had in flight.

The branch has thousands of customers; `bot sync` and `bot import-customers` (which
retags) prepare the bot, `bot tag-sync --send` plans one mark_tag row per changed relation
and pushes them until it is killed; `bot serve` finishes.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.crash.databases import Databases, Engine, Peek
from tests.crash.procs import Processes, crash_env, free_port, poll
from tests.crash.results import as_dict
from tests.crash.sandbox import MARK_TAG, ready, start_sandbox

log = logging.getLogger("tests.crash")
pytestmark = pytest.mark.slow

CUSTOMERS = 2200
KILL_AFTER = 410  # not a multiple of the batch size: the kill lands mid-batch


def test_tag_sync_killed_mid_push_applies_every_change_once(
    crash_dbs: Databases, procs: Processes, tmp_path: Path
) -> None:
    # SQLite only: the mass-send tests cover both engines' claims, and a push of thousands
    # of rows per engine would double the longest test of the suite.
    engine: Engine = "sqlite"
    bank = tmp_path / "bank.csv"
    sandbox = start_sandbox(
        procs, managers=8, customers=CUSTOMERS, groups=4, seed=23, bank_file=bank, wait=False
    )
    url = crash_dbs.fresh(engine)
    env = crash_env(url, api_port=sandbox.port)
    peek = Peek(url)
    admin = sandbox.admin
    try:
        ready(sandbox)
        prepared = time.monotonic()
        procs.run_bot("sync", ["sync"], env, timeout=180)
        procs.run_bot("import", ["import-customers", str(bank)], env, timeout=120)
        synced = time.monotonic()

        push = procs.bot("tag-sync", ["tag-sync", "--send"], env)
        poll(
            "the first pushes",
            lambda: peek.outbox_status("mark_tag").get("sent", 0) >= KILL_AFTER,
            timeout=120,
            interval=0.05,
            alive=push,
        )
        push.kill9()
        killed = time.monotonic()
        at_kill = peek.outbox_status("mark_tag")
        planned = sum(at_kill.values())
        in_flight = {
            (str(u), str(e))
            for u, e in _relations_of_rows(peek, "WHERE kind = 'mark_tag' AND status = 'sending'")
        }
        assert planned >= 1500, at_kill
        assert at_kill.get("sent", 0) < planned, "the kill did not land mid-push"

        serve = procs.bot("serve", ["serve", "--port", str(free_port())], env)
        poll(
            "an empty outbox",
            lambda: peek.open_outbox() == 0,
            timeout=180,
            interval=0.2,
            alive=serve,
        )
        finished = time.monotonic()
        serve.stop()

        assert peek.outbox_status("mark_tag") == {"sent": planned}
        managed, pushed = peek.bot_tags()
        in_wecom = {
            (r["userid"], r["external_userid"]): set(r["tag_ids"]) for r in admin.relations()
        }
        # Every planned change is on its relation in WeCom.
        for (payload,) in peek.rows("SELECT payload FROM outbox WHERE kind = 'mark_tag'"):
            change = as_dict(payload)
            relation = (change["userid"], change["external_userid"])
            assert set(change["add_tag"]) <= in_wecom[relation], relation
            assert not set(change["remove_tag"]) & in_wecom[relation], relation
        # The ledger of what the bot pushed is exactly the bot's tags WeCom shows.
        shown = {rel: tags & managed for rel, tags in in_wecom.items() if tags & managed}
        assert shown == dict(pushed)

        # One successful call per relation, except rows the dead process had in flight.
        calls = Counter(
            (c["body"]["userid"], c["body"]["external_userid"])
            for c in admin.calls(MARK_TAG)
            if c["errcode"] == 0
        )
        assert set(calls) == set(pushed)
        repeated = {rel for rel, n in calls.items() if n > 1}
        assert repeated <= in_flight
        assert all(n <= 2 for n in calls.values())
        log.info(
            f"[{engine}] {planned} mark_tag rows for {len(in_wecom)} relations; setup "
            f"{synced - prepared:.1f} s; killed {killed - synced:.1f} s into the push with "
            f"{at_kill}; serve finished {finished - killed:.1f} s after the kill; "
            f"{len(repeated)} relation(s) marked again (of {len(in_flight)} in flight)"
        )
    finally:
        peek.close()
        admin.close()


def _relations_of_rows(peek: Peek, where: str) -> list[tuple[str, str]]:
    out = []
    for (payload,) in peek.rows(f"SELECT payload FROM outbox {where}"):
        change = as_dict(payload)
        out.append((str(change["userid"]), str(change["external_userid"])))
    return out
