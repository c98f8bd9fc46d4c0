"""change_external_tag: refresh the tag mirror from WeCom's tag library."""

from __future__ import annotations

from bot import mirror
from bot.fetch import fetch_tag_groups
from bot.gateway.events import (
    ExternalTagCreate,
    ExternalTagDelete,
    ExternalTagShuffle,
    ExternalTagUpdate,
)
from bot.handlers.context import HandlerContext


async def refresh_tags(
    ctx: HandlerContext, *, tag_ids: list[str] | None = None, group_ids: list[str] | None = None
) -> None:
    groups = await fetch_tag_groups(ctx.wecom, tag_ids=tag_ids, group_ids=group_ids)
    now = ctx.clock.now()
    # Asking by group gives every tag of those groups (complete); asking by tag id does not.
    scope: set[str] | None
    if group_ids:
        scope = set(group_ids)
    elif tag_ids:
        scope = None
    else:
        scope = set()
    await ctx.db.run(lambda s: mirror.apply_tag_groups(s, groups, now=now, complete_scope=scope))


async def on_tag_create_or_update(
    event: ExternalTagCreate | ExternalTagUpdate, ctx: HandlerContext
) -> None:
    if event.tag_type == "tag_group":
        await refresh_tags(ctx, group_ids=[event.id])
    else:
        await refresh_tags(ctx, tag_ids=[event.id])


async def on_tag_create(event: ExternalTagCreate, ctx: HandlerContext) -> None:
    await on_tag_create_or_update(event, ctx)


async def on_tag_update(event: ExternalTagUpdate, ctx: HandlerContext) -> None:
    await on_tag_create_or_update(event, ctx)


async def on_tag_delete(event: ExternalTagDelete, ctx: HandlerContext) -> None:
    now = ctx.clock.now()
    tag_type = event.tag_type or "tag"
    group_id = await ctx.db.run(
        lambda s: mirror.delete_tag_or_group(s, event.id, tag_type=tag_type, now=now)
    )
    if tag_type != "tag_group" and group_id:
        # WeCom drops a group with its last tag, without an event of its own: re-read the
        # group (complete), which marks it deleted when WeCom no longer lists it.
        await refresh_tags(ctx, group_ids=[group_id])


async def on_tag_shuffle(event: ExternalTagShuffle, ctx: HandlerContext) -> None:
    # Shuffle reorders a group (Id set) or every group (Id empty).
    if event.id:
        await refresh_tags(ctx, group_ids=[event.id])
    else:
        await refresh_tags(ctx)
