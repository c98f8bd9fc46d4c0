"""gettoken and access_token checks: issue, expiry on the clock, invalid, missing."""

from __future__ import annotations

import re

from bot.clock import FrozenClock
from bot.sandbox import Sandbox
from tests.sandbox.conftest import WeCom


async def test_gettoken_shape(wecom: WeCom) -> None:
    world = wecom.sandbox.world
    answer = await wecom.get("gettoken", corpid=world.corp_id, corpsecret=world.secret, token=False)
    assert answer["errcode"] == 0
    assert answer["errmsg"] == "ok"
    assert answer["expires_in"] == 7200
    assert isinstance(answer["access_token"], str)
    assert 0 < len(answer["access_token"]) <= 512


async def test_wrong_secret_and_corp(wecom: WeCom) -> None:
    world = wecom.sandbox.world
    bad_secret = await wecom.get("gettoken", corpid=world.corp_id, corpsecret="nope", token=False)
    assert bad_secret["errcode"] == 40001
    assert "access_token" not in bad_secret
    bad_corp = await wecom.get("gettoken", corpid="wwother", corpsecret=world.secret, token=False)
    assert bad_corp["errcode"] == 40013
    missing = await wecom.get("gettoken", corpid=world.corp_id, token=False)
    assert missing["errcode"] == 41004


async def test_errmsg_has_wecom_shape(wecom: WeCom) -> None:
    world = wecom.sandbox.world
    answer = await wecom.get("gettoken", corpid=world.corp_id, corpsecret="nope", token=False)
    assert re.fullmatch(
        r"invalid credential, hint: \[\d+_\d+_[0-9a-f]{32}\], from ip: [\d.]+, "
        r"more info at https://open\.work\.weixin\.qq\.com/devtool/query\?e=40001",
        answer["errmsg"],
    )


async def test_token_expires_on_the_clock(wecom: WeCom, clock: FrozenClock) -> None:
    assert (await wecom.get("externalcontact/get_follow_user_list"))["errcode"] == 0
    clock.advance(7199)
    assert (await wecom.get("externalcontact/get_follow_user_list"))["errcode"] == 0
    clock.advance(1)
    assert (await wecom.get("externalcontact/get_follow_user_list"))["errcode"] == 42001
    await wecom.login()
    assert (await wecom.get("externalcontact/get_follow_user_list"))["errcode"] == 0


async def test_unknown_and_missing_token(wecom: WeCom) -> None:
    wecom.token = "not-a-token"
    assert (await wecom.get("externalcontact/get_follow_user_list"))["errcode"] == 40014
    answer = await wecom.get("externalcontact/get_follow_user_list", token=False)
    assert answer["errcode"] == 41001


async def test_expire_all_tokens_fault(wecom: WeCom, sandbox: Sandbox) -> None:
    sandbox.world.faults.expire_tokens_now()
    assert (await wecom.get("externalcontact/get_follow_user_list"))["errcode"] == 42001
    await wecom.login()
    assert (await wecom.get("externalcontact/get_follow_user_list"))["errcode"] == 0


async def test_revoked_tokens_are_invalid(wecom: WeCom, sandbox: Sandbox) -> None:
    sandbox.world.revoke_all_tokens()
    assert (await wecom.get("externalcontact/get_follow_user_list"))["errcode"] == 40014
