"""`bot sync`: a full pull of follow users, their customers, groups and corp tags.

Each step records a checkpoint (its cursor) after every page it stores, so an interrupted
sync resumes where it stopped; a finished run clears its checkpoints, and running it again
stores the same rows again (upserts), so it is idempotent.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from rich.progress import Progress, TaskID
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from bot import mirror
from bot.fetch import fetch_group, fetch_tag_groups
from bot.store.models import FollowRelation, Group, SyncCheckpoint

if TYPE_CHECKING:
    from bot.app import BotApp

RUN_STEP = "run"


@dataclass
class SyncReport:
    """What a sync stored."""

    run_id: str
    resumed: bool
    members: int = 0
    customers: int = 0
    relations: int = 0
    ended_relations: int = 0
    groups: int = 0
    dismissed_groups: int = 0
    tags: int = 0
    skipped_steps: list[str] = field(default_factory=list)

    def summary(self) -> str:
        head = f"sync {self.run_id[:8]}{' (resumed)' if self.resumed else ''}:"
        return (
            f"{head} {self.members} members, {self.customers} customer rows, "
            f"{self.relations} follow relations, {self.ended_relations} ended, "
            f"{self.groups} groups ({self.dismissed_groups} gone), {self.tags} tags"
        )


class Checkpoints:
    """Reads and writes `sync_checkpoints` for one run."""

    def __init__(self, app: BotApp) -> None:
        self.db = app.db
        self.clock = app.clock

    async def start_or_resume(self) -> tuple[str, datetime, bool]:
        now = self.clock.now()

        def fn(session: Session) -> tuple[str, datetime, bool]:
            row = session.get(SyncCheckpoint, RUN_STEP)
            if row is not None and not row.done:
                started = datetime.fromisoformat(row.cursor or now.isoformat())
                return row.run_id, started, True
            session.execute(delete(SyncCheckpoint))
            run_id = uuid.uuid4().hex
            session.add(
                SyncCheckpoint(
                    step=RUN_STEP, cursor=now.isoformat(), done=False, run_id=run_id, updated_at=now
                )
            )
            return run_id, now, False

        return await self.db.run(fn)

    async def get(self, step: str) -> SyncCheckpoint | None:
        return await self.db.run(lambda s: s.get(SyncCheckpoint, step))

    def save(
        self, session: Session, step: str, run_id: str, *, cursor: str | None, done: bool
    ) -> None:
        """Saved in the same transaction as the page it follows, so they never disagree."""
        now = self.clock.now()
        row = session.get(SyncCheckpoint, step)
        if row is None:
            session.add(
                SyncCheckpoint(step=step, cursor=cursor, done=done, run_id=run_id, updated_at=now)
            )
        else:
            row.cursor, row.done, row.updated_at = cursor, done, now

    async def finish(self) -> None:
        await self.db.run(lambda s: s.execute(delete(SyncCheckpoint)))


def _chunks(items: Sequence[str], size: int) -> list[list[str]]:
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


async def run_sync(app: BotApp, *, progress: bool = False) -> SyncReport:
    """Pull everything; resume an unfinished run if there is one."""
    checkpoints = Checkpoints(app)
    run_id, started, resumed = await checkpoints.start_or_resume()
    report = SyncReport(run_id=run_id, resumed=resumed)
    bar: AbstractContextManager[Any] = Progress(transient=False) if progress else nullcontext()
    with bar as shown:
        ui = _Ui(shown if isinstance(shown, Progress) else None)
        userids = await _sync_follow_users(app, checkpoints, run_id, report)
        await _sync_customers(app, checkpoints, run_id, userids, report, ui)
        report.ended_relations = await _end_unlisted(app, userids, started)
        await _sync_groups(app, checkpoints, run_id, userids, report, ui)
        report.dismissed_groups = await _close_unlisted_groups(app, userids, started)
        await _sync_tags(app, report)
    await checkpoints.finish()
    return report


class _Ui:
    def __init__(self, progress: Progress | None) -> None:
        self.progress = progress

    def task(self, label: str, total: int | None) -> TaskID | None:
        return self.progress.add_task(label, total=total) if self.progress else None

    def advance(self, task: TaskID | None, amount: float = 1) -> None:
        if self.progress is not None and task is not None:
            self.progress.advance(task, amount)


async def _sync_follow_users(
    app: BotApp, checkpoints: Checkpoints, run_id: str, report: SyncReport
) -> list[str]:
    result = await app.wecom.externalcontact.get_follow_user_list()
    userids = sorted(set(result.follow_user))
    now = app.clock.now()

    def store(session: Session) -> None:
        mirror.set_follow_users(session, userids, now=now)
        checkpoints.save(session, "follow_users", run_id, cursor=None, done=True)

    await app.db.run(store)
    report.members = len(userids)
    return userids


async def _sync_customers(
    app: BotApp,
    checkpoints: Checkpoints,
    run_id: str,
    userids: list[str],
    report: SyncReport,
    ui: _Ui,
) -> None:
    batches = _chunks(userids, app.settings.sync.batch_userids)
    task = ui.task("customers (member batches)", len(batches))
    for index, batch in enumerate(batches):
        step = f"customers:{index}:{batch[0]}"
        mark = await checkpoints.get(step)
        if mark is not None and mark.done:
            report.skipped_steps.append(step)
            ui.advance(task)
            continue
        cursor = mark.cursor if mark else None
        while True:
            page = await app.wecom.externalcontact.batch_get_by_user(
                batch, cursor=cursor, limit=app.settings.sync.page_limit
            )
            items = [item.model_dump(mode="json") for item in page.external_contact_list]
            next_cursor = page.next_cursor or None
            now = app.clock.now()

            def store(
                session: Session,
                items: list[dict[str, Any]] = items,
                nxt: str | None = next_cursor,
                now: datetime = now,
                step: str = step,
            ) -> None:
                mirror.apply_batch_items(
                    session,
                    items,
                    now=now,
                    opt_out_keywords=app.settings.privacy.opt_out_keywords,
                )
                checkpoints.save(session, step, run_id, cursor=nxt, done=nxt is None)

            await app.db.run(store)
            report.relations += len(items)
            report.customers += len({i["external_contact"]["external_userid"] for i in items})
            if not next_cursor:
                break
            cursor = next_cursor
        ui.advance(task)


async def _end_unlisted(app: BotApp, userids: list[str], started: datetime) -> int:
    """Relations of synced members that this run did not see have ended."""
    if not userids:
        return 0
    now = app.clock.now()

    def fn(session: Session) -> int:
        result = session.execute(
            update(FollowRelation)
            .where(
                FollowRelation.userid.in_(userids),
                FollowRelation.status == mirror.ACTIVE,
                FollowRelation.updated_at < started,
            )
            .values(status=mirror.ENDED, ended_at=now, ended_reason="not_listed", updated_at=now)
        )
        return int(getattr(result, "rowcount", 0) or 0)

    return await app.db.run(fn)


async def _sync_groups(
    app: BotApp,
    checkpoints: Checkpoints,
    run_id: str,
    userids: list[str],
    report: SyncReport,
    ui: _Ui,
) -> None:
    # owner_filter avoids 81017 for scopes over 1000 people; WeCom takes 100 owners a call.
    batches = _chunks(userids, 100)
    task = ui.task("groups", None)
    for index, owners in enumerate(batches):
        step = f"groups:{index}:{owners[0]}"
        mark = await checkpoints.get(step)
        if mark is not None and mark.done:
            report.skipped_steps.append(step)
            continue
        cursor = mark.cursor if mark else None
        while True:
            page = await app.wecom.groupchat.list(
                owner_userids=owners, cursor=cursor, limit=app.settings.sync.group_page_limit
            )
            fetched = [await fetch_group(app.wecom, ref.chat_id) for ref in page.group_chat_list]
            # A group dismissed between list and get answers 40050: the close-out below
            # treats it like any group the list no longer shows.
            chats = [chat for chat in fetched if chat is not None]
            next_cursor = page.next_cursor or None
            now = app.clock.now()

            def store(
                session: Session,
                chats: list[dict[str, Any]] = chats,
                nxt: str | None = next_cursor,
                now: datetime = now,
                step: str = step,
            ) -> None:
                mirror.apply_group_details(session, chats, now=now)
                checkpoints.save(session, step, run_id, cursor=nxt, done=nxt is None)

            await app.db.run(store)
            report.groups += len(chats)
            ui.advance(task, len(chats))
            if not next_cursor:
                break
            cursor = next_cursor


async def _close_unlisted_groups(app: BotApp, owners: list[str], started: datetime) -> int:
    """Groups of synced owners that this run did not see are gone (dismissed, or handed to
    an owner outside the app's scope): their memberships are closed, their rows kept."""
    if not owners:
        return 0
    now = app.clock.now()

    def fn(session: Session) -> int:
        gone = session.scalars(
            select(Group.chat_id).where(
                Group.owner.in_(owners),
                Group.status == mirror.ACTIVE,
                Group.updated_at < started,
            )
        ).all()
        for chat_id in gone:
            mirror.dismiss_group(session, chat_id, now=now)
        return len(gone)

    return await app.db.run(fn)


async def _sync_tags(app: BotApp, report: SyncReport) -> None:
    groups = await fetch_tag_groups(app.wecom)
    now = app.clock.now()
    report.tags = await app.db.run(
        lambda s: mirror.apply_tag_groups(s, groups, now=now, complete_scope=set())
    )


def existing_relations(session: Session) -> int:
    return len(session.scalars(select(FollowRelation.id)).all())
