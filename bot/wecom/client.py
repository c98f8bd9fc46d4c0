"""`WeComClient`: the one place that does HTTP to WeCom (token, limits, errcodes, retries)."""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final, Literal, Self, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from bot.clock import Clock
from bot.config import WeComConfig
from bot.store.db import Database
from bot.wecom.auth import AccessTokenAuth, TokenManager, TokenStore
from bot.wecom.errors import (
    INVALID_REQUEST_ERRCODE,
    INVALID_RESPONSE_ERRCODE,
    SYSTEM_BUSY,
    TOO_MANY_CONCURRENT,
    TRANSPORT_ERRCODE,
    ConfigurationError,
    OutcomeUnknown,
    QuotaWait,
    RateLimited,
    RequestRejected,
    WeComError,
    WeComUnavailable,
    WelcomeInProgress,
    error_for,
    redact,
)
from bot.wecom.externalcontact import ExternalContactAPI
from bot.wecom.groupchat import GroupChatAPI
from bot.wecom.groupmsg import GroupMsgAPI
from bot.wecom.media import MediaAPI
from bot.wecom.message import MessageAPI
from bot.wecom.models import AccessToken
from bot.wecom.moment import MomentAPI
from bot.wecom.ratelimit import MemoryRateLimiter, RateLimiter
from bot.wecom.resource import describe
from bot.wecom.tags import TagsAPI

log = logging.getLogger(__name__)

R = TypeVar("R", bound=BaseModel)
HttpMethod = Literal["GET", "POST"]
FileTuple = tuple[str, bytes, str]

GETTOKEN: Final = "gettoken"

# Errors raised before the request left this machine: safe to retry even for calls that
# are not idempotent.
_NOT_SENT: Final = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.ProxyError,
    httpx.UnsupportedProtocol,
)

# WeCom staff report remark allows at most 5 concurrent calls (45033 beyond that).
# WeCom staff: at most 5 concurrent calls on customer edits (45033 beyond that).
PATH_CONCURRENCY: Final[Mapping[str, int]] = {
    "externalcontact/remark": 5,
    "externalcontact/mark_tag": 5,
}


@dataclass
class ClientStats:
    """Call and error counts per API path, shared by a client and its views (for /metrics)."""

    calls: Counter[str] = field(default_factory=Counter)
    errors: Counter[tuple[str, int]] = field(default_factory=Counter)
    # Every answer by errcode, 0 included (INVALID_RESPONSE_ERRCODE: no WeCom answer);
    # with transport_errors this is the outcome of every call that left the limiter.
    responses: Counter[tuple[str, int]] = field(default_factory=Counter)
    retries: Counter[str] = field(default_factory=Counter)
    transport_errors: Counter[str] = field(default_factory=Counter)
    token_refused: int = 0

    def snapshot(self) -> dict[str, Any]:
        """Plain data for a metrics endpoint."""
        return {
            "calls": dict(self.calls),
            "errors": {f"{path}:{code}": n for (path, code), n in self.errors.items()},
            "responses": {f"{path}:{code}": n for (path, code), n in self.responses.items()},
            "retries": dict(self.retries),
            "transport_errors": dict(self.transport_errors),
            "token_refused": self.token_refused,
        }


class _Core:
    """What a client and its views share: the HTTP client, token, limiter and stats."""

    def __init__(
        self,
        config: WeComConfig,
        *,
        db: Database,
        clock: Clock,
        transport: httpx.AsyncBaseTransport | None,
        limiter: RateLimiter | None,
        rng: random.Random | None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.rng = rng or random.Random()
        self.limiter: RateLimiter = limiter or MemoryRateLimiter(
            config.quota, config.member_messages, clock
        )
        self.stats = ClientStats()
        self.http = httpx.AsyncClient(
            base_url=config.api_base, timeout=config.timeout_seconds, transport=transport
        )
        self.base_path = httpx.URL(config.api_base).path.rstrip("/") + "/"
        # A refresh holds the lease for at most one gettoken round trip plus slack; others
        # wait that long (and one more timeout) before giving up.
        lease_seconds = 2 * config.timeout_seconds + 5
        self.tokens = TokenManager(
            store=TokenStore(db, f"{config.corp_id}:{config.agent_id}", clock),
            fetch=self.fetch_token,
            clock=clock,
            lease_seconds=lease_seconds,
            max_wait_seconds=lease_seconds + config.timeout_seconds,
        )
        self.auth = AccessTokenAuth(self.tokens, on_refused=self._token_refused)
        self.semaphores = {p: asyncio.Semaphore(n) for p, n in PATH_CONCURRENCY.items()}

    def mask(self, text: str) -> str:
        """`text` with the secret and any token we hold replaced by ***."""
        return redact(text, (self.config.secret.get_secret_value(), *self.tokens.secrets))

    def relative(self, request: httpx.Request) -> str:
        return request.url.path.removeprefix(self.base_path)

    def _token_refused(self, request: httpx.Request, errcode: int) -> None:
        self.stats.token_refused += 1
        self.stats.errors[(self.relative(request), errcode)] += 1

    async def fetch_token(self) -> AccessToken:
        """`gettoken` (91039): same transport and limits, no auth."""
        corp_id, secret = self.config.corp_id, self.config.secret.get_secret_value()
        if not corp_id or not secret:
            raise ConfigurationError(
                INVALID_REQUEST_ERRCODE, "wecom.corp_id and wecom.secret must be set", GETTOKEN
            )
        await self.limiter.acquire(GETTOKEN)
        self.stats.calls[GETTOKEN] += 1
        try:
            response = await self.http.get(
                GETTOKEN, params={"corpid": corp_id, "corpsecret": secret}
            )
        except httpx.TransportError as exc:
            self.stats.transport_errors[GETTOKEN] += 1
            raise WeComUnavailable(TRANSPORT_ERRCODE, self.describe(exc), GETTOKEN) from None
        return self.parse(response, GETTOKEN, AccessToken, idempotent=True)

    def describe(self, exc: Exception) -> str:
        return self.mask(f"{type(exc).__name__}: {exc}")

    def parse(self, response: httpx.Response, path: str, model: type[R], *, idempotent: bool) -> R:
        """The answer as `model`, or the matching WeComError."""
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict) or not isinstance(data.get("errcode", 0), int):
            self.stats.responses[(path, INVALID_RESPONSE_ERRCODE)] += 1
            status = response.status_code
            if 400 <= status < 500:
                raise RequestRejected(
                    INVALID_RESPONSE_ERRCODE, f"HTTP {status} without a WeCom answer", path
                )
            # A gateway error page says nothing about whether WeCom acted on the call.
            cls = WeComUnavailable if idempotent else OutcomeUnknown
            raise cls(INVALID_RESPONSE_ERRCODE, f"HTTP {status} without a WeCom answer", path)
        errcode: int = data.get("errcode", 0)
        self.stats.responses[(path, errcode)] += 1
        if errcode != 0:
            self.stats.errors[(path, errcode)] += 1
            error = error_for(
                errcode,
                self.mask(str(data.get("errmsg", ""))),
                path,
                retry_after=self.config.retry.rate_limit_pause_seconds,
            )
            if isinstance(error, RateLimited):
                # Never retry into a quota block: it only extends it (perf §1.6).
                self.limiter.pause(path, error.retry_after)
            raise error
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            raise RequestRejected(
                INVALID_RESPONSE_ERRCODE, f"errcode 0 but unexpected shape: {describe(exc)}", path
            ) from None


class WeComClient:
    """Async WeCom client: resources under `externalcontact`, `tags`, `groupchat`,
    `groupmsg`, `moment`, `message` and `media`; `call` for anything not wrapped yet."""

    def __init__(
        self,
        config: WeComConfig,
        *,
        db: Database,
        clock: Clock,
        transport: httpx.AsyncBaseTransport | None = None,
        limiter: RateLimiter | None = None,
        rng: random.Random | None = None,
    ) -> None:
        _install_log_redaction()
        self._core = _Core(
            config, db=db, clock=clock, transport=transport, limiter=limiter, rng=rng
        )
        self._retries = True
        self._wait_for_quota = True
        self._owner = True
        self._init_resources()

    def _init_resources(self) -> None:
        self.externalcontact = ExternalContactAPI(self)
        self.tags = TagsAPI(self)
        self.groupchat = GroupChatAPI(self)
        self.groupmsg = GroupMsgAPI(self)
        self.moment = MomentAPI(self)
        self.message = MessageAPI(self)
        self.media = MediaAPI(self)

    def with_options(
        self, retries: bool | None = None, *, wait_for_quota: bool | None = None
    ) -> WeComClient:
        """A view sharing HTTP client, token, limiter and stats, with other behaviour.

        `retries=False`: every error reaches the caller at once. `wait_for_quota=False`:
        when the limiter has no slot, raise `QuotaWait` instead of sleeping. The outbox
        sender, which schedules its own retries, uses both.
        """
        view = WeComClient.__new__(WeComClient)
        view._core = self._core
        view._retries = self._retries if retries is None else retries
        view._wait_for_quota = self._wait_for_quota if wait_for_quota is None else wait_for_quota
        view._owner = False
        view._init_resources()
        return view

    @property
    def config(self) -> WeComConfig:
        return self._core.config

    @property
    def clock(self) -> Clock:
        """The clock this client (and every view of it) runs on."""
        return self._core.clock

    @property
    def stats(self) -> ClientStats:
        return self._core.stats

    @property
    def limiter(self) -> RateLimiter:
        return self._core.limiter

    @property
    def retries(self) -> bool:
        return self._retries

    @property
    def wait_for_quota(self) -> bool:
        return self._wait_for_quota

    async def ensure_token(self) -> None:
        """Make sure a usable access token is cached (fetching one if needed); for health
        checks and start-up. Raises the WeComError gettoken gave."""
        await self._core.tokens.get()

    @property
    def token_fetches(self) -> int:
        """How many times this process called gettoken."""
        return self._core.tokens.fetches

    async def aclose(self) -> None:
        """Close the HTTP client (a view leaves it to the client it came from)."""
        if self._owner:
            await self._core.http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        config = self._core.config
        return f"WeComClient(corp_id={config.corp_id!r}, agent_id={config.agent_id!r})"

    async def call(
        self,
        method: HttpMethod,
        path: str,
        model: type[R],
        *,
        idempotent: bool,
        params: Mapping[str, str | int] | None = None,
        json: Mapping[str, Any] | None = None,
        files: Mapping[str, FileTuple] | None = None,
        members: Sequence[str] = (),
    ) -> R:
        """Call `path` (relative to api_base) and parse the answer into `model`.

        `idempotent` decides what a timeout means: retried if the call is safe to repeat,
        otherwise `OutcomeUnknown`. `members` are app-message recipients, each counted
        against their own per-member cap.
        """
        attempt = 0
        while True:
            try:
                return await self._attempt(
                    method,
                    path,
                    model,
                    idempotent=idempotent,
                    params=params,
                    json=json,
                    files=files,
                    members=members,
                )
            except WeComError as error:
                delay = self._retry_delay(error, attempt)
                if delay is None:
                    raise
                attempt += 1
                self._core.stats.retries[path] += 1
                log.warning(
                    "WeCom %s failed (errcode %s); retry %d in %.2fs",
                    path,
                    error.errcode,
                    attempt,
                    delay,
                )
                await self._core.clock.sleep(delay)

    def _retry_delay(self, error: WeComError, attempt: int) -> float | None:
        """Seconds to wait before trying again, or None to raise `error` now."""
        if not self._retries or isinstance(error, RateLimited | OutcomeUnknown):
            return None
        retry = self._core.config.retry
        if isinstance(error, WelcomeInProgress):
            limit = 1  # WeCom allows one retry (92599)
        elif isinstance(error, WeComUnavailable) or error.errcode in (
            SYSTEM_BUSY,
            TOO_MANY_CONCURRENT,
        ):
            limit = retry.busy_max_retries
        else:
            return None
        if attempt >= limit:
            return None
        # Full jitter (AWS "Exponential Backoff and Jitter"): spreads retries from many
        # callers instead of synchronising them on the same instants.
        ceiling = min(retry.backoff_cap_seconds, retry.backoff_base_seconds * 2**attempt)
        return self._core.rng.uniform(0, ceiling)

    async def _attempt(
        self,
        method: HttpMethod,
        path: str,
        model: type[R],
        *,
        idempotent: bool,
        params: Mapping[str, str | int] | None,
        json: Mapping[str, Any] | None,
        files: Mapping[str, FileTuple] | None,
        members: Sequence[str],
    ) -> R:
        core = self._core
        for member in members or (None,):
            if self._wait_for_quota:
                await core.limiter.acquire(path, member)
            elif (wait := await core.limiter.reserve_async(path, member)) > 0:
                raise QuotaWait(path, wait)
        core.stats.calls[path] += 1
        request = core.http.build_request(method, path, params=params, json=json, files=files)
        semaphore = core.semaphores.get(path)
        guard: AbstractAsyncContextManager[Any] = semaphore if semaphore else nullcontext()
        async with guard:
            try:
                response = await core.http.send(request, auth=core.auth)
            except httpx.TransportError as exc:
                core.stats.transport_errors[path] += 1
                maybe_sent = not isinstance(exc, _NOT_SENT)
                cls = OutcomeUnknown if maybe_sent and not idempotent else WeComUnavailable
                raise cls(TRANSPORT_ERRCODE, core.describe(exc), path) from None
        return core.parse(response, path, model, idempotent=idempotent)


class _RedactQuery:
    """A logging filter for httpx's request log line, whose URL carries the token (and,
    for gettoken, the secret)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(isinstance(a, httpx.URL) for a in record.args):
            record.args = tuple(
                redact(str(a)) if isinstance(a, httpx.URL) else a for a in record.args
            )
        return True


def _install_log_redaction() -> None:
    logger = logging.getLogger("httpx")
    if not any(isinstance(f, _RedactQuery) for f in logger.filters):
        logger.addFilter(_RedactQuery())


__all__ = ["PATH_CONCURRENCY", "ClientStats", "HttpMethod", "WeComClient"]
