"""The callback endpoint under fuzzing: deliveries (random, sealed, tampered) posted to the
real ASGI app that `create_app` builds, and the properties every response must keep."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal
from xml.sax.saxutils import escape

import httpx
from hypothesis import strategies as st
from sqlalchemy import func, select

from bot.app import BotApp, create_app
from bot.clock import FrozenClock
from bot.config import build_settings
from bot.gateway import xmlsafe
from bot.gateway.crypto import Envelope, WeComCrypto
from bot.gateway.endpoint import CALLBACK_PATH
from bot.gateway.inbox import dedupe_key
from bot.store.db import Database
from bot.store.models import InboxEvent
from tests.fuzz.bounds import bounded
from tests.fuzz.xml_shapes import (
    DTDS,
    damaged,
    deep,
    dtd_like,
    wecom_messages,
    xml_documents,
    xml_safe_text,
)
from tests.gateway.conftest import AES_KEY, CORP_ID, TOKEN

# Far above what one request costs (a few ms); a request still running then is a hang.
REQUEST_SECONDS = 10.0
# Every refusal the gateway makes, and the acknowledgement. Never 500, never anything else.
ALLOWED = {200, 400, 403, 413}


@dataclass(frozen=True)
class Delivery:
    """One request. `plaintext` is what an authentic delivery carries (None: it is not
    authentic, so it must never be acknowledged); `must_accept` marks a WeCom-shaped message,
    correctly sealed and in the window, that has to be stored."""

    method: Literal["GET", "POST"]
    query: tuple[tuple[str, str], ...]
    body: bytes
    chunked: bool
    plaintext: bytes | None
    must_accept: bool
    label: str


# -- random requests: nothing about them is authentic ---------------------------------------

_HEX = st.text("0123456789abcdef", min_size=0, max_size=48)
_PARAM_VALUES = st.one_of(
    _HEX,
    st.text(max_size=30),
    st.integers(-(10**12), 10**25).map(str),
    st.sampled_from(["", "+", "%00", "1e9", "١٢٣", " 1", "1 "]),
)


@st.composite
def queries(draw: st.DrawFn) -> tuple[tuple[str, str], ...]:
    keys = draw(
        st.lists(
            st.sampled_from(["msg_signature", "timestamp", "nonce", "echostr", "x"]), max_size=6
        )
    )
    return tuple((key, draw(_PARAM_VALUES)) for key in keys)


@st.composite
def random_deliveries(draw: st.DrawFn) -> Delivery:
    body = draw(
        st.one_of(
            st.binary(max_size=2048),
            xml_documents,
            st.builds(
                lambda text: f"<xml><Encrypt><![CDATA[{text}]]></Encrypt></xml>".encode(),
                st.text(st.characters(codec="ascii", exclude_characters="]"), max_size=200),
            ),
        )
    )
    return Delivery(
        method=draw(st.sampled_from(["POST", "POST", "POST", "GET"])),
        query=draw(queries()),
        body=body,
        chunked=draw(st.booleans()),
        plaintext=None,
        must_accept=False,
        label="random",
    )


# -- sealed deliveries: correctly encrypted and signed, then shaped and perhaps tampered -----

ENVELOPE_SHAPES = [
    "standard", "no-cdata", "cdata-split", "declared-utf8", "extra-children",
    "duplicate-encrypt", "renamed-root", "nested-encrypt", "dtd", "damaged", "oversized",
]  # fmt: skip
CLEAN_SHAPES = {"standard", "no-cdata", "cdata-split", "declared-utf8", "extra-children"}
TAMPERING = [
    "signature", "nonce", "timestamp", "other-token", "resigned-ciphertext",
    "unsigned-ciphertext", "other-corp",
]  # fmt: skip


@dataclass(frozen=True)
class SealContext:
    """What the strategies need of the harness: its crypto, time and limits."""

    crypto: WeComCrypto
    now: int
    tolerance: int
    max_bytes: int


def _mutate_ciphertext(draw: st.DrawFn, encrypt: str) -> str:
    """Truncated base64, bad padding, a changed character, or junk appended."""
    how = draw(st.sampled_from(["truncate", "padding", "flip", "append", "strip-padding"]))
    if how == "truncate":
        return encrypt[: draw(st.integers(0, len(encrypt) - 1))]
    if how == "padding":
        return encrypt.rstrip("=") + draw(st.sampled_from(["=", "==", "===", "A=", "=A"]))
    if how == "strip-padding":
        return encrypt.rstrip("=") if encrypt.endswith("=") else encrypt + "="
    if how == "append":
        return encrypt + draw(st.sampled_from(["A", "AAAA", "====", " ", "\n", "*", "AA=="]))
    at = draw(st.integers(0, len(encrypt) - 1))
    replacement = draw(st.sampled_from("AB+/=9z*-_ ").filter(lambda c: c != encrypt[at]))
    return encrypt[:at] + replacement + encrypt[at + 1 :]


_extra_children = st.builds(
    lambda name, text: f"<{name}>{escape(text)}</{name}>",
    st.sampled_from(["ToUserName", "AgentID", "Note", "x"]),
    xml_safe_text,
)


def _envelope_body(draw: st.DrawFn, shape: str, encrypt: str, max_bytes: int) -> bytes:
    head = f"<ToUserName><![CDATA[{CORP_ID}]]></ToUserName>"
    tail = "<AgentID><![CDATA[1000002]]></AgentID>"
    cdata = f"<Encrypt><![CDATA[{encrypt}]]></Encrypt>"
    if shape == "standard":
        return f"<xml>{head}{cdata}{tail}</xml>".encode()
    if shape == "no-cdata":
        return f"<xml><Encrypt>{encrypt}</Encrypt></xml>".encode()
    if shape == "cdata-split":
        cut = draw(st.integers(0, len(encrypt)))
        parts = f"<![CDATA[{encrypt[:cut]}]]><![CDATA[{encrypt[cut:]}]]>"
        return f"<xml>{head}<Encrypt>{parts}</Encrypt></xml>".encode()
    if shape == "declared-utf8":
        return f'<?xml version="1.0" encoding="UTF-8"?>\n<xml>{cdata}</xml>'.encode()
    if shape == "extra-children":
        # Well-formed neighbours (none named Encrypt): WeCom may add fields one day.
        extra = "".join(draw(st.lists(_extra_children, max_size=3)))
        return f"<xml>{extra}{cdata}{extra}<!-- note --></xml>".encode()
    if shape == "duplicate-encrypt":
        other = draw(st.sampled_from(["", "AAAA", encrypt[::-1]]))
        first, second = (cdata, f"<Encrypt>{other}</Encrypt>")
        if draw(st.booleans()):
            first, second = second, first
        return f"<xml>{first}{second}</xml>".encode()
    if shape == "renamed-root":
        root = draw(st.sampled_from(["root", "XML", "x:xml", "Encrypt"]))
        return f"<{root}>{cdata}</{root}>".encode()
    if shape == "nested-encrypt":
        return f"<xml><Encrypt><Inner>{encrypt}</Inner></Encrypt></xml>".encode()
    if shape == "dtd":
        return draw(st.sampled_from(DTDS)) + f"<xml>{cdata}</xml>".encode()
    if shape == "damaged":
        return draw(damaged(f"<xml>{head}{cdata}{tail}</xml>".encode()))
    padding = b"<Pad>" + b"x" * (max_bytes + draw(st.integers(0, 5000))) + b"</Pad>"
    return f"<xml>{cdata}".encode() + padding + b"</xml>"


@st.composite
def inner_messages(draw: st.DrawFn) -> tuple[bytes, bool]:
    """(plaintext, whether WeCom could have sent it: well-formed, no DTD)."""
    roll = draw(st.integers(0, 9))
    kind = (
        "wecom"
        if roll in (1, 3, 5, 7, 9)
        else draw(st.sampled_from(["document", "deep", "binary", "dtd"]))
    )
    if kind == "wecom":
        return draw(wecom_messages), True
    if kind == "document":
        return draw(xml_documents), False
    if kind == "deep":
        return f"<xml>{draw(deep)}</xml>".encode(), False
    if kind == "binary":
        return draw(st.binary(max_size=512)), False
    return draw(st.sampled_from(DTDS)) + draw(wecom_messages), False


_ECHOES = st.one_of(st.integers(0, 10**20).map(lambda n: str(n).encode()), st.binary())


@st.composite
def sealed_deliveries(draw: st.DrawFn, ctx: SealContext) -> Delivery:
    method = draw(st.sampled_from(["POST", "POST", "POST", "GET"]))
    if method == "GET":
        # URL verification: WeCom's echostr is a short random number.
        plaintext, wecom_like = draw(_ECHOES), True
    else:
        plaintext, wecom_like = draw(inner_messages())
    # Rolls rather than sampled_from lists: hypothesis favours the first few choices of a
    # list, which would leave authentic deliveries rare.
    in_window = draw(st.integers(0, 9)) != 4
    if in_window:
        skew = draw(st.integers(-ctx.tolerance, ctx.tolerance))
    else:
        skew = draw(st.integers(ctx.tolerance + 1, 10**9)) * draw(st.sampled_from([-1, 1]))
    timestamp = str(max(0, ctx.now + skew))
    in_window = abs(int(timestamp) - ctx.now) <= ctx.tolerance
    nonce = draw(st.text(st.characters(codec="utf-8"), min_size=1, max_size=20))
    random16 = draw(st.binary(min_size=16, max_size=16))
    tamper = (
        "none" if draw(st.integers(0, 9)) in (1, 3, 5, 7, 9) else draw(st.sampled_from(TAMPERING))
    )
    crypto = ctx.crypto
    if tamper == "other-corp":
        crypto = WeComCrypto(TOKEN, AES_KEY, "ww0000000000000000")
    if tamper == "other-token":
        crypto = WeComCrypto("forgedToken", AES_KEY, CORP_ID)
    envelope = crypto.seal(plaintext, timestamp=timestamp, nonce=nonce, random16=random16)
    encrypt, signature = envelope.encrypt, envelope.msg_signature
    if tamper == "signature":
        signature = draw(st.one_of(_HEX, st.just(signature[::-1]), st.just(signature.upper())))
        tamper = "none" if signature == envelope.msg_signature else tamper
    elif tamper == "nonce":
        nonce = nonce + draw(st.text(min_size=1, max_size=3))
    elif tamper == "timestamp":
        timestamp = str(int(timestamp) + draw(st.integers(1, ctx.tolerance)))
    elif tamper in ("resigned-ciphertext", "unsigned-ciphertext"):
        encrypt = _mutate_ciphertext(draw, encrypt)
        if tamper == "resigned-ciphertext":
            signature = ctx.crypto.sign(timestamp, nonce, encrypt)
        if encrypt == envelope.encrypt:  # the mutation changed nothing ("=" for "=")
            tamper = "none"
    query = {"msg_signature": signature, "timestamp": timestamp, "nonce": nonce}
    # Only these keep the signature valid; a re-signed ciphertext that still decrypts can
    # only decrypt to the same plaintext (base64's unused bits), so it may be accepted.
    authentic = in_window and tamper in ("none", "resigned-ciphertext")
    if method == "GET":
        return Delivery(
            method="GET",
            query=(*query.items(), ("echostr", encrypt)),
            body=b"",
            chunked=False,
            plaintext=plaintext if authentic else None,
            must_accept=authentic and tamper == "none",
            label=f"verify/{tamper}",
        )
    shape = draw(st.sampled_from(ENVELOPE_SHAPES))
    body = _envelope_body(draw, shape, encrypt, ctx.max_bytes)
    must = (
        authentic
        and tamper == "none"
        and wecom_like
        and shape in CLEAN_SHAPES
        and len(body) <= ctx.max_bytes
    )
    return Delivery(
        method="POST",
        query=tuple(query.items()),
        body=body,
        chunked=draw(st.booleans()),
        plaintext=plaintext if authentic else None,
        must_accept=must,
        label=f"{shape}/{tamper}",
    )


# -- replay ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Replay:
    """A genuine delivery sent at `sent_skew` from its timestamp, then replayed byte for
    byte at each of `within` (inside the window) and at `outside` (past it)."""

    plaintext: bytes
    random16: bytes
    nonce: str
    sent_skew: int
    within: tuple[int, ...]
    outside: int


@st.composite
def replays(draw: st.DrawFn, tolerance: int) -> Replay:
    late = st.integers(tolerance + 1, 10**7)
    return Replay(
        plaintext=draw(wecom_messages),
        random16=draw(st.binary(min_size=16, max_size=16)),
        nonce=draw(st.text(st.characters(codec="ascii", categories=["L", "N"]), min_size=1)),
        sent_skew=draw(st.integers(-tolerance, tolerance)),
        within=tuple(draw(st.lists(st.integers(-tolerance, tolerance), min_size=1, max_size=3))),
        outside=draw(st.one_of(late, late.map(lambda n: -n))),
    )


# -- the harness ----------------------------------------------------------------------------


class _ParserSpy:
    """Stands in for the parser in bot.gateway.xmlsafe: records what reaches it, and
    whether a DTD ever did (the parser's refusal is the last line, not the first)."""

    def __init__(self, real: Callable[[bytes], dict[str, Any]]) -> None:
        self.real = real
        self.sizes: list[int] = []
        self.inputs: list[bytes] = []
        self.dtd_reached = 0

    def __call__(self, data: bytes) -> dict[str, Any]:
        self.sizes.append(len(data))
        self.inputs.append(data)
        try:
            return self.real(data)
        except xmlsafe.ForbiddenConstruct:
            self.dtd_reached += 1
            raise


def _no_wecom(request: httpx.Request) -> httpx.Response:
    # The gateway never calls WeCom; the background workers that do are not started.
    return httpx.Response(503)


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(data), 1000):
        yield data[start : start + 1000]


class CallbackHarness:
    """The bot's ASGI app over one database and frozen clock, with the parser spied on.

    Use as a context manager: it owns an event loop and patches bot.gateway.xmlsafe for
    its lifetime.
    """

    def __init__(self, db: Database, clock: FrozenClock) -> None:
        self.db = db
        self.clock = clock
        self.base = clock.now()
        settings = build_settings(
            None,
            {
                "BOT_WECOM__CORP_ID": CORP_ID,
                "BOT_WECOM__AGENT_ID": "1000002",
                "BOT_WECOM__SECRET": "fuzz-secret-0123456789abcdefghijklmnopqrstu",
                "BOT_WECOM__TOKEN": TOKEN,
                "BOT_WECOM__ENCODING_AES_KEY": AES_KEY,
            },
        )
        self.max_bytes = settings.callback.max_body_bytes
        self.tolerance = settings.callback.timestamp_tolerance_seconds
        self.crypto = WeComCrypto(TOKEN, AES_KEY, CORP_ID)
        self.bot: BotApp = create_app(
            settings, clock=clock, transport=httpx.MockTransport(_no_wecom), db=db
        )
        self.runner = asyncio.Runner()
        self.http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.bot.asgi), base_url="http://bot.test"
        )
        self.spy = _ParserSpy(xmlsafe.parse_tree)

    def __enter__(self) -> CallbackHarness:
        vars(xmlsafe)["parse_tree"] = self.spy
        return self

    def __exit__(self, *exc: object) -> None:
        vars(xmlsafe)["parse_tree"] = self.spy.real
        self.clock.set(self.base)
        self.runner.run(self.http.aclose())
        self.runner.run(self.bot.wecom.aclose())
        self.runner.close()

    def seal_context(self) -> SealContext:
        return SealContext(self.crypto, int(self.base.timestamp()), self.tolerance, self.max_bytes)

    # -- database views --

    def rows(self) -> int:
        query = select(func.count()).select_from(InboxEvent)
        return self.db.call(lambda s: s.execute(query).scalar_one())

    def payload(self, key: str) -> bytes | None:
        query = select(InboxEvent.payload).where(InboxEvent.dedupe_key == key)
        return self.db.call(lambda s: s.scalar(query))

    # -- requests --

    def send(self, case: Delivery) -> httpx.Response:
        async def go() -> httpx.Response:
            if case.method == "GET":
                return await self.http.get(CALLBACK_PATH, params=case.query)
            content = _chunks(case.body) if case.chunked else case.body
            return await self.http.post(CALLBACK_PATH, params=case.query, content=content)

        with bounded(REQUEST_SECONDS, "one callback request"):
            return self.runner.run(go())

    # -- properties --

    def check(self, case: Delivery) -> str:
        """Send `case` and check every property; returns an outcome label for counting."""
        before = self.rows()
        key = dedupe_key(case.plaintext) if case.plaintext is not None else None
        known = key is not None and self.payload(key) is not None
        self.spy.sizes.clear()
        self.spy.inputs.clear()
        response = self.send(case)
        status = response.status_code
        assert status in ALLOWED, f"status {status}"
        added = self.rows() - before
        if status != 200:
            assert added == 0, "a refused request stored a row"
        elif case.method == "GET":
            assert case.plaintext is not None, "an inauthentic echostr was answered"
            assert response.content == case.plaintext
            assert added == 0
        else:
            assert case.plaintext is not None, "an inauthentic body was stored"
            assert key is not None
            assert response.content == b""
            assert added == (0 if known else 1)
            assert self.payload(key) == case.plaintext
        if case.must_accept:
            assert status == 200, f"a genuine {case.label} delivery was refused with {status}"
        # Nothing over the cap and no DTD ever reaches the XML parser.
        assert all(size <= self.max_bytes for size in self.spy.sizes)
        assert self.spy.dtd_reached == 0, "a DTD reached the parser"
        if case.method == "POST" and len(case.body) > self.max_bytes:
            assert status == 413
            assert not self.spy.sizes
        elif case.method == "POST" and dtd_like(case.body):
            assert status == 400
            assert case.body not in self.spy.inputs
        if case.plaintext is not None and dtd_like(case.plaintext):
            # Authentic, but a DTD: refused, and never parsed (a GET echoes it unparsed).
            assert status != 200 or case.method == "GET"
            assert case.plaintext not in self.spy.inputs
        return f"{case.label}:{status}"

    def check_replay(self, case: Replay) -> str:
        """A captured delivery replayed in the window is a no-op with the same response;
        replayed outside it, it is refused. Either way no second row."""
        timestamp = int(self.base.timestamp())
        envelope: Envelope = self.crypto.seal(
            case.plaintext, timestamp=str(timestamp), nonce=case.nonce, random16=case.random16
        )
        delivery = Delivery(
            method="POST",
            query=tuple(envelope.query().items()),
            body=envelope.callback_xml(CORP_ID, "1000002").encode(),
            chunked=False,
            plaintext=case.plaintext,
            must_accept=True,
            label="replay",
        )
        try:
            self._at(timestamp + case.sent_skew)
            self.check(delivery)
            rows = self.rows()
            for skew in case.within:
                self._at(timestamp + skew)
                again = self.send(delivery)
                assert (again.status_code, again.content) == (200, b"")
                assert self.rows() == rows, "a replay in the window stored a second row"
            self._at(timestamp + case.outside)
            late = self.send(delivery)
            assert late.status_code == 403, f"a replay outside the window got {late.status_code}"
            assert self.rows() == rows
        finally:
            self.clock.set(self.base)
        return "replay"

    def _at(self, timestamp: int) -> None:
        self.clock.set(self.base + timedelta(seconds=timestamp - self.base.timestamp()))


def sealed_strategy(harness: CallbackHarness) -> st.SearchStrategy[Delivery]:
    return sealed_deliveries(harness.seal_context())
