"""Delivering signed callbacks to `bot serve` as WeCom does, recording each one's answer.

The requests are bench.callbacks' (distinct employee text messages, sealed with the bench
credentials, MsgId 7000000000000000000 + index). Each connection sends one request at a
time on keep-alive and records the status line it gets back, or None when the server died
before answering.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bench.callbacks import http_requests

MSGID_BASE = 7_000_000_000_000_000_000
_MSGID = re.compile(rb"<MsgId>(\d+)</MsgId>")

__all__ = ["Delivery", "deliver", "http_requests", "msgid_index"]


@dataclass(frozen=True)
class Delivery:
    index: int
    status: int | None  # None: no answer (the connection died)
    at: float  # time.monotonic() of the answer (or of the failure)


def msgid_index(payload: bytes) -> int:
    """Which request a stored inbox payload came from."""
    found = _MSGID.search(payload)
    assert found is not None, payload[:200]
    return int(found.group(1)) - MSGID_BASE


async def _worker(
    port: int,
    queue: list[tuple[int, bytes]],
    out: list[Delivery],
    on_answer: Callable[[Delivery], None] | None,
    pace: float,
    stop: Callable[[], bool] | None,
) -> None:
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return
    try:
        while queue and not (stop is not None and stop()):
            index, request = queue.pop()
            delivery = Delivery(index, await _exchange(reader, writer, request), time.monotonic())
            out.append(delivery)
            if on_answer is not None:
                on_answer(delivery)
            if delivery.status is None:
                return  # the server is gone; the rest stay unsent
            if pace:
                await asyncio.sleep(pace)
    finally:
        writer.close()


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> int | None:
    try:
        writer.write(request)
        await writer.drain()
        status_line = await reader.readline()
        if not status_line:
            return None
        length = 0
        while True:
            line = await reader.readline()
            if line in (b"\r\n", b""):
                break
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        if length:
            await reader.readexactly(length)
        return int(status_line.split()[1])
    except (OSError, asyncio.IncompleteReadError):
        return None


async def deliver(
    port: int,
    requests: Sequence[tuple[int, bytes]],
    *,
    connections: int,
    on_answer: Callable[[Delivery], None] | None = None,
    pace: float = 0.0,
    stop: Callable[[], bool] | None = None,
) -> list[Delivery]:
    """Post `requests` (index, raw HTTP request) over `connections` connections; each
    connection waits `pace` seconds between requests and stops when `stop()` says so."""
    queue = list(reversed(requests))
    out: list[Delivery] = []
    await asyncio.gather(
        *(_worker(port, queue, out, on_answer, pace, stop) for _ in range(connections))
    )
    return out
