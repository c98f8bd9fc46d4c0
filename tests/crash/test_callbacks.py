"""Nothing acknowledged is lost: `bot serve` killed with SIGKILL in the middle of a burst of
signed callbacks keeps every callback it answered 200, processes each once after the
restart, and WeCom's retries of the rest are stored once more each, never twice."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import signal
import time

import pytest

from tests.crash.databases import ENGINES, Databases, Engine, Peek
from tests.crash.deliveries import Delivery, deliver, http_requests, msgid_index
from tests.crash.procs import Processes, crash_env, free_port, poll, wait_port

log = logging.getLogger("tests.crash")
pytestmark = pytest.mark.slow

BURST = 1500
CONNECTIONS = 16
FINISHED = ("done", "unhandled")

Row = tuple[str, object, int]


def _inbox(peek: Peek) -> dict[int, list[Row]]:
    """Inbox rows by request index (a list, so a duplicate would show)."""
    rows: dict[int, list[Row]] = {}
    for payload, status, processed_at, attempts in peek.rows(
        "SELECT payload, status, processed_at, attempts FROM inbox"
    ):
        rows.setdefault(msgid_index(bytes(payload)), []).append(
            (str(status), processed_at, int(attempts))
        )
    return rows


def _all_finished(peek: Peek) -> bool:
    return not peek.scalar("SELECT count(*) FROM inbox WHERE status NOT IN ('done', 'unhandled')")


@pytest.mark.parametrize("engine", ENGINES)
def test_callbacks_acknowledged_before_a_kill_are_kept_and_processed_once(
    engine: Engine, crash_dbs: Databases, procs: Processes
) -> None:
    url = crash_dbs.fresh(engine)
    env = crash_env(url, api_port=None)
    peek = Peek(url)
    port = free_port()
    try:
        serve = procs.bot("serve", ["serve", "--port", str(port)], env)
        wait_port(port, serve)
        requests = list(enumerate(http_requests(BURST, port)))
        acked = 0

        def kill_mid_burst(delivery: Delivery) -> None:
            nonlocal acked
            acked += delivery.status == 200
            if acked == BURST // 3 and serve.alive():
                os.kill(serve.pid, signal.SIGKILL)

        started = time.monotonic()
        answers = asyncio.run(
            deliver(port, requests, connections=CONNECTIONS, on_answer=kill_mid_burst)
        )
        serve.kill9()
        ok = {d.index for d in answers if d.status == 200}
        refused = [d for d in answers if d.status not in (200, None)]
        assert not refused, refused[:5]
        assert BURST // 3 <= len(ok) < BURST, "the kill did not land mid-burst"

        # Read straight after the kill: an acknowledgement means the row was committed.
        at_kill = _inbox(peek)
        lost = ok - set(at_kill)
        assert not lost, f"{len(lost)} acknowledged callbacks are not stored"

        restarted = time.monotonic()
        serve = procs.bot("serve", ["serve", "--port", str(port)], env)
        wait_port(port, serve)
        poll(
            "every stored callback processed", lambda: _all_finished(peek), timeout=60, alive=serve
        )
        processed = time.monotonic()
        after = _inbox(peek)
        assert set(after) == set(at_kill)
        for index, rows in after.items():
            assert len(rows) == 1, (index, rows)
            status, processed_at, _ = rows[0]
            assert status in FINISHED
            before_status, before_processed, _ = at_kill[index][0]
            if before_status in FINISHED:
                # Finished before the kill: not processed again by the new process.
                assert processed_at == before_processed, index

        # WeCom retries every delivery it got no 200 for; a few answered ones come again too.
        retries = [r for r in requests if r[0] not in ok]
        retries += random.Random(5).sample([r for r in requests if r[0] in ok], 100)
        again = asyncio.run(deliver(port, retries, connections=CONNECTIONS))
        assert sorted(d.status or 0 for d in again) == [200] * len(retries)
        poll("the retries processed", lambda: _all_finished(peek), timeout=60, alive=serve)
        final = _inbox(peek)
        serve.stop()
        assert sorted(final) == list(range(BURST))
        assert all(len(rows) == 1 and rows[0][0] in FINISHED for rows in final.values())
        in_flight = sum(1 for rows in at_kill.values() if rows[0][0] not in FINISHED)
        log.info(
            f"[{engine}] {len(ok)} of {BURST} acknowledged before the kill "
            f"({len(at_kill)} stored, {in_flight} unfinished); restart to all processed "
            f"{processed - restarted:.1f} s; burst started {restarted - started:.1f} s earlier"
        )
    finally:
        peek.close()
