"""WeCom's API under /cgi-bin/: routing, token, quota, faults and the call log."""

from __future__ import annotations

import email.parser
import email.policy
import json
from typing import Any, Literal

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from bot.sandbox import errors
from bot.sandbox.endpoints import ENDPOINTS, Endpoint
from bot.sandbox.endpoints.base import ApiRequest, Json, Upload
from bot.sandbox.errors import WeComError
from bot.sandbox.faults import Fault
from bot.sandbox.limits import PathQuota
from bot.sandbox.models import CallRecord
from bot.sandbox.world import SandboxWorld

TimeoutMode = Literal["raise", "sleep"]


class SimulatedTimeout(httpx.ReadTimeout):
    """Raised inside the app; httpx.ASGITransport hands it to the client as a ReadTimeout."""


class WeComApi:
    """Serves one world's API; `timeout_mode` "raise" for in-process clients, "sleep" for
    real HTTP clients (the answer comes after they have given up)."""

    def __init__(
        self,
        world: SandboxWorld,
        *,
        timeout_mode: TimeoutMode = "raise",
        sleep_seconds: float = 30.0,
    ) -> None:
        self.world = world
        self.timeout_mode = timeout_mode
        self.sleep_seconds = sleep_seconds

    def routes(self) -> list[BaseRoute]:
        return [Route("/cgi-bin/{path:path}", self.handle, methods=["GET", "POST"])]

    async def handle(self, request: Request) -> Response:
        world = self.world
        path = str(request.path_params["path"]).strip("/")
        query = dict(request.query_params)
        raw = await request.body()
        endpoint = ENDPOINTS.get(path)
        if endpoint is None:
            self._record(
                request.method, path, query, _loggable(raw), errors.UNKNOWN_API, known=False
            )
            return _answer(world, errors.UNKNOWN_API, path, {}, status=404)
        fault = world.faults.decide(path)
        if fault is not None and fault.kind == "errcode":
            self._record(request.method, path, query, _loggable(raw), fault.errcode, fault)
            return _answer(world, fault.errcode, fault.detail, {})
        if fault is not None and fault.kind == "timeout_before":
            self._record(request.method, path, query, _loggable(raw), errors.OK, fault)
            await self._time_out(path)
            # Only reached when sleeping: the client has given up, and nothing took effect.
            return _answer(world, errors.SYSTEM_BUSY, "timed out", {})
        body: Any = _loggable(raw)
        try:
            self._admit(request.method, endpoint, path, query)
            api_request = self._parse(request, endpoint, path, query, raw)
            body = _file_summary(api_request) if endpoint.multipart else api_request.body
            data = endpoint.handler(api_request)
            errcode, detail = errors.OK, ""
        except WeComError as exc:
            data, errcode, detail = {}, exc.errcode, exc.detail
        self._record(request.method, path, query, body, errcode, fault)
        if fault is not None and fault.kind == "timeout_after":
            await self._time_out(path)
        return _answer(world, errcode, detail, data)

    def _parse(
        self, request: Request, endpoint: Endpoint, path: str, query: dict[str, str], raw: bytes
    ) -> ApiRequest:
        if endpoint.multipart:
            files = _multipart(request.headers.get("content-type", ""), raw)
            return ApiRequest(self.world, path, query, files=files)
        body: Json = {}
        if raw.strip() and request.method == "POST":
            try:
                parsed = json.loads(raw)
            except (ValueError, UnicodeDecodeError):
                raise WeComError(errors.BAD_JSON) from None
            if not isinstance(parsed, dict):
                raise WeComError(errors.BAD_JSON, "body must be a JSON object")
            body = parsed
        return ApiRequest(self.world, path, query, body)

    def _admit(self, method: str, endpoint: Endpoint, path: str, query: dict[str, str]) -> None:
        world = self.world
        if method != endpoint.method:
            code = errors.REQUIRE_GET if endpoint.method == "GET" else errors.REQUIRE_POST
            raise WeComError(code)
        per_minute, per_hour = world.limits.path_quota(path)
        quota = world.quotas.setdefault(path, PathQuota())
        refused = quota.admit(world.clock.timestamp(), per_minute, per_hour)
        if refused is not None:
            world.breach("api_quota", path=path, window=refused)
            raise WeComError(errors.API_FREQ_LIMIT, f"{path} ({refused})")
        if endpoint.needs_token:
            world.check_token(query.get("access_token"))

    async def _time_out(self, path: str) -> None:
        if self.timeout_mode == "raise":
            raise SimulatedTimeout(f"sandbox: simulated timeout on {path}")
        await self.world.clock.sleep(self.sleep_seconds)

    def _record(
        self,
        method: str,
        path: str,
        query: dict[str, str],
        body: Any,
        errcode: int,
        fault: Fault | None = None,
        *,
        known: bool = True,
    ) -> None:
        world = self.world
        world.ledger.calls.append(
            CallRecord(
                world.next_seq(),
                world.clock.timestamp(),
                method,
                path,
                query,
                body,
                errcode,
                fault.label if fault is not None else None,
                known,
            )
        )


def _answer(
    world: SandboxWorld, errcode: int, detail: str, data: Json, *, status: int = 200
) -> JSONResponse:
    hint = f"{world.now()}_{world.rng.randrange(10, 999)}_{world.rng.getrandbits(128):032x}"
    payload: Json = {"errcode": errcode, "errmsg": errors.errmsg(errcode, detail, hint=hint)}
    if errcode == errors.OK:
        payload.update(data)
    return JSONResponse(payload, status_code=status)


def _loggable(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return {"raw_bytes": len(raw)}


def _file_summary(req: ApiRequest) -> Json:
    return {
        "files": [
            {"name": f.name, "filename": f.filename, "size": len(f.data)}
            for f in req.files.values()
        ]
    }


def _multipart(content_type: str, raw: bytes) -> dict[str, Upload]:
    """File parts of a multipart/form-data body (python-multipart is not a dependency)."""
    if not content_type.startswith("multipart/form-data"):
        raise WeComError(errors.MISSING_MEDIA, "expected multipart/form-data")
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + raw)
    files: dict[str, Upload] = {}
    if not message.is_multipart():
        return files
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        filename = part.get_filename()
        payload = part.get_payload(decode=True)
        if isinstance(name, str) and filename is not None and isinstance(payload, bytes):
            files[name] = Upload(name, filename, part.get_content_type(), payload)
    return files


def create_api_app(world: SandboxWorld, *, timeout_mode: TimeoutMode = "raise") -> Starlette:
    """The WeCom API alone, for `httpx.ASGITransport` in tests."""
    return Starlette(routes=WeComApi(world, timeout_mode=timeout_mode).routes())
