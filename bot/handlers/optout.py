"""A manager opts a customer out from the WeCom app: "退订 <备注名或external_userid>".

The manager writes one of `privacy.opt_out_keywords` and then the customer as they see
them in WeCom (the remark they gave the customer, or the customer's own name where they
gave none) or the external_userid. Only that manager's own active customers are searched.
The bot answers with an app text message: the customer's masked name when exactly one
matched, or why nothing was done (none, or several, which it lists for the manager to pick
by id). Logs carry hashed customer ids and never the text the manager wrote.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from bot.gateway.events import TextMessage
from bot.handlers.context import HandlerContext
from bot.mirror import ACTIVE
from bot.outbox.kinds import APP_MESSAGE
from bot.privacy import hash_id, mask_name
from bot.privacy_forget import set_opted_out
from bot.store.models import Customer, FollowRelation

# Separators a manager may put between the keyword and the customer (full-width included).
SEPARATORS = " \t\u3000:：,，"
MAX_LISTED = 5


@dataclass(frozen=True)
class Match:
    external_userid: str
    shown_as: str  # what the manager sees: the remark, else the customer's name
    opted_out: bool


def parse_command(text: str, keywords: Sequence[str]) -> tuple[str, str] | None:
    """(keyword, customer) for text that starts with an opt-out keyword (the customer is ""
    when the keyword stands alone), or None when the text is not an opt-out command."""
    stripped = text.strip()
    for word in sorted(keywords, key=len, reverse=True):
        if stripped.startswith(word):
            return word, stripped[len(word) :].strip(SEPARATORS)
    return None


def find_matches(session: Session, userid: str, query: str) -> list[Match]:
    """The member's active customers whose external_userid, remark, or (without a remark)
    name is exactly `query`."""
    no_remark = or_(FollowRelation.remark.is_(None), FollowRelation.remark == "")
    rows = session.execute(
        select(
            FollowRelation.external_userid, FollowRelation.remark, Customer.name, Customer.opted_out
        )
        .join(Customer, Customer.external_userid == FollowRelation.external_userid)
        .where(
            FollowRelation.userid == userid,
            FollowRelation.status == ACTIVE,
            or_(
                FollowRelation.external_userid == query,
                FollowRelation.remark == query,
                and_(no_remark, Customer.name == query),
            ),
        )
        .order_by(FollowRelation.external_userid)
    ).all()
    return [Match(eid, remark or name or "", opted) for eid, remark, name, opted in rows]


def reply_text(query: str, matches: list[Match], *, keyword: str) -> str:
    """The answer to the manager (masked names only)."""
    usage = f"请发送「{keyword} 客户备注名」或「{keyword} external_userid」。"
    if not query:
        return usage
    if not matches:
        return f"没有找到备注或 ID 为「{mask_name(query)}」的客户，未做任何退订。{usage}"
    if len(matches) > 1:
        lines = [f"- {mask_name(m.shown_as)}  {m.external_userid}" for m in matches[:MAX_LISTED]]
        more = len(matches) - MAX_LISTED
        if more > 0:
            lines.append(f"…另有 {more} 位")
        return (
            f"「{mask_name(query)}」对应 {len(matches)} 位客户，未做任何退订。"
            f"请改发「{keyword} external_userid」：\n" + "\n".join(lines)
        )
    match = matches[0]
    if match.opted_out:
        return f"客户「{mask_name(match.shown_as)}」此前已退订，不会再收到群发。"
    return f"已为客户「{mask_name(match.shown_as)}」退订：今后不会再收到群发和营销消息。"


def reply_key(msg_id: str) -> str:
    return f"opt-out-reply:{msg_id}"


async def on_text_message(event: TextMessage, ctx: HandlerContext) -> None:
    command = parse_command(event.content, ctx.settings.privacy.opt_out_keywords)
    if command is None:
        ctx.log.debug("text from %s is not an opt-out command", event.from_user_name)
        return
    keyword, query = command
    userid = event.from_user_name
    now = ctx.clock.now()

    def handle(session: Session) -> tuple[list[Match], bool, bool]:
        # The opt-out and the answer commit together; the reply's key (the message id)
        # keeps a redelivered message from being answered twice.
        matches = find_matches(session, userid, query) if query else []
        changed = len(matches) == 1 and set_opted_out(
            session, matches[0].external_userid, opted_out=True, now=now
        )
        queued = ctx.outbox.enqueue(
            session,
            key=reply_key(event.msg_id),
            kind=APP_MESSAGE,
            payload={
                "msgtype": "text",
                "content": {"content": reply_text(query, matches, keyword=keyword)},
                "touser": userid,
            },
            now=now,
        )
        return matches, changed, queued

    matches, changed, queued = await ctx.db.run(handle)
    if queued:
        ctx.outbox.notify()
    _log(ctx, userid, matches, changed)


def _log(ctx: HandlerContext, userid: str, matches: list[Match], changed: bool) -> None:
    if changed:
        # WARNING, like the other privacy audit lines, so production log levels keep it.
        ctx.log.warning(
            "privacy: customer %s opted out by %s via the app",
            hash_id(matches[0].external_userid),
            userid,
        )
    elif len(matches) == 1:
        ctx.log.info(
            "opt-out command from %s: customer %s was already opted out",
            userid,
            hash_id(matches[0].external_userid),
        )
    else:
        ctx.log.info(
            "opt-out command from %s matched %d customers: nothing changed",
            userid,
            len(matches),
        )
