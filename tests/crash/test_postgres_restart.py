"""The bot rides out a PostgreSQL restart under load.

A private PostgreSQL server (never the shared test cluster) holds the bot's database.
`bot serve` is sending hundreds of mark_tag rows and taking a steady stream of signed
callbacks when the server is restarted with `pg_ctl restart -m fast`, which cuts every
session. Afterwards the same process (not restarted) must store and acknowledge callbacks
again, must have stored every callback it acknowledged, before or after, and must finish
every outbox row.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import pytest
from sqlalchemy.exc import OperationalError

from bot.clock import SystemClock
from bot.outbox.kinds import MARK_TAG
from bot.store.db import Database, make_engine
from bot.store.migrate import upgrade
from bot.tagging.tagsync_outbox import enqueue_many
from bot.tagging.tagsync_push import mark_tag_key, mark_tag_payload
from tests.crash.conftest import GroupsBranch
from tests.crash.databases import Peek
from tests.crash.deliveries import Delivery, deliver, http_requests, msgid_index
from tests.crash.pgprivate import PrivatePostgres
from tests.crash.procs import Processes, crash_env, free_port, poll, wait_port

log = logging.getLogger("tests.crash")
pytestmark = pytest.mark.slow

CALLBACKS = 4000
CONNECTIONS = 8
PACE = 0.01
RESTART_AFTER = 100  # mark_tag rows sent before the restart
AFTER_RESTART = 200  # callbacks acknowledged after it before the load stops

T = TypeVar("T")


def _safely(probe: Callable[[], T]) -> Callable[[], T | None]:
    """A probe that reads the database answers None while the server is down."""

    def run() -> T | None:
        try:
            return probe()
        except OperationalError:
            return None

    return run


def test_bot_recovers_from_a_postgres_restart_under_load(
    groups_branch: GroupsBranch, procs: Processes
) -> None:
    admin = groups_branch.sandbox.admin
    pg = PrivatePostgres()
    peek = Peek(pg.url)
    stop = threading.Event()
    loader: threading.Thread | None = None
    try:
        engine = make_engine(pg.url)
        upgrade(engine)
        # Outbox load: four tags of our own on every relation, one row per (relation, tag).
        tags = sorted(
            admin.create_tags("重启演练", ["重启甲", "重启乙", "重启丙", "重启丁"]).values()
        )
        relations = [(r["userid"], r["external_userid"]) for r in admin.relations() if r["alive"]]
        rows = [
            (mark_tag_key(u, e, [t], []), mark_tag_payload(u, e, [t], []))
            for u, e in relations
            for t in tags
        ]
        now = SystemClock().now()
        Database(engine).call(lambda s: enqueue_many(s, rows, kind=MARK_TAG, now=now))
        engine.dispose()

        port = free_port()
        env = crash_env(pg.url, api_port=groups_branch.sandbox.port)
        serve = procs.bot("serve", ["serve", "--port", str(port)], env)
        wait_port(port, serve)
        answers: list[Delivery] = []
        requests = list(enumerate(http_requests(CALLBACKS, port)))

        def load() -> None:
            # Answers land in `answers` as they come (list.append is atomic), so the test
            # can watch the stream while it runs.
            asyncio.run(
                deliver(
                    port,
                    requests,
                    connections=CONNECTIONS,
                    pace=PACE,
                    stop=stop.is_set,
                    on_answer=answers.append,
                )
            )

        loader = threading.Thread(target=load, name="callbacks")
        loader.start()
        sent = _safely(lambda: peek.outbox_status(MARK_TAG).get("sent", 0) >= RESTART_AFTER)
        poll("the first pushes", sent, timeout=60, alive=serve)
        at_restart = peek.outbox_status(MARK_TAG)
        restart_began = time.monotonic()
        pg.restart()
        restart_ended = time.monotonic()

        drained_probe = _safely(lambda: peek.open_outbox() == 0)
        poll("the outbox drained", drained_probe, timeout=120, interval=0.2, alive=serve)
        drained = time.monotonic()
        # The stream goes on until enough callbacks were acknowledged after the restart.
        poll(
            "callbacks acknowledged after the restart",
            lambda: (
                sum(1 for d in list(answers) if d.status == 200 and d.at > restart_ended)
                >= AFTER_RESTART
            ),
            timeout=60,
            alive=serve,
        )
        stop.set()
        loader.join(timeout=60)
        poll(
            "every stored callback processed",
            _safely(
                lambda: (
                    not peek.scalar(
                        "SELECT count(*) FROM inbox WHERE status NOT IN ('done', 'unhandled')"
                    )
                )
            ),
            timeout=60,
            alive=serve,
        )
        assert serve.alive(), "bot serve died with the database"
        serve.stop()

        stored = {msgid_index(bytes(p)) for (p,) in peek.rows("SELECT payload FROM inbox")}
        acked = [d for d in answers if d.status == 200]
        after = [d for d in acked if d.at > restart_ended]
        assert len(after) >= AFTER_RESTART
        lost = {d.index for d in acked} - stored
        assert not lost, f"{len(lost)} acknowledged callbacks were not stored"
        refused = [d for d in answers if d.status != 200]
        # Only refusals WeCom retries (503: not stored), and only around the restart.
        assert {d.status for d in refused} <= {503}, {d.status for d in refused}
        assert all(restart_began - 1 <= d.at <= restart_ended + 10 for d in refused)
        assert peek.outbox_status(MARK_TAG) == {"sent": len(rows)}
        in_wecom = {
            (r["userid"], r["external_userid"]): set(r["tag_ids"]) for r in admin.relations()
        }
        assert all(set(tags) <= in_wecom[rel] for rel in relations)
        first_ok = min(d.at for d in after)
        log.info(
            f"restart took {restart_ended - restart_began:.1f} s with {at_restart} mark_tag "
            f"rows; {len(refused)} callbacks refused (503) around it; first 200 "
            f"{first_ok - restart_ended:.2f} s after; outbox of {len(rows)} drained "
            f"{drained - restart_ended:.1f} s after; {len(acked)} callbacks acknowledged"
        )
    finally:
        stop.set()
        if loader is not None:
            loader.join(timeout=60)
        peek.close()
        pg.close()
