"""Structured logs: one JSON object per line, with event fields and hashed customer ids only."""

from __future__ import annotations

import json
import logging
from io import StringIO
from typing import Any

from sqlalchemy import text

from bot.config import build_settings
from bot.logs import JsonFormatter, inbox_fields, make_handler, setup_logging
from bot.privacy import ScrubFilter, hash_id
from bot.sandbox.script import NewCustomer
from bot.store.models import InboxEvent
from tests.integration.conftest import ZHANG, World

NAME = "欧阳娜娜"
MOBILE = "13912345678"


def lines(buffer: StringIO) -> list[dict[str, Any]]:
    """Every line written, each parsed as JSON (a line that is not JSON fails here)."""
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


def test_a_record_becomes_one_json_line_with_its_extras() -> None:
    buffer = StringIO()
    logger = logging.getLogger("tests.observability.one")
    handler = make_handler("json", buffer)
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning(
            "row %d: call %s\nsecond line",
            7,
            MOBILE,
            extra=inbox_fields("a" * 64, "event", "change_external_contact", None, "wmRAW"),
        )
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    [line] = buffer.getvalue().splitlines()
    record = json.loads(line)
    assert record["ts"].endswith("+00:00")
    assert "T" in record["ts"]
    assert record["level"] == "WARNING"
    assert record["logger"] == "tests.observability.one"
    assert record["message"] == "row 7: call 139****5678\nsecond line"
    assert record["inbox_key"] == "a" * 12
    assert (record["msg_type"], record["event"], record["change_type"]) == (
        "event",
        "change_external_contact",
        None,
    )
    assert record["customer"] == hash_id("wmRAW")
    assert "wmRAW" not in line


def test_extras_and_tracebacks_are_scrubbed_of_mobiles() -> None:
    formatter = JsonFormatter()
    try:
        raise ValueError(f"lookup failed for {MOBILE}")
    except ValueError as exc:
        record = logging.LogRecord(
            "x", logging.ERROR, __file__, 1, "failed", None, (type(exc), exc, exc.__traceback__)
        )
    record.note = f"call +86 {MOBILE[:3]} {MOBILE[3:7]} {MOBILE[7:]}"
    record.items = [MOBILE, {"inner": MOBILE}]
    line = formatter.format(record)
    assert MOBILE not in line
    assert "1391234" not in line
    parsed = json.loads(line)
    assert parsed["note"] == "call 139****5678"
    assert parsed["items"] == ["139****5678", {"inner": "139****5678"}]
    assert "ValueError: lookup failed for 139****5678" in parsed["exc"]


def test_setup_logging_installs_the_chosen_format_with_the_scrub_filter(
    json_log: StringIO,
) -> None:
    # pytest's own capture handler joins the root logger once the test runs.
    [handler] = [h for h in logging.getLogger().handlers if isinstance(h.formatter, JsonFormatter)]
    assert any(isinstance(f, ScrubFilter) for f in handler.filters)
    logging.getLogger("bot.test").info("mobile %s", MOBILE)
    [record] = lines(json_log)
    assert record["message"] == "mobile 139****5678"
    text = StringIO()
    setup_logging("INFO", stream=text)
    logging.getLogger("bot.test").info("plain")
    assert text.getvalue().rstrip().endswith("INFO bot.test: plain")
    assert json_log.getvalue().count("\n") == 1


def test_log_format_is_a_top_level_key_defaulting_to_text() -> None:
    assert build_settings({}, {}).log_format == "text"
    assert build_settings({}, {"BOT_LOG_FORMAT": "json"}).log_format == "json"


async def test_processing_and_sending_log_one_line_each_with_hashed_ids(
    world: World, json_log: StringIO
) -> None:
    added = world.script.customer_adds_member(NewCustomer(NAME), ZHANG, state="qr_lobby")
    await world.settle()
    edit = world.script.member_edits_customer(
        ZHANG, added.external_userid, remark=f"{NAME} {MOBILE}", remark_mobiles=[MOBILE]
    )
    assert edit is not None
    await world.settle()

    records = lines(json_log)
    text = json_log.getvalue()
    # Nothing that names the customer: not the id, the name, or the mobile, at any level.
    assert added.external_userid not in text
    assert NAME not in text
    assert NAME[1:] not in text
    assert MOBILE not in text
    # Nor anything of the decrypted callbacks (their XML, or the one-time welcome code).
    assert "<xml>" not in text
    assert "ToUserName" not in text
    assert added.welcome_code
    assert added.welcome_code not in text

    keys = {
        row.change_type: row.dedupe_key
        for row in world.rows(InboxEvent, InboxEvent.msg_type == "event")
    }
    handled = [r for r in records if r["logger"] == "bot.gateway.processor"]
    # One line per handling: the add waited once for WeCom's lag (84061), then both were done.
    assert [(r["change_type"], r["outcome"]) for r in handled] == [
        ("add_external_contact", "retry"),
        ("add_external_contact", "done"),
        ("edit_external_contact", "done"),
    ]
    for line in handled:
        assert line["inbox_key"] == keys[line["change_type"]][:12]
        assert (line["msg_type"], line["event"]) == ("event", "change_external_contact")
        assert line["customer"] == hash_id(added.external_userid)
        assert line["level"] == "INFO"

    sent = [r for r in records if r["logger"] == "bot.outbox" and r.get("status") == "sent"]
    welcome = [r for r in sent if r["kind"] == "welcome_msg"]
    assert len(welcome) == 1
    assert welcome[0]["lane"] == "fast"
    assert welcome[0]["outbox_id"] >= 1
    assert welcome[0]["attempts"] == 1


async def test_a_failed_inbox_write_logs_no_part_of_the_callback(
    world: World, json_log: StringIO
) -> None:
    # The database refuses the insert; its error carries the statement's parameters, the
    # decrypted callback among them. The refusal is undone afterwards (the schema is shared).
    if world.db.is_postgres:
        refuse = "ALTER TABLE inbox ADD CONSTRAINT refuse_all CHECK (false) NOT VALID"
        allow = "ALTER TABLE inbox DROP CONSTRAINT refuse_all"
    else:
        refuse = (
            "CREATE TRIGGER refuse_all BEFORE INSERT ON inbox "
            "BEGIN SELECT RAISE(ABORT, 'refused'); END"
        )
        allow = "DROP TRIGGER refuse_all"
    world.db.call(lambda s: s.execute(text(refuse)))
    added = world.script.customer_adds_member(NewCustomer(NAME), ZHANG)
    try:
        attempts = await world.deliverer.flush()
    finally:
        world.db.call(lambda s: s.execute(text(allow)))
    assert {a.status_code for a in attempts} == {503}
    text_ = json_log.getvalue()
    failures = [r for r in lines(json_log) if r["logger"] == "bot.gateway.endpoint"]
    assert failures
    assert all(r["level"] == "ERROR" for r in failures)
    assert added.external_userid not in text_
    assert "<xml>" not in text_
    assert "ToUserName" not in text_
    assert "CDATA" not in text_
