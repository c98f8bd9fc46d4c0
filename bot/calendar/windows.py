"""Contact windows: the hours some customers and groups may be reached (seniors: 9-11,
14-17, 20-22 by default), and where a post outside them goes: a later window the same day,
or nowhere."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, time


@dataclass(frozen=True)
class Span:
    start: time
    end: time

    def holds(self, moment: time) -> bool:
        return self.start <= moment < self.end


def parse_spans(hours: Sequence[str]) -> tuple[Span, ...]:
    """ "09:00-11:00" strings (validated by the config) as spans, in order."""
    spans = []
    for text in hours:
        start, _, end = text.partition("-")
        spans.append(Span(time.fromisoformat(start), time.fromisoformat(end)))
    return tuple(sorted(spans, key=lambda s: s.start))


def inside(spans: Sequence[Span], at: datetime) -> bool:
    moment = at.timetz().replace(tzinfo=None)
    return any(span.holds(moment) for span in spans)


def next_opening(spans: Sequence[Span], at: datetime) -> datetime | None:
    """The start of the next window later the same day, or None when the day's windows
    are over (a post is never carried into the next day: the theme belongs to its day)."""
    moment = at.timetz().replace(tzinfo=None)
    for span in spans:
        if span.start > moment:
            return at.replace(
                hour=span.start.hour, minute=span.start.minute, second=0, microsecond=0
            )
    return None
