"""Cross-cutting API behaviour: frequency quota, unknown paths, methods, the call log, faults."""

from __future__ import annotations

import httpx
import pytest

from bot.clock import FrozenClock
from bot.sandbox import NewCustomer, Sandbox, create_api_app
from tests.sandbox.conftest import WeCom, make_sandbox


async def test_quota_per_path_with_penalty(
    wecom: WeCom, sandbox: Sandbox, clock: FrozenClock
) -> None:
    sandbox.world.limits.api_path_limits["externalcontact/get_follow_user_list"] = (5, 100)
    codes = [(await wecom.get("externalcontact/get_follow_user_list"))["errcode"] for _ in range(6)]
    assert codes == [0] * 5 + [45009]
    # Other paths have their own quota.
    assert (await wecom.post("externalcontact/get_corp_tag_list"))["errcode"] == 0
    (breach,) = sandbox.world.breaches("api_quota")
    assert breach.detail == {"path": "externalcontact/get_follow_user_list", "window": "minute"}
    clock.advance(59)
    assert (await wecom.get("externalcontact/get_follow_user_list"))["errcode"] == 45009
    clock.advance(1)
    assert (await wecom.get("externalcontact/get_follow_user_list"))["errcode"] == 0


async def test_hour_quota(wecom: WeCom, sandbox: Sandbox, clock: FrozenClock) -> None:
    sandbox.world.limits.api_path_limits["externalcontact/get_follow_user_list"] = (100, 8)
    codes = []
    for _ in range(9):
        codes.append((await wecom.get("externalcontact/get_follow_user_list"))["errcode"])
        clock.advance(61)
    assert codes == [0] * 8 + [45009]
    assert sandbox.world.breaches("api_quota")[0].detail["window"] == "hour"


async def test_default_quota_is_wecoms(sandbox: Sandbox) -> None:
    assert sandbox.world.limits.path_quota("message/send") == (10_000, 150_000)


async def test_unknown_path_is_recorded(wecom: WeCom, sandbox: Sandbox) -> None:
    response = await wecom.client.post("/cgi-bin/externalcontact/no_such_api", json={})
    assert response.status_code == 404
    assert response.json()["errcode"] == 404
    (call,) = sandbox.world.unknown_calls()
    assert call.path == "externalcontact/no_such_api"
    with pytest.raises(AssertionError, match="no_such_api"):
        sandbox.world.assert_no_unknown_calls()


async def test_wrong_method_and_bad_json(wecom: WeCom) -> None:
    response = await wecom.client.get(
        "/cgi-bin/externalcontact/mark_tag", params={"access_token": wecom.token}
    )
    assert response.json()["errcode"] == 43002
    response = await wecom.client.post(
        "/cgi-bin/externalcontact/mark_tag",
        params={"access_token": wecom.token},
        content=b"{not json",
    )
    assert response.json()["errcode"] == 47001


async def test_call_log(wecom: WeCom, sandbox: Sandbox) -> None:
    await wecom.post("externalcontact/get_corp_tag_list", {"tag_id": []})
    call = sandbox.world.calls("externalcontact/get_corp_tag_list")[0]
    assert call.method == "POST"
    assert call.body == {"tag_id": []}
    assert call.errcode == 0
    assert call.query["access_token"] == wecom.token
    assert [c.path for c in sandbox.world.calls()] == [
        "gettoken",
        "externalcontact/get_corp_tag_list",
    ]


async def test_fail_next_n_calls(wecom: WeCom, sandbox: Sandbox) -> None:
    sandbox.world.faults.fail_next("externalcontact/get_corp_tag_list", -1, times=2)
    codes = [(await wecom.post("externalcontact/get_corp_tag_list"))["errcode"] for _ in range(3)]
    assert codes == [-1, -1, 0]
    assert (await wecom.get("externalcontact/get_follow_user_list"))["errcode"] == 0
    faults = [c.fault for c in sandbox.world.calls("externalcontact/get_corp_tag_list")]
    assert faults == ["errcode:-1", "errcode:-1", None]


def template(ext: str) -> dict[str, object]:
    return {"chat_type": "single", "external_userid": [ext], "text": {"content": "周四联名权益日"}}


async def test_timeout_after_effect_leaves_the_outcome_unknown(
    wecom: WeCom, sandbox: Sandbox
) -> None:
    ext = sandbox.script.customer_adds_member(NewCustomer("周涛"), "ZhangLi").external_userid
    sandbox.world.faults.timeout_next("externalcontact/add_msg_template", after_effect=True)
    with pytest.raises(httpx.ReadTimeout):
        await wecom.post("externalcontact/add_msg_template", template(ext))
    # The client never saw a msgid, yet WeCom created the task.
    assert len(sandbox.world.tasks) == 1
    (call,) = sandbox.world.calls("externalcontact/add_msg_template")
    assert call.fault == "timeout_after"
    assert call.errcode == 0


async def test_timeout_before_effect(wecom: WeCom, sandbox: Sandbox) -> None:
    ext = sandbox.script.customer_adds_member(NewCustomer("周涛"), "ZhangLi").external_userid
    sandbox.world.faults.timeout_next("externalcontact/add_msg_template", after_effect=False)
    with pytest.raises(httpx.ReadTimeout):
        await wecom.post("externalcontact/add_msg_template", template(ext))
    assert sandbox.world.tasks == {}
    answer = await wecom.post("externalcontact/add_msg_template", template(ext))
    assert answer["errcode"] == 0


async def chaos_run(clock: FrozenClock) -> list[str]:
    sandbox = make_sandbox(clock)
    async with sandbox.api_client() as http:
        client = WeCom(http, sandbox)
        await client.login()
        sandbox.world.faults.set_chaos(busy_rate=0.1, quota_rate=0.1, timeout_rate=0.1)
        outcomes = []
        for _ in range(300):
            try:
                answer = await client.post("externalcontact/get_corp_tag_list")
                outcomes.append(str(answer["errcode"]))
            except httpx.ReadTimeout:
                outcomes.append("timeout")
    return outcomes


async def test_chaos_is_random_but_reproducible(clock: FrozenClock) -> None:
    outcomes = await chaos_run(clock)
    counts = {kind: outcomes.count(kind) for kind in ("0", "-1", "45009", "timeout")}
    assert sum(counts.values()) == 300
    # Expected about 30, 27 and 24; wide bounds keep this from being flaky across seeds.
    assert 10 <= counts["-1"] <= 55
    assert 10 <= counts["45009"] <= 55
    assert 8 <= counts["timeout"] <= 50
    assert outcomes == await chaos_run(clock)


async def test_sleep_mode_timeouts_for_real_http_clients(clock: FrozenClock) -> None:
    sandbox = make_sandbox(clock)
    app = create_api_app(sandbox.world, timeout_mode="sleep")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://sandbox") as http:
        wecom = WeCom(http, sandbox)
        await wecom.login()
        ext = sandbox.script.customer_adds_member(NewCustomer("周涛"), "ZhangLi").external_userid
        faults = sandbox.world.faults
        faults.timeout_next("externalcontact/add_msg_template", after_effect=False)
        late = await wecom.post("externalcontact/add_msg_template", template(ext))
        # The answer comes 30 s later, when a real client has long given up.
        assert clock.slept == [30.0]
        assert late["errcode"] == -1
        assert sandbox.world.tasks == {}
        faults.timeout_next("externalcontact/add_msg_template", after_effect=True)
        done = await wecom.post("externalcontact/add_msg_template", template(ext))
        assert clock.slept == [30.0, 30.0]
        assert list(sandbox.world.tasks) == [done["msgid"]]
