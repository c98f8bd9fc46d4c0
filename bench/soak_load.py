"""The soak's callback load: signed, encrypted callbacks at a steady rate (open loop).

WeCom does not slow down when the bot does, so requests are sent on a fixed schedule
(request i at start + i / rate, alternating between the instances) over pools of
keep-alive HTTP/1.1 connections, whatever the answers take. Each callback is sealed
when its time comes (its timestamp must be fresh) and carries a distinct message, so its
dedupe key (sha256 of the plaintext, as the gateway computes it) names exactly one inbox
row. Most are members' text messages to the app; a small share are edit_external_contact
events on real relations, whose handler reads the customer from WeCom and retags them.

Recorded per callback: when it was due, when it was written, when the answer was read,
the HTTP status (or "timeout" / "closed"), and the dedupe key. When the instances answer
more slowly than the schedule, due callbacks wait for a free connection; those still
waiting when the load's time is up are counted as not sent, so the soak lasts its length
and the achieved rate is what the instances took. Run as a child process of
bench/soak.py (so its CPU is its own):

    .venv/bin/python -m bench.soak_load --ports P1,P2 --rate 500 --seconds 600 \
        --members a,b --relations FILE --out DIR
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

from bench.callbacks import AES_KEY, CORP_ID, TOKEN
from bot.clock import SystemClock
from bot.gateway.crypto import WeComCrypto
from bot.gateway.inbox import dedupe_key
from bot.sandbox.events import contact_event

AGENT_ID = "1000002"
# WeCom gives up on a callback answer after 5 s (and retries it later).
ANSWER_TIMEOUT = 5.0
CONNECTIONS_PER_PORT = 48
WINDOW = 30.0  # seconds per row of the latency timeline
# The summary file and the acknowledged dedupe keys (one per line) in --out.
SUMMARY = "load.json"
ACKED = "acked.txt"


@dataclass
class Outcome:
    """One callback: seconds since the load's start, its status, its dedupe key."""

    due: float
    written: float
    answered: float
    status: str
    key: str
    kind: str


@dataclass
class Recorder:
    outcomes: list[Outcome] = field(default_factory=list)
    reconnects: int = 0
    # Due callbacks still waiting for a free connection when the load's time was up.
    unsent: int = 0


class Sealer:
    """Builds callbacks as WeCom sends them: plaintext, then encrypted and signed."""

    def __init__(
        self, members: list[str], relations: list[tuple[str, str]], contact_share: float
    ) -> None:
        self.crypto = WeComCrypto(TOKEN, AES_KEY, CORP_ID)
        self.clock = SystemClock()
        self.members = members
        self.relations = relations
        self.contact_share = contact_share if relations else 0.0
        self.rng = random.Random(20261122)

    def plaintext(self, i: int) -> tuple[str, str]:
        """(kind, plaintext) of callback number i."""
        now = int(self.clock.timestamp())
        if self.contact_share and self.rng.random() < self.contact_share:
            userid, external_userid = self.rng.choice(self.relations)
            xml = contact_event(
                CORP_ID,
                now,
                "edit_external_contact",
                userid=userid,
                external_userid=external_userid,
            )
            return "edit_external_contact", xml
        member = self.members[i % len(self.members)]
        xml = (
            f"<xml><ToUserName><![CDATA[{CORP_ID}]]></ToUserName>"
            f"<FromUserName><![CDATA[{member}]]></FromUserName>"
            f"<CreateTime>{now}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
            f"<Content><![CDATA[soak message {i}]]></Content>"
            f"<MsgId>{8000000000000000000 + i}</MsgId><AgentID>{AGENT_ID}</AgentID></xml>"
        )
        return "text", xml

    def request(self, i: int, port: int) -> tuple[bytes, str, str]:
        """(HTTP request bytes, dedupe key, kind) of callback number i."""
        kind, plaintext = self.plaintext(i)
        raw = plaintext.encode("utf-8")
        envelope = self.crypto.seal(
            raw, timestamp=str(int(self.clock.timestamp())), nonce=f"soak{i}"
        )
        body = envelope.callback_xml(CORP_ID, AGENT_ID).encode()
        head = (
            f"POST /wecom/callback?{urlencode(envelope.query())} HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{port}\r\nContent-Type: text/xml\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        return head + body, dedupe_key(raw), kind


class Connection:
    """One keep-alive connection; reopened when the server closed it or it timed out."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def exchange(self, request: bytes) -> str:
        """Send one request, read its answer; the status code, or "closed"."""
        if self.writer is None or self.reader is None:
            await self.open()
        assert self.writer is not None
        assert self.reader is not None
        self.writer.write(request)
        await self.writer.drain()
        status_line = await self.reader.readline()
        if not status_line:
            return "closed"
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        if length:
            await self.reader.readexactly(length)
        parts = status_line.split()
        return parts[1].decode() if len(parts) > 1 else "closed"


class Load:
    """Sends callback i at start + i / rate to ports[i % len(ports)]."""

    def __init__(self, ports: list[int], rate: float, seconds: float, sealer: Sealer) -> None:
        self.ports = ports
        self.rate = rate
        self.total = int(rate * seconds)
        self.seconds = seconds
        self.sealer = sealer
        self.idle: dict[int, asyncio.Queue[Connection]] = {}
        self.recorder = Recorder()
        self.start = 0.0

    async def run(self) -> Recorder:
        for port in self.ports:
            queue: asyncio.Queue[Connection] = asyncio.Queue()
            for _ in range(CONNECTIONS_PER_PORT):
                connection = Connection(port)
                await connection.open()
                queue.put_nowait(connection)
            self.idle[port] = queue
        self.start = time.perf_counter()
        pending: set[asyncio.Task[None]] = set()
        for i in range(self.total):
            due = i / self.rate
            delay = self.start + due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(self._one(i, due))
            pending.add(task)
            task.add_done_callback(pending.discard)
        if pending:
            await asyncio.wait(pending)
        for queue in self.idle.values():
            while not queue.empty():
                queue.get_nowait().close()
        return self.recorder

    async def _one(self, i: int, due: float) -> None:
        port = self.ports[i % len(self.ports)]
        queue = self.idle[port]
        connection = await queue.get()
        if time.perf_counter() - self.start > self.seconds:
            # The soak lasts its length: what the instances could not take by then is
            # counted as not sent (the generator's backlog), not sent late.
            queue.put_nowait(connection)
            self.recorder.unsent += 1
            return
        request, key, kind = self.sealer.request(i, port)
        written = time.perf_counter() - self.start
        status = await self._exchange(connection, request)
        answered = time.perf_counter() - self.start
        queue.put_nowait(connection)
        self.recorder.outcomes.append(Outcome(due, written, answered, status, key, kind))

    async def _exchange(self, connection: Connection, request: bytes) -> str:
        try:
            status = await asyncio.wait_for(connection.exchange(request), ANSWER_TIMEOUT)
        except TimeoutError:
            connection.close()
            return "timeout"
        except OSError:
            status = "closed"
        if status == "closed":
            # The server closed an idle keep-alive connection before reading the request:
            # nothing was stored, so sending it again on a new connection is what WeCom's
            # retry would do (and the dedupe key makes a repeat harmless).
            self.recorder.reconnects += 1
            connection.close()
            try:
                status = await asyncio.wait_for(connection.exchange(request), ANSWER_TIMEOUT)
            except TimeoutError:
                connection.close()
                return "timeout"
            except OSError as exc:
                connection.close()
                return f"error:{type(exc).__name__}"
        return status


def _quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summarise(recorder: Recorder, rate: float, seconds: float) -> dict[str, object]:
    """What bench/soak.py reads back: counts, latency quantiles, per-second acks."""
    outcomes = recorder.outcomes
    acked = [o for o in outcomes if o.status == "200"]
    ack_ms = [(o.answered - o.written) * 1000 for o in acked]
    from_due_ms = [(o.answered - o.due) * 1000 for o in acked]
    lag_ms = [(o.written - o.due) * 1000 for o in outcomes]
    last = max((o.answered for o in acked), default=0.0)
    # Whole seconds of the load only: the first and the last are partly outside it.
    end = min(int(last), int(seconds))
    per_second = Counter(int(o.answered) for o in acked if 1 <= o.answered < end)
    return {
        "target_rate": rate,
        "seconds": seconds,
        "due": len(outcomes) + recorder.unsent,
        "sent": len(outcomes),
        "unsent": recorder.unsent,
        "acked": len(acked),
        "statuses": dict(Counter(o.status for o in outcomes)),
        "kinds": dict(Counter(o.kind for o in outcomes)),
        "reconnects": recorder.reconnects,
        "cpu_seconds": time.process_time(),
        "elapsed": last,
        "achieved_rate": len(acked) / seconds if seconds else 0.0,
        "ack_ms": {q: _quantile(ack_ms, p) for q, p in (("p50", 0.5), ("p99", 0.99))}
        | {"max": max(ack_ms, default=float("nan"))},
        "from_due_ms": {q: _quantile(from_due_ms, p) for q, p in (("p50", 0.5), ("p99", 0.99))},
        "lag_ms": {q: _quantile(lag_ms, p) for q, p in (("p50", 0.5), ("p99", 0.99))},
        "over_100ms": sum(1 for v in ack_ms if v >= 100),
        "per_second_min": min(per_second.values(), default=0),
        "per_second_max": max(per_second.values(), default=0),
        "windows": windows(acked, WINDOW),
    }


def windows(acked: list[Outcome], width: float) -> list[dict[str, float]]:
    """Acknowledgements and their latency per `width` seconds of the run (by answer time):
    where in the run the slow ones were."""
    buckets: dict[int, list[float]] = {}
    for o in acked:
        buckets.setdefault(int(o.answered // width), []).append((o.answered - o.written) * 1000)
    return [
        {
            "start": index * width,
            "acked": len(values),
            "p50_ms": _quantile(values, 0.5),
            "p99_ms": _quantile(values, 0.99),
        }
        for index, values in sorted(buckets.items())
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ports", required=True, help="comma-separated bot ports")
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--members", required=True, help="comma-separated member userids")
    parser.add_argument("--relations", type=Path, help="JSON [[userid, external_userid], …]")
    parser.add_argument("--contact-share", type=float, default=0.002)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    relations: list[tuple[str, str]] = []
    if args.relations is not None:
        relations = [(u, e) for u, e in json.loads(args.relations.read_text())]
    sealer = Sealer(args.members.split(","), relations, args.contact_share)
    ports = [int(p) for p in args.ports.split(",")]
    recorder = asyncio.run(Load(ports, args.rate, args.seconds, sealer).run())
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / ACKED).write_text(
        "".join(f"{o.key}\n" for o in recorder.outcomes if o.status == "200"), encoding="utf-8"
    )
    summary = summarise(recorder, args.rate, args.seconds)
    (args.out / SUMMARY).write_text(json.dumps(summary, indent=2), encoding="utf-8")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
