"""change_external_contact: welcome new customers fast, keep follow relations mirrored."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.orm import Session

from bot import mirror
from bot.clock import utc_from_timestamp
from bot.dispatch import RetryLater
from bot.fetch import fetch_contact
from bot.gateway.events import (
    AddExternalContact,
    AddHalfExternalContact,
    DelExternalContact,
    DelFollowUser,
    EditExternalContact,
    TransferFail,
)
from bot.handlers.context import HandlerContext
from bot.handlers.retag import retag_and_sync
from bot.outbox.kinds import WELCOME_MSG
from bot.outbox.queue import FAST
from bot.privacy import hash_id
from bot.store.models import Member
from bot.templates import RenderError
from bot.wecom.errors import NotExternalContact

WELCOME_KIND = WELCOME_MSG
WELCOME_WINDOW_SECONDS = 20  # WeCom: a welcome_code is usable once, within 20 s


def welcome_template_for(ctx: HandlerContext, state: str | None) -> str:
    by_state = ctx.settings.welcome.by_state
    if state and state in by_state:
        return by_state[state]
    return ctx.settings.welcome.default_template


async def enqueue_welcome(
    ctx: HandlerContext, event: AddExternalContact | AddHalfExternalContact
) -> bool:
    """Queue the welcome message on the fast lane; True if a row was created."""
    if not event.welcome_code or not ctx.settings.welcome.enabled:
        return False
    created = utc_from_timestamp(event.create_time)
    now = ctx.clock.now()
    expires = created + timedelta(seconds=WELCOME_WINDOW_SECONDS)
    template = welcome_template_for(ctx, event.state)

    def enqueue(session: Session) -> bool:
        # One transaction, so the welcome is queued after a single trip to the database.
        member = session.get(Member, event.user_id)
        # `manager` is "" while the mirror does not know the member's name (groupchat/get
        # teaches it); the templates word their greeting for that case.
        text = ctx.templates.render(
            template,
            manager=(member.name if member else None) or "",
            state=event.state or "",
            branch=ctx.settings.branch_name,
        )
        payload = {
            "welcome_code": event.welcome_code,
            "text": {"content": text},
            "userid": event.user_id,
            "external_userid": event.external_user_id,
        }
        return ctx.outbox.enqueue(
            session,
            key=f"welcome:{event.welcome_code}",
            kind=WELCOME_KIND,
            payload=payload,
            now=now,
            expires_at=expires,
            lane=FAST,
        )

    try:
        inserted = await ctx.db.run(enqueue)
    except RenderError:
        ctx.log.exception("welcome template %s failed; nothing sent", template)
        return False
    if inserted:
        ctx.outbox.notify(FAST)
    return inserted


class RelationNotListedYet(NotExternalContact):
    """`externalcontact/get` answered, but without the member the add event names."""


async def refresh_contact(
    ctx: HandlerContext,
    external_userid: str,
    *,
    expect_userid: str | None = None,
    retry: bool = True,
) -> None:
    """Re-read a customer from WeCom and store what it says.

    Right after an add WeCom lags: `externalcontact/get` answers 84061 for a new customer,
    and for a customer who already follows other members it answers without the new one.
    With `retry`, either makes the inbox try the callback again shortly (`RetryLater`)
    instead of waiting here, so a burst of adds is not queued behind WeCom's lag; the
    callback's effects are idempotent, and its welcome message has already been queued.
    """
    lag = ctx.settings.welcome.lag_retry_seconds
    try:
        contact, follow_users, complete = await fetch_contact(ctx.wecom, external_userid)
    except NotExternalContact:
        if not retry:
            raise
        raise RetryLater(lag, "externalcontact/get: 84061 right after the add") from None
    listed = {str(f.get("userid")) for f in follow_users}
    if expect_userid is not None and expect_userid not in listed:
        if not retry:
            raise RelationNotListedYet(
                84061, f"{expect_userid} not yet among the followers", "externalcontact/get"
            )
        raise RetryLater(lag, "externalcontact/get: the new follower is not listed yet")
    now = ctx.clock.now()
    keywords = ctx.settings.privacy.opt_out_keywords
    await ctx.db.run(
        lambda s: mirror.apply_contact_detail(
            s, contact, follow_users, now=now, complete=complete, opt_out_keywords=keywords
        )
    )


async def on_add(ctx: HandlerContext, event: AddExternalContact | AddHalfExternalContact) -> None:
    # The welcome goes first: its code dies 20 s after the event, the detail can wait.
    await enqueue_welcome(ctx, event)
    now = ctx.clock.now()
    await ctx.db.run(lambda s: mirror.upsert_member(s, event.user_id, now=now))
    await refresh_contact(ctx, event.external_user_id, expect_userid=event.user_id)
    await retag_and_sync(ctx, [event.external_user_id])
    ctx.log.info(
        "customer %s added %s via state %s",
        hash_id(event.external_user_id),
        event.user_id,
        event.state,
    )


async def on_add_external_contact(event: AddExternalContact, ctx: HandlerContext) -> None:
    await on_add(ctx, event)


async def on_add_half_external_contact(event: AddHalfExternalContact, ctx: HandlerContext) -> None:
    await on_add(ctx, event)


async def on_edit_external_contact(event: EditExternalContact, ctx: HandlerContext) -> None:
    try:
        await refresh_contact(ctx, event.external_user_id, retry=False)
    except NotExternalContact:
        # Nobody follows the customer any more: the deletion's own event says why.
        ctx.log.info(
            "edited customer %s is no longer anyone's contact", hash_id(event.external_user_id)
        )
        return
    # A remark or description edit can change keyword tags.
    await retag_and_sync(ctx, [event.external_user_id])


async def on_del_external_contact(event: DelExternalContact, ctx: HandlerContext) -> None:
    reason = "transferred" if event.source == "DELETE_BY_TRANSFER" else "deleted_by_member"
    await _end(ctx, event, reason)


async def on_del_follow_user(event: DelFollowUser, ctx: HandlerContext) -> None:
    await _end(ctx, event, mirror.CUSTOMER_DELETED)


async def _end(ctx: HandlerContext, event: DelExternalContact | DelFollowUser, reason: str) -> None:
    now = ctx.clock.now()
    at = utc_from_timestamp(event.create_time)
    await ctx.db.run(
        lambda s: mirror.end_relation(
            s, event.external_user_id, event.user_id, reason=reason, now=now, at=at
        )
    )
    # Keyword tags come from active relations only; channel tags stay with the customer.
    await retag_and_sync(ctx, [event.external_user_id])


async def on_transfer_fail(event: TransferFail, ctx: HandlerContext) -> None:
    now = ctx.clock.now()
    await ctx.db.run(
        lambda s: mirror.record_transfer_fail(
            s, event.external_user_id, event.user_id, reason=event.fail_reason or "unknown", now=now
        )
    )
    ctx.log.warning(
        "transfer of customer %s to %s failed: %s",
        hash_id(event.external_user_id),
        event.user_id,
        event.fail_reason,
    )
