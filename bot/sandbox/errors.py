"""WeCom errcodes the sandbox returns, and the error type its handlers raise."""

from __future__ import annotations

# Global codes from WeCom's errcode table (90313/90455); the comment says what triggers each.
SYSTEM_BUSY = -1
OK = 0
INVALID_SECRET = 40001  # gettoken with the wrong corpsecret
INVALID_USERID = 40003
INVALID_MEDIA_TYPE = 40004
INVALID_TYPE = 40005
INVALID_MEDIA_SIZE = 40006
INVALID_MEDIA_ID = 40007
INVALID_MSGTYPE = 40008
INVALID_CORPID = 40013
INVALID_TOKEN = 40014
INVALID_CHATID = 40050
INVALID_AGENTID = 40056
INVALID_PARAMETER = 40058
INVALID_TAGID = 40068  # also what an app gets when it edits a tag it did not create
TAG_NAME_EXISTS = 40071
INVALID_TAG_NAME_LENGTH = 40072
INVALID_EXTERNAL_USERID = 40096
MISSING_TOKEN = 41001
MISSING_CORPID = 41002
MISSING_SECRET = 41004
MISSING_MEDIA = 41005
WELCOME_CODE_USED = 41051  # welcome_code used, late, or the customer has started chatting
TOKEN_EXPIRED = 42001
CARD_ACTION_MISSING = 42045
REQUIRE_GET = 43001
REQUIRE_POST = 43002
EMPTY_CONTENT = 44004
CONTENT_TOO_LONG = 45002
API_FREQ_LIMIT = 45009
BAD_JSON = 47001
USER_PARTY_TAG_ALL_INVALID = 81013
OWNER_FILTER_REQUIRED = 81017
NOT_EXTERNAL_CONTACT = 84061
NO_CONTACT_PERMISSION = 84074
# Not a WeCom code: the sandbox answers paths WeCom does not serve with HTTP 404 and this.
UNKNOWN_API = 404

MESSAGES: dict[int, str] = {
    SYSTEM_BUSY: "system busy",
    INVALID_SECRET: "invalid credential",
    INVALID_USERID: "invalid userid",
    INVALID_MEDIA_TYPE: "invalid media type",
    INVALID_TYPE: "invalid type",
    INVALID_MEDIA_SIZE: "invalid file size",
    INVALID_MEDIA_ID: "invalid media_id",
    INVALID_MSGTYPE: "invalid message type",
    INVALID_CORPID: "invalid corpid",
    INVALID_TOKEN: "invalid access_token",
    INVALID_CHATID: "invalid chatid",
    INVALID_AGENTID: "invalid agentid",
    INVALID_PARAMETER: "invalid Request Parameter",
    INVALID_TAGID: "invalid tagid",
    TAG_NAME_EXISTS: "tag name exists",
    INVALID_TAG_NAME_LENGTH: "invalid tag name length",
    INVALID_EXTERNAL_USERID: "invalid external userid",
    MISSING_TOKEN: "access_token missing",
    MISSING_CORPID: "corpid missing",
    MISSING_SECRET: "corpsecret missing",
    MISSING_MEDIA: "media data missing",
    WELCOME_CODE_USED: "externaluser has started chatting",
    TOKEN_EXPIRED: "access_token expired",
    CARD_ACTION_MISSING: "template_card.card_action missing or invalid",
    REQUIRE_GET: "require GET method",
    REQUIRE_POST: "require POST method",
    EMPTY_CONTENT: "empty content",
    CONTENT_TOO_LONG: "content size out of limit",
    API_FREQ_LIMIT: "api freq out of limit",
    BAD_JSON: "data format error",
    USER_PARTY_TAG_ALL_INVALID: "user & party & tag all invalid",
    OWNER_FILTER_REQUIRED: "owner_filter required: app visible range exceeds 1000 users",
    NOT_EXTERNAL_CONTACT: "not external contact",
    NO_CONTACT_PERMISSION: "user has no external contact permission",
    UNKNOWN_API: "invalid api path",
}


class WeComError(Exception):
    """A WeCom error answer: `errcode` plus a short reason that goes into errmsg."""

    def __init__(self, errcode: int, detail: str = "") -> None:
        self.errcode = errcode
        self.detail = detail
        super().__init__(f"{errcode}: {describe(errcode, detail)}")


def describe(errcode: int, detail: str = "") -> str:
    """The message part of errmsg: WeCom's wording, then what exactly was wrong."""
    base = MESSAGES.get(errcode, "error")
    return f"{base}: {detail}" if detail else base


def errmsg(errcode: int, detail: str, *, hint: str) -> str:
    """errmsg in WeCom's format: message, hint, caller ip, and the errcode lookup link."""
    if errcode == OK:
        return "ok"
    return (
        f"{describe(errcode, detail)}, hint: [{hint}], from ip: 127.0.0.1, "
        f"more info at https://open.work.weixin.qq.com/devtool/query?e={errcode}"
    )
