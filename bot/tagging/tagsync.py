"""Tag sync to WeCom: ensure the bot's tag groups, plan the mark_tag rows, optionally send.

The pieces: `tag_library` (the groups and rule_tag_map), `tagsync_plan` (the per-relation
diff and the manual-tag rule), `tagsync_push` (what a sent mark_tag records locally).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bot.outbox import queue
from bot.outbox.kinds import MARK_TAG
from bot.store.models import OutboxItem
from bot.tagging.tag_library import LibraryReport, ensure_tag_library
from bot.tagging.tagsync_plan import Change, SyncPlan, plan_tag_sync, relation_diff

if TYPE_CHECKING:
    from bot.app import BotApp

__all__ = [
    "Change",
    "LibraryReport",
    "SyncPlan",
    "TagSyncReport",
    "ensure_tag_library",
    "plan_tag_sync",
    "relation_diff",
    "run_tag_sync",
]


@dataclass
class TagSyncReport:
    """One `run_tag_sync`: the library, the plan, and what draining sent."""

    enabled: bool = True
    library: LibraryReport = field(default_factory=LibraryReport)
    plan: SyncPlan = field(default_factory=SyncPlan)
    processed: int = 0
    still_open: int = 0

    def summary(self) -> str:
        if not self.enabled:
            return "tag sync is disabled (tag_sync.enabled: false)"
        lines = [self.library.summary(), self.plan.summary()]
        if self.processed or self.still_open:
            lines.append(
                f"outbox: {self.processed:,} row(s) processed; {self.still_open:,} mark_tag "
                "row(s) still open (retried later by `bot serve` or `bot tick`)"
            )
        return "\n".join(lines)


def _open_count(session: Session) -> int:
    return int(
        session.scalar(
            select(func.count())
            .select_from(OutboxItem)
            .where(OutboxItem.kind == MARK_TAG, OutboxItem.status.in_(queue.OPEN_STATUSES))
        )
        or 0
    )


async def run_tag_sync(
    bot: BotApp,
    *,
    external_userids: Iterable[str] | None = None,
    dry_run: bool = False,
    send: bool = False,
    refresh_library: bool = False,
    retry_failed: bool = False,
) -> TagSyncReport:
    """Ensure the tag library, plan the pushes, and with `send` work the outbox now."""
    settings = bot.settings
    if not settings.tag_sync.enabled:
        return TagSyncReport(enabled=False)
    library = await ensure_tag_library(
        bot.wecom,
        bot.db,
        settings=settings,
        now=bot.clock.now(),
        refresh=refresh_library,
        dry_run=dry_run,
    )
    plan = await asyncio.to_thread(
        plan_tag_sync,
        bot.db,
        settings=settings,
        now=bot.clock.now(),
        external_userids=external_userids,
        dry_run=dry_run,
        retry_failed=retry_failed,
    )
    report = TagSyncReport(library=library, plan=plan)
    if dry_run:
        return report
    if plan.enqueued:
        bot.outbox.notify(queue.BULK)
    if send:
        report.processed = await bot.drain()
    report.still_open = await bot.db.run(_open_count)
    return report
