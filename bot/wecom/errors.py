"""WeCom errcodes mapped to a small exception tree that drives retry policy."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, ClassVar, Final

# Codes the client invents for failures WeCom never answered; all are outside WeCom's range.
TRANSPORT_ERRCODE: Final = -1000
"""No answer: connection refused, timeout, broken connection."""
INVALID_RESPONSE_ERRCODE: Final = -1001
"""An answer that is not WeCom JSON (a proxy's error page, say)."""
INVALID_REQUEST_ERRCODE: Final = -1002
"""Refused before sending: the request breaks a documented WeCom limit."""
LOCAL_QUOTA_ERRCODE: Final = -1003
"""Refused before sending: the client's own rate limiter has no slot yet."""

SYSTEM_BUSY: Final = -1
TOO_MANY_CONCURRENT: Final = 45033
RATE_LIMIT_CODES: Final = frozenset({45009, 45011})
TOKEN_RETRY_CODES: Final = frozenset({40014, 42001})
"""Token invalid or expired: refetch and resend once (91039)."""
TOKEN_CODES: Final = TOKEN_RETRY_CODES | {41001}

# Codes no retry can fix: the app's secret, permissions, visibility scope or trusted IPs
# are wrong, and a human has to change them in the WeCom admin console.
CONFIGURATION_CODES: Final = frozenset(
    {
        40001,  # invalid secret
        40013,  # invalid corpid
        40056,  # invalid agentid
        41004,  # corpsecret missing
        48002,  # API forbidden: app not in 可调用应用, or missing permission
        60011,  # member/department/tag outside the app's visibility scope
        60020,  # caller IP not in 企业可信IP
        81017,  # groupchat/list without owner_filter over a scope of >1000 people
        84074,  # no external-contact permission
        301002,  # no permission to operate the app (unconfirmed meaning)
    }
)

_SECRET_PARAMS = re.compile(
    r"(access_token|corpsecret|secret)([\"']?\s*[=:]\s*[\"']?)[^&\s\"',}]+", re.IGNORECASE
)
MASK: Final = "***"


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Mask secret query parameters and the given secret values in `text`."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, MASK)
    return _SECRET_PARAMS.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", text)


class WeComError(Exception):
    """A WeCom call failed; `final` says whether trying the same call again can help."""

    final: ClassVar[bool] = True

    def __init__(self, errcode: int, errmsg: str, path: str) -> None:
        # Messages may echo a URL; nothing that reaches logs may carry a token or secret.
        self.errcode = errcode
        self.errmsg = redact(errmsg)
        self.path = redact(path.split("?", 1)[0])
        super().__init__(self.errcode, self.errmsg, self.path)

    def __str__(self) -> str:
        return f"{self.path}: errcode {self.errcode}: {self.errmsg}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(errcode={self.errcode!r}, errmsg={self.errmsg!r}, "
            f"path={self.path!r})"
        )


class TransientError(WeComError):
    """WeCom was busy or unreachable (-1, 45033, timeouts); the same call may succeed later."""

    final = False


class WeComUnavailable(TransientError):
    """No usable answer: connection error, timeout on a safe call, 5xx, or a stuck refresh."""


class OutcomeUnknown(TransientError):
    """A non-idempotent call timed out after it may have reached WeCom.

    The effect may have happened: reconcile (e.g. `get_groupmsg_list_v2`) before retrying.
    """


class RateLimited(TransientError):
    """45009/45011: the API's quota is used up; wait `retry_after` seconds, never retry at once."""

    def __init__(self, errcode: int, errmsg: str, path: str, retry_after: float = 60.0) -> None:
        super().__init__(errcode, errmsg, path)
        self.retry_after = retry_after

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.errcode, self.errmsg, self.path, self.retry_after))

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(errcode={self.errcode!r}, errmsg={self.errmsg!r}, "
            f"path={self.path!r}, retry_after={self.retry_after!r})"
        )


class QuotaWait(RateLimited):
    """The client's own limiter has no slot for `retry_after` seconds; nothing was sent.

    Raised instead of waiting by a `with_options(wait_for_quota=False)` client. Unlike a
    WeCom 45009 it costs nothing, so a caller should not count it as a failed attempt.
    """

    def __init__(self, path: str, retry_after: float) -> None:
        super().__init__(
            LOCAL_QUOTA_ERRCODE,
            f"client-side quota: next call allowed in {retry_after:.1f}s",
            path,
            retry_after,
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.path, self.retry_after))


class TokenInvalid(WeComError):
    """The access token was refused even after one refetch (40014, 42001, 41001).

    Not final: a later attempt starts with a fresh token.
    """

    final = False


class ConfigurationError(WeComError):
    """Secret, permission, visibility scope or trusted IP is wrong; a human must fix it."""


class RequestRejected(WeComError):
    """WeCom refused this request; sending it again unchanged will fail the same way."""


class InvalidRequest(RequestRejected, ValueError):
    """The request breaks a documented WeCom limit; refused before any HTTP call."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(INVALID_REQUEST_ERRCODE, problem, path)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.path, self.errmsg))


class WelcomeCodeUsed(RequestRejected):
    """41051: the welcome_code was already used or the customer has started chatting; done."""


class WelcomeInProgress(RequestRejected):
    """41096: another app is sending the welcome message right now; one retry is allowed."""

    final = False


class NotExternalContact(RequestRejected):
    """84061: no contact relationship (also seen briefly right after an add; re-fetch later)."""


class InvalidExternalUserId(RequestRejected):
    """40096: the external_userid is not valid for this corp."""


_SPECIFIC: Final[dict[int, type[RequestRejected]]] = {
    41051: WelcomeCodeUsed,
    41096: WelcomeInProgress,
    84061: NotExternalContact,
    40096: InvalidExternalUserId,
}


def error_for(errcode: int, errmsg: str, path: str, *, retry_after: float = 60.0) -> WeComError:
    """The exception for a nonzero errcode from `path`."""
    if errcode in (SYSTEM_BUSY, TOO_MANY_CONCURRENT):
        return TransientError(errcode, errmsg, path)
    if errcode in RATE_LIMIT_CODES:
        return RateLimited(errcode, errmsg, path, retry_after)
    if errcode in TOKEN_CODES:
        return TokenInvalid(errcode, errmsg, path)
    if errcode in CONFIGURATION_CODES:
        return ConfigurationError(errcode, errmsg, path)
    return _SPECIFIC.get(errcode, RequestRejected)(errcode, errmsg, path)


__all__ = [
    "CONFIGURATION_CODES",
    "INVALID_REQUEST_ERRCODE",
    "INVALID_RESPONSE_ERRCODE",
    "LOCAL_QUOTA_ERRCODE",
    "RATE_LIMIT_CODES",
    "TOKEN_RETRY_CODES",
    "TRANSPORT_ERRCODE",
    "ConfigurationError",
    "InvalidExternalUserId",
    "InvalidRequest",
    "NotExternalContact",
    "OutcomeUnknown",
    "QuotaWait",
    "RateLimited",
    "RequestRejected",
    "TokenInvalid",
    "TransientError",
    "WeComError",
    "WeComUnavailable",
    "WelcomeCodeUsed",
    "WelcomeInProgress",
    "error_for",
    "redact",
]
