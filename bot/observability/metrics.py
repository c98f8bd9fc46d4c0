"""`GET /metrics`: the process's counters and the database's gauges in Prometheus text format.

Counters live where the work happens (gateway, inbox processor, outbox sender, WeCom
client, rate limiter) and are only read here; the database figures are read per scrape.
The endpoint exposes operational data only, and only to a bearer of `server.admin_token`:
with no token configured it answers 404, as if it did not exist.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from pydantic import SecretStr
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bot.clock import Clock
from bot.gateway.endpoint import GatewayCounters
from bot.gateway.processor import ProcessorCounters
from bot.observability.status import Status, read_status
from bot.outbox.sender import SenderStats
from bot.store.db import Database
from bot.wecom.client import ClientStats
from bot.wecom.ratelimit import BucketUsage, RateLimiter

if TYPE_CHECKING:
    from bot.app import BotApp

log = logging.getLogger(__name__)

METRICS_PATH = "/metrics"

# Gateway rejection reasons as operators group them; others keep the gateway's own name.
REJECT_REASONS = {
    "bad_signature": "signature",
    "stale_timestamp": "timestamp",
    "bad_xml": "xml",
    "bad_message": "xml",
    "too_large": "size",
}


@dataclass(frozen=True)
class Sources:
    """Where the in-process counters are kept."""

    gateway: GatewayCounters
    processor: ProcessorCounters
    sender: SenderStats
    client: ClientStats
    limiter: RateLimiter


def bearer_matches(header: str, token: str) -> bool:
    """Whether an Authorization header carries `token` as a bearer token. The comparison
    takes the same time wherever the first difference is."""
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer":
        given = ""
    return hmac.compare_digest(given.strip().encode("utf-8"), token.encode("utf-8"))


class MetricsEndpoint:
    """The /metrics route: authentication, one database read, rendering."""

    def __init__(self, token: SecretStr, db: Database, clock: Clock, sources: Sources) -> None:
        self._token = token
        self.db = db
        self.clock = clock
        self.sources = sources

    async def endpoint(self, request: Request) -> Response:
        token = self._token.get_secret_value()
        if not token:
            return Response(status_code=404)
        if not bearer_matches(request.headers.get("authorization", ""), token):
            return Response(status_code=401, headers={"WWW-Authenticate": 'Bearer realm="bot"'})
        now = self.clock.now()
        status: Status | None
        try:
            # No recent callbacks: a scrape needs counts and ages, not a list.
            status = await self.db.run(lambda s: read_status(s, now, recent=0))
        except Exception:  # a scrape still reports the process's counters
            log.exception("metrics: database figures could not be read")
            status = None
        # On the loop: the in-memory limiter is not thread-safe (a database-backed one reads
        # its table here, one short query per scrape).
        usage = self.sources.limiter.usage()
        return Response(render(self.sources, status, usage), media_type=CONTENT_TYPE_LATEST)


def metrics_route(bot: BotApp) -> Route:
    """`GET /metrics` over the bot's own counters and database."""
    sources = Sources(
        gateway=bot.gateway.counters,
        processor=bot.processor.counters,
        sender=bot.sender.stats,
        client=bot.wecom.stats,
        limiter=bot.wecom.limiter,
    )
    endpoint = MetricsEndpoint(bot.settings.server.admin_token, bot.db, bot.clock, sources)
    return Route(METRICS_PATH, endpoint.endpoint, methods=["GET"])


def render(
    sources: Sources, status: Status | None, usage: dict[str, BucketUsage] | None = None
) -> bytes:
    """The exposition text for these counters, database figures and quota usage."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(sources, status, usage or {}))
    return generate_latest(registry)


class _Collector:
    """A one-shot collector over a snapshot (prometheus_client asks it at render time)."""

    def __init__(
        self, sources: Sources, status: Status | None, usage: dict[str, BucketUsage]
    ) -> None:
        self.sources = sources
        self.status = status
        self.usage = usage

    def collect(self) -> Iterable[Metric]:
        yield from _gateway(self.sources.gateway)
        yield from _processor(self.sources.processor)
        yield from _sender(self.sources.sender)
        yield from _client(self.sources.client)
        yield from _quota(self.usage)
        up = GaugeMetricFamily("bot_database_up", "1 if the last scrape read the database")
        up.add_metric([], 1.0 if self.status is not None else 0.0)
        yield up
        if self.status is not None:
            yield from _database(self.status)


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


def _labelled(
    name: str, doc: str, label: str, values: Iterable[tuple[str, float]], *, gauge: bool = False
) -> Metric:
    family: CounterMetricFamily | GaugeMetricFamily
    if gauge:
        family = GaugeMetricFamily(name, doc, labels=[label])
    else:
        family = CounterMetricFamily(name, doc, labels=[label])
    for key, value in sorted(values):
        family.add_metric([key], value)
    return family


def _gateway(c: GatewayCounters) -> Iterator[Metric]:
    yield _counter("bot_callbacks_received", "Callback deliveries received (POST)", c.received)
    yield _counter(
        "bot_callbacks_stored", "Callbacks stored in the inbox for the first time", c.stored
    )
    yield _counter(
        "bot_callbacks_deduped", "Callbacks already stored (WeCom retries)", c.duplicates
    )
    yield _counter("bot_callback_url_verifications", "Successful URL verifications", c.verified)
    reasons: dict[str, float] = {}
    for reason, n in c.rejected.items():
        grouped = REJECT_REASONS.get(reason, reason)
        reasons[grouped] = reasons.get(grouped, 0) + n
    yield _labelled(
        "bot_callbacks_rejected", "Callbacks refused, by reason", "reason", reasons.items()
    )


def _processor(c: ProcessorCounters) -> Iterator[Metric]:
    outcomes = {
        "done": c.processed,
        "unhandled": c.unhandled,
        "retry": c.retried,
        "failed": c.failed,
    }
    yield _labelled(
        "bot_inbox_events", "Inbox rows handled, by outcome", "outcome", outcomes.items()
    )
    yield _counter("bot_inbox_observer_errors", "Observer failures", c.observer_errors)
    yield _counter("bot_inbox_lost_leases", "Outcomes dropped after a lost lease", c.lost_leases)


def _sender(s: SenderStats) -> Iterator[Metric]:
    outcomes = {
        "sent": s.sent,
        "reconciled": s.reconciled,
        "failed": s.failed,
        "dead": s.dead,
        "expired": s.expired,
        "retried": s.retried,
        "deferred": s.deferred,
    }
    yield _labelled(
        "bot_outbox_rows", "Outbox row outcomes, by outcome", "outcome", outcomes.items()
    )
    yield _labelled(
        "bot_outbox_errcodes",
        "WeCom errcodes met by the outbox sender",
        "errcode",
        ((str(code), n) for code, n in s.by_errcode.items()),
    )


def _client(s: ClientStats) -> Iterator[Metric]:
    yield _labelled("bot_wecom_calls", "WeCom API calls made, by path", "path", s.calls.items())
    responses = CounterMetricFamily(
        "bot_wecom_responses",
        "WeCom answers by path and errcode (0 is success; -1001: no WeCom answer)",
        labels=["path", "errcode"],
    )
    for (path, code), n in sorted(s.responses.items()):
        responses.add_metric([path, str(code)], n)
    yield responses
    yield _labelled("bot_wecom_retries", "Client retries, by path", "path", s.retries.items())
    yield _labelled(
        "bot_wecom_transport_errors",
        "Calls that got no HTTP answer, by path",
        "path",
        s.transport_errors.items(),
    )
    yield _counter("bot_wecom_token_refused", "Calls refused for the access token", s.token_refused)


def _quota(usage: dict[str, BucketUsage]) -> Iterator[Metric]:
    used = GaugeMetricFamily(
        "bot_wecom_quota_used", "Calls in the current sliding window", labels=["path", "window"]
    )
    limit = GaugeMetricFamily(
        "bot_wecom_quota_limit", "The bot's own cap per window", labels=["path", "window"]
    )
    paused = GaugeMetricFamily(
        "bot_wecom_quota_paused_seconds", "Seconds left of a 45009 pause", labels=["path"]
    )
    for path, bucket in usage.items():
        used.add_metric([path, "minute"], bucket.minute)
        used.add_metric([path, "hour"], bucket.hour)
        limit.add_metric([path, "minute"], bucket.minute_limit)
        limit.add_metric([path, "hour"], bucket.hour_limit)
        paused.add_metric([path], bucket.paused_seconds)
    yield from (used, limit, paused)


def _database(status: Status) -> Iterator[Metric]:
    yield _labelled(
        "bot_outbox_open",
        "Open outbox rows (pending, sending, verify), by kind",
        "kind",
        ((b.kind, b.open) for b in status.outbox),
        gauge=True,
    )
    yield _labelled(
        "bot_outbox_oldest_open_age_seconds",
        "Age of the oldest open outbox row, by kind",
        "kind",
        ((b.kind, b.oldest_age_seconds) for b in status.outbox),
        gauge=True,
    )
    yield _labelled(
        "bot_inbox_rows",
        "Inbox rows, by status",
        "status",
        status.inbox_by_status.items(),
        gauge=True,
    )
    backlog = GaugeMetricFamily("bot_inbox_backlog", "Inbox rows pending or being processed")
    backlog.add_metric([], status.inbox_backlog)
    yield backlog
    oldest = GaugeMetricFamily(
        "bot_inbox_oldest_pending_age_seconds", "Age of the oldest unprocessed inbox row"
    )
    oldest.add_metric([], status.inbox_oldest_pending_age_seconds or 0.0)
    yield oldest
    yield _counter("bot_mass_tasks_created", "Mass-send tasks created", status.tasks_total.created)
    yield _counter(
        "bot_mass_tasks_confirmed", "Mass-send tasks confirmed", status.tasks_total.confirmed
    )
    yield _labelled(
        "bot_mass_tasks",
        "Mass-send tasks, by status",
        "status",
        status.tasks_by_status.items(),
        gauge=True,
    )
    expiries = [t.expires_in_seconds for t in status.tokens if t.expires_in_seconds is not None]
    if expiries:
        token = GaugeMetricFamily(
            "bot_wecom_token_expires_in_seconds", "Seconds until the cached access token expires"
        )
        token.add_metric([], min(expiries))
        yield token


__all__ = [
    "METRICS_PATH",
    "MetricsEndpoint",
    "Sources",
    "bearer_matches",
    "metrics_route",
    "render",
]
