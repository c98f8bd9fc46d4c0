"""App messages to members: `message/send` and `message/update_template_card`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final, TypedDict, Unpack

from bot.wecom.errors import InvalidRequest
from bot.wecom.models import (
    APP_MARKDOWN_MAX_BYTES,
    APP_TEXT_MAX_BYTES,
    AppMessageRequest,
    MessageSendResult,
    TemplateCard,
    UpdateTemplateCardRequest,
    UpdateTemplateCardResult,
    check_bytes,
)
from bot.wecom.ratelimit import MESSAGE_SEND
from bot.wecom.resource import Resource, as_list, build, recipients

ALL_MEMBERS: Final = "@all"


class SendOptions(TypedDict, total=False):
    """Optional `message/send` settings."""

    toparty: str | Sequence[str] | None
    totag: str | Sequence[str] | None
    safe: bool
    enable_id_trans: bool
    enable_duplicate_check: bool
    duplicate_check_interval: int | None


class MessageAPI(Resource):
    """`client.message`: messages from the bot's app to members (customer managers).

    WeCom silently drops messages beyond 30 a minute or 1,000 an hour to one member; the
    limiter counts each named recipient, so the client waits instead.
    """

    async def send(
        self,
        msgtype: str,
        content: Mapping[str, Any],
        *,
        touser: str | Sequence[str] | None = None,
        toparty: str | Sequence[str] | None = None,
        totag: str | Sequence[str] | None = None,
        safe: bool = False,
        enable_id_trans: bool = False,
        enable_duplicate_check: bool = False,
        duplicate_check_interval: int | None = None,
    ) -> MessageSendResult:
        """Send any app message type; `content` goes under the `msgtype` key (90236).

        Not idempotent: a timeout raises OutcomeUnknown. `enable_duplicate_check` is
        content-based, so it is a safety net, not an idempotency key.
        """
        users = recipients(touser)
        envelope = build(
            AppMessageRequest,
            MESSAGE_SEND,
            touser=users,
            toparty=recipients(toparty),
            totag=recipients(totag),
            msgtype=msgtype,
            agentid=self._client.config.agent_id,
            safe=1 if safe else None,
            enable_id_trans=1 if enable_id_trans else None,
            enable_duplicate_check=1 if enable_duplicate_check else None,
            duplicate_check_interval=duplicate_check_interval,
        )
        body = envelope.to_body()
        body[msgtype] = dict(content)
        # Parties, tags and @all hide who receives; only named members can be counted.
        members = [u for u in users or () if u != ALL_MEMBERS]
        return await self._client.call(
            "POST", MESSAGE_SEND, MessageSendResult, json=body, idempotent=False, members=members
        )

    async def send_text(
        self, touser: str | Sequence[str], content: str, **options: Unpack[SendOptions]
    ) -> MessageSendResult:
        """A text message of at most 2,048 bytes (90236)."""
        _check(MESSAGE_SEND, "text.content", content, APP_TEXT_MAX_BYTES)
        return await self.send("text", {"content": content}, touser=touser, **options)

    async def send_markdown(
        self, touser: str | Sequence[str], content: str, **options: Unpack[SendOptions]
    ) -> MessageSendResult:
        """A markdown message of at most 2,048 bytes (90236)."""
        _check(MESSAGE_SEND, "markdown.content", content, APP_MARKDOWN_MAX_BYTES)
        return await self.send("markdown", {"content": content}, touser=touser, **options)

    async def send_template_card(
        self,
        touser: str | Sequence[str],
        card: TemplateCard | Mapping[str, Any],
        **options: Unpack[SendOptions],
    ) -> MessageSendResult:
        """A template card; interaction cards return a response_code for updates (90236)."""
        checked = (
            card if isinstance(card, TemplateCard) else build(TemplateCard, MESSAGE_SEND, **card)
        )
        return await self.send("template_card", checked.to_body(), touser=touser, **options)

    async def update_template_card(
        self,
        response_code: str,
        *,
        userids: Sequence[str] | None = None,
        partyids: Sequence[int] | None = None,
        tagids: Sequence[int] | None = None,
        atall: bool = False,
        replace_name: str | None = None,
        template_card: TemplateCard | Mapping[str, Any] | None = None,
        enable_id_trans: bool = False,
    ) -> UpdateTemplateCardResult:
        """Grey out a card's buttons or replace the card; response_code is single-use, 72 h (94888).

        Not idempotent: the response_code is spent by the first success.
        """
        path = "message/update_template_card"
        body = build(
            UpdateTemplateCardRequest,
            path,
            userids=as_list(userids),
            partyids=None if partyids is None else list(partyids),
            tagids=None if tagids is None else list(tagids),
            atall=1 if atall else None,
            agentid=self._client.config.agent_id,
            response_code=response_code,
            enable_id_trans=1 if enable_id_trans else None,
            button=None if replace_name is None else {"replace_name": replace_name},
            template_card=template_card,
        )
        return await self._client.call(
            "POST", path, UpdateTemplateCardResult, json=body.to_body(), idempotent=False
        )


def _check(path: str, field: str, text: str, limit: int) -> None:
    try:
        check_bytes(field, text, limit)
    except ValueError as exc:
        raise InvalidRequest(path, str(exc)) from None


__all__ = ["ALL_MEMBERS", "MessageAPI", "SendOptions"]
