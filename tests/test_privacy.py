"""Masking of names and mobile numbers before anything reaches a log or a screen."""

from __future__ import annotations

import logging

import pytest

from bot.privacy import ScrubFilter, hash_id, mask_mobile, mask_name, scrub


@pytest.mark.parametrize(
    ("name", "masked"), [("张三", "张*"), ("欧阳娜娜", "欧***"), ("J", "J*"), ("", ""), (None, "")]
)
def test_mask_name(name: str | None, masked: str) -> None:
    assert mask_name(name) == masked


def test_mask_mobile() -> None:
    assert mask_mobile("13812345678") == "138****5678"
    assert mask_mobile("+86 138-1234-5678") == "138****5678"


def test_scrub_masks_every_mobile_in_text() -> None:
    text = "call 13812345678 or +86 139 1234 5678, order 2026112212345"
    cleaned = scrub(text)
    assert "13812345678" not in cleaned
    assert "1391234" not in cleaned
    assert "138****5678" in cleaned
    assert "139****5678" in cleaned
    assert "2026112212345" in cleaned  # not a mobile: 13 digits


def test_hash_id_is_stable_and_short() -> None:
    assert hash_id("wmABC") == hash_id("wmABC")
    assert hash_id("wmABC") != hash_id("wmABD")
    assert len(hash_id("wmABC")) == 12
    assert "wmABC" not in hash_id("wmABC")


def test_log_filter_masks_arguments(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test.privacy")
    logger.addFilter(ScrubFilter())
    with caplog.at_level(logging.INFO, logger="test.privacy"):
        logger.info("customer phone %s", "13912345678")
    assert "13912345678" not in caplog.text
    assert "139****5678" in caplog.text
