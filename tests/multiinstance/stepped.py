"""Virtual time for several tasks at once (helpers, no tests).

`SteppedClock.sleep` parks the caller; `drive` moves time to the next wake-up only when every
unfinished task is parked. So time stands still while any task is working (a database round
trip included), and a timestamp read right after a call is the time the call was decided at.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
from collections.abc import Iterable
from datetime import datetime, timedelta

from bot.clock import FrozenClock


class SteppedClock(FrozenClock):
    def __init__(self, start: datetime) -> None:
        super().__init__(start)
        self._parked: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self._changed: asyncio.Event | None = None

    def _event(self) -> asyncio.Event:
        if self._changed is None:
            self._changed = asyncio.Event()
        return self._changed

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        wake = self.timestamp() + max(seconds, 0.0)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._parked, (wake, next(self._order), future))
        self._event().set()
        await future

    async def drive(self, tasks: Iterable[asyncio.Task[None]]) -> None:
        """Run `tasks` to the end, moving time only when all of them are parked."""
        tasks = list(tasks)
        pending = set(tasks)
        changed = self._event()
        for task in pending:
            task.add_done_callback(lambda _task: changed.set())
        while pending:
            pending = {task for task in pending if not task.done()}
            if not pending:
                break
            if len(self._parked) < len(pending):
                changed.clear()
                await changed.wait()
                continue
            wake = self._parked[0][0]
            if wake > self.timestamp():
                # Whole microseconds, rounded up: the clock counts no finer.
                self.advance(timedelta(microseconds=math.ceil((wake - self.timestamp()) * 1e6)))
            while self._parked and self._parked[0][0] <= self.timestamp() + 1e-6:
                heapq.heappop(self._parked)[2].set_result(None)
            await asyncio.sleep(0)
        for task in tasks:
            task.result()  # re-raise what a task raised
