"""Logging set-up: text for people or one JSON object per line, mobile numbers masked in both.

Structured fields travel as `extra=` on a log call (`log.info("…", extra=inbox_fields(…))`);
the JSON format writes each one as a key of its own, the text format leaves them out.
Customers appear in those fields only as `bot.privacy.hash_id` digests.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import IO, Any, Literal

from bot.privacy import ScrubFilter, hash_id, scrub

LogFormat = Literal["text", "json"]

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD_ATTRIBUTES = frozenset(
    logging.LogRecord("", logging.INFO, "", 0, "", None, None).__dict__
) | {"message", "asctime", "color_message"}


def inbox_fields(
    dedupe_key: str,
    msg_type: str,
    event: str | None,
    change_type: str | None,
    customer: str | None = None,
) -> dict[str, Any]:
    """The fields of one inbox event: key prefix, event type and the hashed customer id."""
    return {
        "inbox_key": dedupe_key[:12],
        "msg_type": msg_type,
        "event": event,
        "change_type": change_type,
        "customer": hash_id(customer) if customer else None,
    }


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts, level, logger, message, then the record's extras.

    Every string written is scrubbed of mobile numbers, extras included, since an extra
    bypasses the message that ScrubFilter cleans.
    """

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": scrub(record.getMessage()),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRIBUTES and not key.startswith("_") and key not in line:
                line[key] = _plain(value)
        if record.exc_info:
            line["exc"] = scrub(self.formatException(record.exc_info))
        elif record.exc_text:
            line["exc"] = scrub(record.exc_text)
        if record.stack_info:
            line["stack"] = scrub(self.formatStack(record.stack_info))
        return json.dumps(line, ensure_ascii=False, default=str)


def _plain(value: Any) -> Any:
    """A JSON-ready copy of an extra, strings scrubbed."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    return scrub(str(value))


def make_handler(fmt: LogFormat = "text", stream: IO[str] | None = None) -> logging.Handler:
    """A stream handler in `fmt`, with the mobile-number filter applied."""
    handler = logging.StreamHandler(stream or sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(ScrubFilter())
    return handler


def setup_logging(
    level: str = "INFO", *, fmt: LogFormat = "text", stream: IO[str] | None = None
) -> None:
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(make_handler(fmt, stream))
    root.setLevel(level)
    # Third-party request logs would carry URLs with access tokens in the query.
    for noisy in ("httpx", "httpcore", "apscheduler", "uvicorn.access", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
