"""What every endpoint handler gets (a typed view of the request) and the gettoken endpoint."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from bot.sandbox import errors
from bot.sandbox.errors import WeComError
from bot.sandbox.world import SandboxWorld

Json = dict[str, Any]


@dataclass(frozen=True)
class Upload:
    """One file part of a multipart body."""

    name: str
    filename: str
    content_type: str
    data: bytes


@dataclass
class ApiRequest:
    """One call: query string, JSON body (or uploaded files), and the world it acts on."""

    world: SandboxWorld
    path: str
    query: Mapping[str, str]
    body: Json = field(default_factory=dict)
    files: dict[str, Upload] = field(default_factory=dict)

    def param(self, name: str) -> str:
        """A query-string parameter, "" when absent."""
        return self.query.get(name, "")

    def text(
        self, name: str, *, required: bool = False, code: int = errors.INVALID_PARAMETER
    ) -> str:
        value = self.body.get(name)
        if value is None or value == "":
            if required:
                raise WeComError(code, f"{name} missing")
            return ""
        if not isinstance(value, str):
            raise WeComError(errors.INVALID_PARAMETER, f"Warning: wrong json format. {name}")
        return value

    def integer(self, name: str, default: int | None = None) -> int:
        value = self.body.get(name, default)
        if value is None:
            raise WeComError(errors.INVALID_PARAMETER, f"{name} missing")
        if isinstance(value, bool) or not isinstance(value, int):
            # WeCom accepts numeric strings for integer fields.
            if isinstance(value, str) and value.lstrip("-").isdigit():
                return int(value)
            raise WeComError(errors.INVALID_PARAMETER, f"Warning: wrong json format. {name}")
        return value

    def strings(self, name: str, body: Json | None = None) -> list[str]:
        value = (self.body if body is None else body).get(name)
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise WeComError(errors.INVALID_PARAMETER, f"Warning: wrong json format. {name}")
        return list(value)

    def obj(self, name: str) -> Json:
        value = self.body.get(name)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise WeComError(errors.INVALID_PARAMETER, f"Warning: wrong json format. {name}")
        return value

    def limit(self, default: int, maximum: int) -> int:
        value = self.integer("limit", default)
        if not 1 <= value <= maximum:
            raise WeComError(errors.INVALID_PARAMETER, f"limit must be 1..{maximum}")
        return value

    def cursor(self, value: str | None = None) -> int:
        raw = self.text("cursor") if value is None else value
        return decode_cursor(raw) if raw else 0


Handler = Callable[[ApiRequest], Json]


@dataclass(frozen=True)
class Endpoint:
    """A documented path: its HTTP method, whether it takes an access_token, its handler."""

    method: Literal["GET", "POST"]
    handler: Handler
    needs_token: bool = True
    multipart: bool = False


def encode_cursor(offset: int) -> str:
    """An opaque next_cursor; "" means there is no next page."""
    return base64.urlsafe_b64encode(f"sandbox:{offset}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        prefix, offset = raw.split(":")
        if prefix != "sandbox":
            raise ValueError(prefix)
        return int(offset)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise WeComError(errors.INVALID_PARAMETER, "invalid cursor") from None


def page(items: list[Any], offset: int, size: int) -> tuple[list[Any], str]:
    """One page of `items` and the cursor for the next one."""
    chunk = items[offset : offset + size]
    more = offset + size < len(items)
    return chunk, encode_cursor(offset + size) if more else ""


def utf8_len(text: str) -> int:
    return len(text.encode("utf-8"))


def _gettoken(req: ApiRequest) -> Json:
    world = req.world
    corpid, secret = req.param("corpid"), req.param("corpsecret")
    if not corpid:
        raise WeComError(errors.MISSING_CORPID)
    if not secret:
        raise WeComError(errors.MISSING_SECRET)
    if corpid != world.corp_id:
        raise WeComError(errors.INVALID_CORPID)
    if secret != world.secret:
        raise WeComError(errors.INVALID_SECRET)
    token = world.issue_token()
    return {"access_token": token.value, "expires_in": world.limits.token_ttl}


def token_endpoint() -> Endpoint:
    return Endpoint("GET", _gettoken, needs_token=False)
