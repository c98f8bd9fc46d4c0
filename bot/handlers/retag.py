"""After a callback changes what the bot knows of a customer, their tags follow at once."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from bot.handlers.context import HandlerContext
from bot.outbox.queue import BULK
from bot.tagging.engine import retag_customers
from bot.tagging.tag_library import ensure_tag_library
from bot.tagging.tagsync import plan_tag_sync


async def retag_and_sync(ctx: HandlerContext, external_userids: Iterable[str]) -> None:
    """Re-evaluate the rules for these customers (the same rules a full `bot retag`
    applies) and queue the WeCom tag changes that follow, if tag sync is on."""
    ids = sorted(set(external_userids))
    if not ids:
        return
    now = ctx.clock.now()
    settings = ctx.settings
    result = await asyncio.to_thread(retag_customers, ctx.db, ids, settings=settings, now=now)
    changed = sorted(result.changes)
    if not changed or not settings.tag_sync.enabled:
        return
    # A rule tag seen for the first time needs its WeCom tag before it can be pushed; when
    # the library is complete this makes no WeCom call.
    await ensure_tag_library(ctx.wecom, ctx.db, settings=settings, now=now)
    plan = await asyncio.to_thread(
        plan_tag_sync, ctx.db, settings=settings, now=now, external_userids=changed
    )
    if plan.enqueued:
        ctx.outbox.notify(BULK)
