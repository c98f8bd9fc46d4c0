"""change_external_chat: keep customer groups and their members mirrored.

Callbacks may be lost or arrive out of order, so a diff is applied only when the stored
member_version equals the event's LastMemVer; otherwise the whole group is re-read.
"""

from __future__ import annotations

from bot import mirror
from bot.clock import utc_from_timestamp
from bot.fetch import fetch_group
from bot.gateway.events import ExternalChatCreate, ExternalChatDismiss, ExternalChatUpdate
from bot.handlers.context import HandlerContext

MEMBER_CHANGES = {"add_member", "del_member"}


async def refetch_group(ctx: HandlerContext, chat_id: str) -> bool:
    """Re-read a group and store it; False when WeCom no longer shows it (dismissed since
    the event, or its owner left the app's scope): its own event says what happened."""
    chat = await fetch_group(ctx.wecom, chat_id)
    if chat is None:
        ctx.log.info("group %s is gone from WeCom; nothing to re-read", chat_id)
        return False
    now = ctx.clock.now()
    await ctx.db.run(lambda s: mirror.apply_group_detail(s, chat, now=now))
    return True


async def on_chat_create(event: ExternalChatCreate, ctx: HandlerContext) -> None:
    await refetch_group(ctx, event.chat_id)


async def on_chat_update(event: ExternalChatUpdate, ctx: HandlerContext) -> None:
    if event.update_detail not in MEMBER_CHANGES:
        # Name, owner and notice changes carry no new value in the event: read it.
        await refetch_group(ctx, event.chat_id)
        return
    stored = await ctx.db.run(lambda s: mirror.stored_member_version(s, event.chat_id))
    if stored is None or event.last_mem_ver is None or stored != event.last_mem_ver:
        ctx.log.info(
            "group %s version %s != event's last %s: re-reading the group",
            event.chat_id,
            stored,
            event.last_mem_ver,
        )
        await refetch_group(ctx, event.chat_id)
        return
    joined = event.mem_change_list if event.update_detail == "add_member" else ()
    left = event.mem_change_list if event.update_detail == "del_member" else ()
    at = utc_from_timestamp(event.create_time)
    now = ctx.clock.now()
    await ctx.db.run(
        lambda s: mirror.apply_member_change(
            s,
            event.chat_id,
            joined=joined,
            left=left,
            join_scene=event.join_scene,
            quit_scene=event.quit_scene,
            member_version=event.cur_mem_ver,
            at=at,
            now=now,
        )
    )


async def on_chat_dismiss(event: ExternalChatDismiss, ctx: HandlerContext) -> None:
    now = ctx.clock.now()
    await ctx.db.run(lambda s: mirror.dismiss_group(s, event.chat_id, now=now))
