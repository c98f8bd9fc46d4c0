"""The standalone app: WeCom API plus the /sandbox admin routes, delivering callbacks."""

from __future__ import annotations

import httpx

from bot.config import build_settings
from bot.gateway.crypto import WeComCrypto
from bot.sandbox import Sandbox
from bot.sandbox.server import DEV_CREDENTIALS, create_sandbox_app, resolve_credentials
from tests.sandbox.receiver import Receiver


async def test_admin_routes_script_the_world(sandbox: Sandbox, receiver: Receiver) -> None:
    deliverer = sandbox.deliverer_to(receiver.app)
    app = create_sandbox_app(sandbox.world, deliver_to=None, deliverer=deliverer)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://sandbox"
    ) as http:
        added = (
            await http.post("/sandbox/customers", json={"userid": "ZhangLi", "name": "李四"})
        ).json()
        ext = added["external_userid"]
        assert [d["ok"] for d in added["deliveries"]] == [True]
        assert receiver.received[-1]["ExternalUserID"] == ext

        group = (
            await http.post("/sandbox/groups", json={"owner": "ZhangLi", "name": "银发生活群"})
        ).json()
        joined = await http.post(
            "/sandbox/groups/join", json={"chat_id": group["chat_id"], "external_userid": ext}
        )
        assert joined.status_code == 200
        assert receiver.received[-1]["UpdateDetail"] == "add_member"

        world = sandbox.world
        token = (
            await http.get(
                "/cgi-bin/gettoken", params={"corpid": world.corp_id, "corpsecret": world.secret}
            )
        ).json()["access_token"]
        body = {"chat_type": "group", "sender": "ZhangLi", "text": {"content": "今晚八点直播"}}
        msgid = (
            await http.post(
                "/cgi-bin/externalcontact/add_msg_template",
                params={"access_token": token},
                json=body,
            )
        ).json()["msgid"]
        confirmed = (
            await http.post("/sandbox/tasks/confirm", json={"msgid": msgid, "userid": "ZhangLi"})
        ).json()
        assert [r["status"] for r in confirmed["recipients"]] == [1]

        fault = await http.post(
            "/sandbox/faults", json={"kind": "errcode", "path": "gettoken", "errcode": -1}
        )
        assert fault.status_code == 200
        busy = await http.get(
            "/cgi-bin/gettoken", params={"corpid": world.corp_id, "corpsecret": world.secret}
        )
        assert busy.json()["errcode"] == -1

        calls = (await http.get("/sandbox/calls", params={"path": "gettoken"})).json()
        assert [c["errcode"] for c in calls["calls"]] == [0, -1]
        assert calls["unknown"] == []

        revoked = await http.post("/sandbox/faults", json={"kind": "revoke_tokens"})
        assert revoked.status_code == 200
        refused = await http.post(
            "/cgi-bin/externalcontact/add_msg_template", params={"access_token": token}, json=body
        )
        assert refused.json()["errcode"] == 40014
        state = (await http.get("/sandbox/state")).json()
        assert state["customers"] == 1
        assert state["pending_callbacks"] == 0

        bad = await http.post("/sandbox/customers", json={"name": "没有经理"})
        assert bad.status_code == 400
        assert "userid" in bad.json()["error"]
        unknown_kind = await http.post("/sandbox/faults", json={"kind": "meteor"})
        assert unknown_kind.status_code == 400
    await deliverer.aclose()


def test_credentials_come_from_arguments_then_settings_then_defaults() -> None:
    env = {"BOT_WECOM__TOKEN": "tokenfromenv", "BOT_WECOM__CORP_ID": "wwfromenv"}
    settings = build_settings({}, env)
    creds = resolve_credentials(settings, corp_id="wwexplicit")
    assert creds.corp_id == "wwexplicit"
    assert creds.token == "tokenfromenv"
    assert creds.encoding_aes_key == DEV_CREDENTIALS["encoding_aes_key"]
    assert creds.agent_id == DEV_CREDENTIALS["agent_id"]
    # The development key is a valid EncodingAESKey.
    WeComCrypto(creds.token, creds.encoding_aes_key, creds.corp_id)
