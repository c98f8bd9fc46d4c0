"""`GET`/`POST /wecom/callback`: verify, decrypt, parse, store in the inbox, then acknowledge."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from bot.clock import Clock
from bot.config import Settings
from bot.gateway.crypto import CryptoError, SignatureError, WeComCrypto
from bot.gateway.inbox import InboxWriter, dedupe_key
from bot.gateway.parse import event_key_of
from bot.gateway.xmlsafe import XmlRejected, parse_xml
from bot.store.db import Database

log = logging.getLogger(__name__)

CALLBACK_PATH = "/wecom/callback"


@dataclass
class GatewayCounters:
    """What the gateway has seen since start, for metrics."""

    received: int = 0
    stored: int = 0
    duplicates: int = 0
    verified: int = 0
    rejected: Counter[str] = field(default_factory=Counter)


class _Reject(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class CallbackGateway:
    """The callback endpoint of the self-built app.

    Nothing is stored unless every check passes; a callback is acknowledged (200, empty
    body) only once its row is committed, so a crash before that makes WeCom retry.
    Rejections carry no body: the status says enough and there is no oracle to probe.
    """

    def __init__(
        self,
        settings: Settings,
        db: Database,
        clock: Clock,
        crypto: WeComCrypto | None,
        on_stored: Callable[[str, dict[str, Any]], None] | None = None,
    ) -> None:
        self.db = db
        self.clock = clock
        self.crypto = crypto
        self.on_stored = on_stored
        self.max_body_bytes = settings.callback.max_body_bytes
        self.tolerance = settings.callback.timestamp_tolerance_seconds
        self.counters = GatewayCounters()
        self.writer = InboxWriter(db)

    def routes(self) -> list[Route]:
        return [
            Route(CALLBACK_PATH, self.verify_url, methods=["GET"]),
            Route(CALLBACK_PATH, self.receive, methods=["POST"]),
        ]

    async def verify_url(self, request: Request) -> Response:
        """URL verification: answer the decrypted echostr, bare, as text/plain."""
        try:
            crypto = self._crypto()
            signature, timestamp, nonce = self._query(request)
            # Base64 has no spaces; a '+' sent unescaped arrives as one from query decoding.
            echostr = request.query_params.get("echostr", "").replace(" ", "+")
            if not echostr:
                raise _Reject(400, "bad_params")
            self._check(crypto, signature, timestamp, nonce, echostr)
            plaintext = self._decrypt(crypto, echostr)
        except _Reject as rejected:
            return self._rejected(rejected, "verification")
        self.counters.verified += 1
        return Response(plaintext, media_type="text/plain")

    async def receive(self, request: Request) -> Response:
        """A callback delivery: store it once, then reply 200 with an empty body."""
        self.counters.received += 1
        try:
            crypto = self._crypto()
            body = await self._read_body(request)
            try:
                envelope = parse_xml(body, max_bytes=self.max_body_bytes)
            except XmlRejected as exc:
                log.warning("callback envelope refused: %s", exc.reason)
                raise _Reject(400, "bad_xml") from None
            encrypt = envelope.get("Encrypt")
            if not isinstance(encrypt, str) or not encrypt:
                raise _Reject(400, "bad_xml")
            signature, timestamp, nonce = self._query(request)
            self._check(crypto, signature, timestamp, nonce, encrypt)
            plaintext = self._decrypt(crypto, encrypt)
            try:
                # Parsed here so a broken message is refused (and WeCom told) now; turning the
                # fields into a typed event is the dispatcher's work, off the request path.
                fields = parse_xml(plaintext, max_bytes=self.max_body_bytes)
            except XmlRejected as exc:
                log.warning("decrypted callback refused: %s", exc.reason)
                raise _Reject(400, "bad_message") from None
        except _Reject as rejected:
            return self._rejected(rejected, "callback")

        key = dedupe_key(plaintext)
        routing = event_key_of(fields)
        now = self.clock.now()
        try:
            new = await self.writer.store(key=key, routing=routing, payload=plaintext, now=now)
        except SQLAlchemyError as exc:
            # Not stored, so not acknowledged: WeCom retries the delivery. Error classes only:
            # the error's text lists the statement's parameters, the decrypted message included.
            cause = type(getattr(exc, "orig", None) or exc).__name__
            log.error(
                "callback %s key=%s could not be stored: %s (%s)",
                routing,
                key[:12],
                type(exc).__name__,
                cause,
            )
            self.counters.rejected["store_failed"] += 1
            return Response(status_code=503)
        if new:
            self.counters.stored += 1
            # DEBUG: the dispatcher writes the event's one INFO line (with its inbox key,
            # type and hashed customer) when it handles the row; a second line per event
            # here cost the gateway a tenth of its CPU under load.
            log.debug("stored callback %s key=%s", routing, key[:12])
            if self.on_stored is not None:
                self.on_stored(key, fields)
        else:
            self.counters.duplicates += 1
            log.info("duplicate callback %s key=%s", routing, key[:12])
        return Response(status_code=200)

    def _crypto(self) -> WeComCrypto:
        if self.crypto is None:
            raise _Reject(503, "not_configured")
        return self.crypto

    async def _read_body(self, request: Request) -> bytes:
        # Content-Length is only a hint (it may be absent or lie under chunked encoding);
        # the stream is read with a running count and abandoned past the limit.
        declared = request.headers.get("content-length", "")
        if declared.isascii() and declared.isdigit() and int(declared) > self.max_body_bytes:
            raise _Reject(413, "too_large")
        body = bytearray()
        try:
            async for chunk in request.stream():
                body += chunk
                if len(body) > self.max_body_bytes:
                    raise _Reject(413, "too_large")
        except ClientDisconnect:
            # Nothing was stored, so WeCom will retry; the reply goes nowhere.
            raise _Reject(400, "client_disconnected") from None
        return bytes(body)

    def _query(self, request: Request) -> tuple[str, str, str]:
        params = request.query_params
        signature = params.get("msg_signature", "")
        timestamp = params.get("timestamp", "")
        nonce = params.get("nonce", "")
        if not (signature and nonce and timestamp.isascii() and timestamp.isdigit()):
            raise _Reject(400, "bad_params")
        return signature, timestamp, nonce

    def _check(
        self, crypto: WeComCrypto, signature: str, timestamp: str, nonce: str, encrypt: str
    ) -> None:
        # WeCom documents no replay window; ±tolerance (Stripe's 300 s by default), with the
        # inbox's unique key turning a replay inside the window into a no-op.
        if abs(self.clock.timestamp() - int(timestamp)) > self.tolerance:
            raise _Reject(403, "stale_timestamp")
        try:
            crypto.verify(signature, timestamp, nonce, encrypt)
        except SignatureError:
            raise _Reject(403, "bad_signature") from None

    def _decrypt(self, crypto: WeComCrypto, encrypt: str) -> bytes:
        try:
            return crypto.decrypt(encrypt)
        except CryptoError:
            raise _Reject(400, "decrypt_failed") from None

    def _rejected(self, rejected: _Reject, what: str) -> Response:
        self.counters.rejected[rejected.reason] += 1
        log.warning("%s rejected with %d: %s", what, rejected.status, rejected.reason)
        return Response(status_code=rejected.status)


__all__ = ["CALLBACK_PATH", "CallbackGateway", "GatewayCounters"]
