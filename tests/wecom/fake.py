"""A scripted fake of WeCom's HTTP API for `httpx.MockTransport`."""

from __future__ import annotations

import asyncio
import json
from collections import deque
from dataclasses import dataclass
from typing import Any

import httpx

API_PREFIX = "/cgi-bin/"

Scripted = dict[str, Any] | httpx.Response | Exception


@dataclass
class Recorded:
    """One request the fake received."""

    method: str
    path: str
    params: dict[str, str]
    body: bytes
    headers: httpx.Headers

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def token(self) -> str | None:
        return self.params.get("access_token")


class FakeWeCom:
    """Routes on the path after /cgi-bin/. `gettoken` issues TOKEN-1, TOKEN-2, ... and
    other paths check the token (40014 for one not issued or revoked) before answering
    from their queue (`reply`), or from a standing answer (`always`). A path with
    neither fails the test."""

    def __init__(self, *, corp_id: str = "wwcorp", secret: str = "") -> None:
        self.corp_id = corp_id
        self.secret = secret
        self.requests: list[Recorded] = []
        self.valid_tokens: set[str] = set()
        self.issued = 0
        self.expires_in = 7200
        self._queues: dict[str, deque[Scripted]] = {}
        self._always: dict[str, Scripted] = {}
        # Set to make the next gettoken wait (to test concurrent refresh).
        self.gettoken_gate: asyncio.Event | None = None

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    # --- scripting -----------------------------------------------------------------

    def reply(self, path: str, *answers: Scripted) -> None:
        """Queue answers (JSON dicts, responses or exceptions to raise) for `path`."""
        self._queues.setdefault(path, deque()).extend(answers)

    def always(self, path: str, answer: Scripted) -> None:
        """Answer `path` with this whenever its queue is empty."""
        self._always[path] = answer

    def revoke_tokens(self) -> None:
        """WeCom invalidates every issued token early."""
        self.valid_tokens.clear()

    def calls(self, path: str) -> list[Recorded]:
        return [r for r in self.requests if r.path == path]

    # --- handling ------------------------------------------------------------------

    async def handle(self, request: httpx.Request) -> httpx.Response:
        assert request.url.path.startswith(API_PREFIX), request.url.path
        path = request.url.path[len(API_PREFIX) :]
        params = dict(request.url.params)
        self.requests.append(
            Recorded(request.method, path, params, request.content, request.headers)
        )
        if path == "gettoken":
            return await self._gettoken(params)
        token = params.get("access_token")
        if not token:
            return httpx.Response(200, json={"errcode": 41001, "errmsg": "access_token missing"})
        if token not in self.valid_tokens:
            return httpx.Response(
                200, json={"errcode": 40014, "errmsg": f"invalid access_token {token}"}
            )
        return self._answer(path)

    async def _gettoken(self, params: dict[str, str]) -> httpx.Response:
        if self.gettoken_gate is not None:
            await self.gettoken_gate.wait()
        if self._queues.get("gettoken"):
            return self._answer("gettoken")
        if params.get("corpid") != self.corp_id or params.get("corpsecret") != self.secret:
            return httpx.Response(200, json={"errcode": 40001, "errmsg": "invalid credential"})
        self.issued += 1
        token = f"TOKEN-{self.issued}-{'x' * 20}"
        self.valid_tokens.add(token)
        return httpx.Response(
            200,
            json={
                "errcode": 0,
                "errmsg": "ok",
                "access_token": token,
                "expires_in": self.expires_in,
            },
        )

    def _answer(self, path: str) -> httpx.Response:
        queue = self._queues.get(path)
        if queue:
            answer = queue.popleft()
        elif path in self._always:
            answer = self._always[path]
        else:
            raise AssertionError(f"unexpected call to {path}")
        if isinstance(answer, Exception):
            raise answer
        if isinstance(answer, httpx.Response):
            return answer
        return httpx.Response(200, json={"errcode": 0, "errmsg": "ok", **answer})


def ok(**fields: Any) -> dict[str, Any]:
    """A success answer with these fields."""
    return {"errcode": 0, "errmsg": "ok", **fields}


def err(errcode: int, errmsg: str = "error") -> dict[str, Any]:
    """An error answer."""
    return {"errcode": errcode, "errmsg": errmsg}
