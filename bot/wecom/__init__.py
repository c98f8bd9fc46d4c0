"""Async WeCom API client: the only module that does HTTP to WeCom.

`WeComClient(config, db=, clock=, transport=)` wraps one `httpx.AsyncClient`. The access
token is an `httpx.Auth` flow over a `token_cache` row shared by every process
(single-flight refresh, one refetch-and-resend on 40014/42001). Every call takes a slot
from the rate limiter first (per API path, and per member for `message/send`); nonzero
errcodes raise the exceptions in `bot.wecom.errors`; -1, 45033 and safe timeouts are
retried with jittered backoff unless the client is a `with_options(retries=False)` view
(`wait_for_quota=False` makes it raise `QuotaWait` instead of sleeping for a slot).

Resource groups (method names mirror WeCom paths under `cgi-bin/`):

- `client.externalcontact`: `get`, `get_all`, `list`, `get_follow_user_list`,
  `batch_get_by_user`, `remark`, `send_welcome_msg`        (externalcontact/...)
- `client.tags`: `get_corp_tag_list`, `add_corp_tag`, `edit_corp_tag`, `del_corp_tag`,
  `mark_tag`                                               (externalcontact/...)
- `client.groupchat`: `list`, `get`                        (externalcontact/groupchat/...)
- `client.groupmsg`: `add_msg_template`, `remind_groupmsg_send`, `cancel_groupmsg_send`,
  `get_groupmsg_list_v2`, `get_groupmsg_task`, `get_groupmsg_send_result`
                                                           (externalcontact/...)
- `client.message`: `send`, `send_text`, `send_markdown`, `send_template_card`,
  `update_template_card`                                   (message/...)
- `client.media`: `upload`                                 (media/upload)
- `client.call(method, path, model, idempotent=...)` for endpoints not wrapped yet.
"""

from bot.wecom.client import ClientStats, WeComClient
from bot.wecom.errors import (
    ConfigurationError,
    InvalidExternalUserId,
    InvalidRequest,
    NotExternalContact,
    OutcomeUnknown,
    QuotaWait,
    RateLimited,
    RequestRejected,
    TokenInvalid,
    TransientError,
    WeComError,
    WeComUnavailable,
    WelcomeCodeUsed,
    WelcomeInProgress,
    error_for,
)
from bot.wecom.ratelimit import MemoryRateLimiter, RateLimiter

__all__ = [
    "ClientStats",
    "ConfigurationError",
    "InvalidExternalUserId",
    "InvalidRequest",
    "MemoryRateLimiter",
    "NotExternalContact",
    "OutcomeUnknown",
    "QuotaWait",
    "RateLimited",
    "RateLimiter",
    "RequestRejected",
    "TokenInvalid",
    "TransientError",
    "WeComClient",
    "WeComError",
    "WeComUnavailable",
    "WelcomeCodeUsed",
    "WelcomeInProgress",
    "error_for",
]
