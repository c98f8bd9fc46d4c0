"""The errcode → exception mapping and secret masking."""

from __future__ import annotations

import pickle

import pytest

from bot.wecom.errors import (
    ConfigurationError,
    InvalidExternalUserId,
    InvalidRequest,
    NotExternalContact,
    OutcomeUnknown,
    QuotaWait,
    RateLimited,
    RequestRejected,
    TokenInvalid,
    TransientError,
    WeComError,
    WeComUnavailable,
    WelcomeCodeUsed,
    WelcomeInProgress,
    error_for,
    redact,
)


@pytest.mark.parametrize(
    ("errcode", "cls", "final"),
    [
        (-1, TransientError, False),
        (45033, TransientError, False),
        (45009, RateLimited, False),
        (40014, TokenInvalid, False),
        (42001, TokenInvalid, False),
        (41001, TokenInvalid, False),
        (40001, ConfigurationError, True),
        (48002, ConfigurationError, True),
        (60011, ConfigurationError, True),
        (60020, ConfigurationError, True),
        (84074, ConfigurationError, True),
        (301002, ConfigurationError, True),
        (81017, ConfigurationError, True),
        (41051, WelcomeCodeUsed, True),
        (41096, WelcomeInProgress, False),
        (84061, NotExternalContact, True),
        (40096, InvalidExternalUserId, True),
        (40003, RequestRejected, True),
        (60111, RequestRejected, True),
        (45002, RequestRejected, True),
    ],
)
def test_error_for_maps_errcodes(errcode: int, cls: type[WeComError], final: bool):
    error = error_for(errcode, "message", "externalcontact/get")

    assert type(error) is cls
    assert error.final is final
    assert (error.errcode, error.errmsg, error.path) == (errcode, "message", "externalcontact/get")


def test_tree_shape():
    assert issubclass(RateLimited, TransientError)
    assert issubclass(WeComUnavailable, TransientError)
    assert issubclass(OutcomeUnknown, TransientError)
    assert issubclass(QuotaWait, RateLimited)
    assert not issubclass(OutcomeUnknown, WeComUnavailable)  # never retried blindly
    assert issubclass(WelcomeCodeUsed, RequestRejected)
    assert issubclass(InvalidRequest, RequestRejected)
    assert issubclass(InvalidRequest, ValueError)
    for cls in (TransientError, ConfigurationError, RequestRejected, TokenInvalid):
        assert issubclass(cls, WeComError)


def test_rate_limited_carries_retry_after():
    error = error_for(45009, "api freq out of limit", "message/send", retry_after=90.0)

    assert isinstance(error, RateLimited)
    assert error.retry_after == 90.0
    assert "retry_after=90.0" in repr(error)


@pytest.mark.parametrize(
    "error",
    [
        error_for(45009, "limit", "message/send", retry_after=61.0),
        error_for(41051, "used", "externalcontact/send_welcome_msg"),
        InvalidRequest("externalcontact/add_msg_template", "attachments: too many"),
        QuotaWait("message/send", 12.5),
    ],
)
def test_errors_survive_pickling(error: WeComError):
    copy = pickle.loads(pickle.dumps(error))

    assert type(copy) is type(error)
    assert repr(copy) == repr(error)


def test_str_names_path_code_and_message():
    error = error_for(60011, "no privilege to access/modify contact/party/agent", "tags")

    assert str(error) == "tags: errcode 60011: no privilege to access/modify contact/party/agent"


@pytest.mark.parametrize(
    "text",
    [
        "GET /cgi-bin/gettoken?corpid=ww1&corpsecret=TOPSECRET&x=1",
        "url: https://q/cgi-bin/x?access_token=TOPSECRET",
        '{"access_token": "TOPSECRET", "expires_in": 7200}',
        "secret=TOPSECRET",
    ],
)
def test_redact_masks_secret_parameters(text: str):
    assert "TOPSECRET" not in redact(text)


def test_redact_masks_known_values_anywhere():
    assert redact("token abc123 was refused", ["abc123"]) == "token *** was refused"
    assert redact("nothing here", [""]) == "nothing here"


def test_error_masks_its_message_and_path():
    error = WeComError(1, "bad url ?access_token=TOPSECRET", "message/send?access_token=TOPSECRET")

    assert "TOPSECRET" not in str(error)
    assert "TOPSECRET" not in repr(error)
    assert error.path == "message/send"
