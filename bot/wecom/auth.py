"""The access token: a shared database cache, single-flight refresh, and an `httpx.Auth` flow."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import uuid
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

import httpx
from sqlalchemy import Connection, and_, or_, select, update
from sqlalchemy.orm import Session

from bot.clock import Clock
from bot.store.db import Database
from bot.store.inserts import insert_new
from bot.store.models import TokenCache
from bot.wecom.errors import TOKEN_RETRY_CODES, TRANSPORT_ERRCODE, WeComUnavailable
from bot.wecom.models import AccessToken

log = logging.getLogger(__name__)

REFRESH_MARGIN: Final = timedelta(minutes=5)
"""Refresh a token this long before WeCom says it expires."""
LEASE_POLL_SECONDS: Final = 0.25


@dataclass(frozen=True)
class CachedToken:
    """A token and when it stops being valid."""

    token: str
    expires_at: datetime

    def fresh(self, now: datetime) -> bool:
        """Valid for longer than the refresh margin."""
        return now + REFRESH_MARGIN < self.expires_at

    def valid(self, now: datetime) -> bool:
        """Not yet expired (may be inside the refresh margin)."""
        return now < self.expires_at


def process_owner() -> str:
    """An id for this process's refresh leases (host, pid and a random part)."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class TokenStore:
    """The `token_cache` row for one app, shared by every process using the database."""

    def __init__(self, db: Database, key: str, clock: Clock) -> None:
        self._db = db
        self._key = key
        self._clock = clock

    @property
    def key(self) -> str:
        return self._key

    async def read(self) -> CachedToken | None:
        """The stored token, if there is one."""

        def fn(session: Session) -> CachedToken | None:
            row = session.execute(
                select(TokenCache.access_token, TokenCache.expires_at).where(
                    TokenCache.key == self._key
                )
            ).one_or_none()
            if row is None or not row.access_token or row.expires_at is None:
                return None
            return CachedToken(row.access_token, row.expires_at)

        return await self._db.run(fn)

    async def try_lease(self, owner: str, seconds: float) -> bool:
        """Claim the right to refresh for `seconds`; False if another process holds it."""
        now = self._clock.now()
        until = now + timedelta(seconds=seconds)

        def fn(session: Session) -> bool:
            conn = session.connection()
            # Atomic claim: only one UPDATE can see the lease free (PostgreSQL re-checks
            # the WHERE after the row lock; SQLite serialises writers).
            claimed = conn.execute(
                update(TokenCache)
                .where(
                    TokenCache.key == self._key,
                    or_(
                        TokenCache.refresh_lease_until.is_(None),
                        TokenCache.refresh_lease_until <= now,
                        TokenCache.refresh_owner == owner,
                    ),
                )
                .values(refresh_lease_until=until, refresh_owner=owner, updated_at=now)
            )
            if claimed.rowcount == 1:
                return True
            inserted = conn.execute(
                insert_new(self._db.dialect, TokenCache, ["key"])
                .values(
                    key=self._key,
                    access_token=None,
                    expires_at=None,
                    refresh_lease_until=until,
                    refresh_owner=owner,
                    updated_at=now,
                )
                # rowcount is not reliable for INSERT on psycopg; RETURNING is.
                .returning(TokenCache.key)
            )
            return inserted.scalar_one_or_none() is not None

        return await self._db.run(fn)

    async def save(self, owner: str, token: CachedToken) -> None:
        """Store a fresh token and give up our lease."""
        now = self._clock.now()

        def fn(session: Session) -> None:
            conn = session.connection()
            conn.execute(
                update(TokenCache)
                .where(TokenCache.key == self._key)
                .values(access_token=token.token, expires_at=token.expires_at, updated_at=now)
            )
            self._release(conn, owner, now)

        await self._db.run(fn)

    async def release(self, owner: str) -> None:
        """Give up our lease without a new token (the fetch failed)."""
        now = self._clock.now()
        await self._db.run(lambda session: self._release(session.connection(), owner, now))

    def _release(self, conn: Connection, owner: str, now: datetime) -> None:
        conn.execute(
            update(TokenCache)
            .where(TokenCache.key == self._key, TokenCache.refresh_owner == owner)
            .values(refresh_lease_until=None, refresh_owner=None, updated_at=now)
        )

    async def invalidate(self, token: str) -> bool:
        """Forget `token` if it is still the stored one (another process may have
        replaced it already); True if it was."""
        now = self._clock.now()

        def fn(session: Session) -> bool:
            result = session.connection().execute(
                update(TokenCache)
                .where(and_(TokenCache.key == self._key, TokenCache.access_token == token))
                .values(access_token=None, expires_at=None, updated_at=now)
            )
            return result.rowcount == 1

        return await self._db.run(fn)


class TokenManager:
    """Hands out a usable token, refreshing it at most once at a time: an asyncio.Lock in
    this process and a lease on the database row across processes."""

    def __init__(
        self,
        *,
        store: TokenStore,
        fetch: Callable[[], Awaitable[AccessToken]],
        clock: Clock,
        lease_seconds: float,
        max_wait_seconds: float,
        owner: str | None = None,
    ) -> None:
        self._store = store
        self._fetch = fetch
        self._clock = clock
        self._lease_seconds = lease_seconds
        self._max_wait_seconds = max_wait_seconds
        self._owner = owner or process_owner()
        self._lock = asyncio.Lock()
        self._memory: CachedToken | None = None
        # Recent tokens, current and refused, so error text quoting any of them is masked.
        self._seen: deque[str] = deque(maxlen=4)
        self.fetches = 0

    @property
    def secrets(self) -> tuple[str, ...]:
        """Token values to mask in error text."""
        return tuple(self._seen)

    def _remember(self, cached: CachedToken) -> CachedToken:
        self._memory = cached
        if cached.token not in self._seen:
            self._seen.append(cached.token)
        return cached

    def _usable(self, cached: CachedToken | None, reject: str | None) -> CachedToken | None:
        if cached is None or cached.token == reject or not cached.fresh(self._clock.now()):
            return None
        return cached

    async def get(self, *, reject: str | None = None) -> str:
        """A token valid for at least the refresh margin, other than `reject`."""
        if usable := self._usable(self._memory, reject):
            return usable.token
        async with self._lock:
            # Whoever held the lock before us may have refreshed already.
            if usable := self._usable(self._memory, reject):
                return usable.token
            stored = await self._store.read()
            if usable := self._usable(stored, reject):
                return self._remember(usable).token
            current = stored if stored is not None and stored.token != reject else None
            return (await self._refresh(current, reject)).token

    async def invalidate(self, token: str) -> None:
        """WeCom refused `token`: drop it here and in the database (if still stored)."""
        if self._memory is not None and self._memory.token == token:
            self._memory = None
        if await self._store.invalidate(token):
            log.info("access token for %s invalidated after WeCom refused it", self._store.key)

    async def _refresh(self, current: CachedToken | None, reject: str | None) -> CachedToken:
        # `current` may still be valid, only inside the refresh margin: then nobody needs
        # to wait for a refresh, and a failed refresh is not an outage.
        deadline = self._clock.timestamp() + self._max_wait_seconds
        while True:
            if await self._store.try_lease(self._owner, self._lease_seconds):
                return await self._refresh_under_lease(current, reject)
            if current is not None and current.valid(self._clock.now()):
                return self._remember(current)
            if self._clock.timestamp() >= deadline:
                raise WeComUnavailable(
                    TRANSPORT_ERRCODE,
                    "token refresh by another process did not finish in time",
                    "gettoken",
                )
            await self._clock.sleep(LEASE_POLL_SECONDS)
            if usable := self._usable(await self._store.read(), reject):
                return self._remember(usable)

    async def _refresh_under_lease(
        self, current: CachedToken | None, reject: str | None
    ) -> CachedToken:
        try:
            # Someone may have stored a new token between our read and our lease.
            if usable := self._usable(await self._store.read(), reject):
                await self._store.release(self._owner)
                return self._remember(usable)
            started = self._clock.now()
            self.fetches += 1
            answer = await self._fetch()
            fresh = CachedToken(answer.access_token, started + timedelta(seconds=answer.expires_in))
            await self._store.save(self._owner, fresh)
        except BaseException as exc:
            await self._release_quietly()
            if isinstance(exc, Exception) and current and current.valid(self._clock.now()):
                log.warning("token refresh failed; using the current token until it expires")
                return self._remember(current)
            raise
        return self._remember(fresh)

    async def _release_quietly(self) -> None:
        try:
            await self._store.release(self._owner)
        except Exception:
            # The lease runs out by itself; the fetch error is the one worth raising.
            log.warning("could not release the token refresh lease", exc_info=True)


def response_errcode(response: httpx.Response) -> int | None:
    """The errcode in a WeCom JSON answer, or None if the body is not one."""
    try:
        data = json.loads(response.content)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    code = data.get("errcode")
    return code if isinstance(code, int) else None


class AccessTokenAuth(httpx.Auth):
    """Adds `access_token` to the query; on 40014/42001 drops the token, fetches a new
    one and resends once (a second refusal reaches the caller as the response)."""

    def __init__(
        self, tokens: TokenManager, on_refused: Callable[[httpx.Request, int], None] | None = None
    ) -> None:
        self._tokens = tokens
        self._on_refused = on_refused

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response]:
        raise TypeError("the WeCom client is async only")

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        token = await self._tokens.get()
        request.url = request.url.copy_set_param("access_token", token)
        response = yield request
        await response.aread()
        errcode = response_errcode(response)
        if errcode not in TOKEN_RETRY_CODES:
            return
        assert errcode is not None
        if self._on_refused is not None:
            self._on_refused(request, errcode)
        await self._tokens.invalidate(token)
        token = await self._tokens.get(reject=token)
        request.url = request.url.copy_set_param("access_token", token)
        yield request


__all__ = [
    "REFRESH_MARGIN",
    "AccessTokenAuth",
    "CachedToken",
    "TokenManager",
    "TokenStore",
    "process_owner",
    "response_errcode",
]
