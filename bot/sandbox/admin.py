"""A small JSON API under /sandbox/ to script the world over HTTP (for `bot sandbox`)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from bot.sandbox.callbacks import CallbackDeliverer
from bot.sandbox.errors import WeComError
from bot.sandbox.models import JOIN_QR_CODE
from bot.sandbox.script import NewCustomer, Script
from bot.sandbox.world import SandboxWorld

Json = dict[str, Any]
Action = Callable[[Json], Json]


class BadRequest(Exception):
    """The admin request itself is wrong (missing field, unknown kind)."""


def _field(body: Json, name: str, kind: type = str) -> Any:
    value = body.get(name)
    if not isinstance(value, kind):
        raise BadRequest(f"{name} must be a {kind.__name__}")
    return value


def _customer(body: Json) -> str | NewCustomer:
    if isinstance(body.get("external_userid"), str):
        return str(body["external_userid"])
    return NewCustomer(str(body.get("name") or "新客户"), gender=int(body.get("gender", 0)))


class AdminApi:
    """Routes that change the world as people would, then deliver the resulting callbacks."""

    def __init__(
        self, world: SandboxWorld, script: Script, deliverer: CallbackDeliverer | None
    ) -> None:
        self.world = world
        self.script = script
        self.deliverer = deliverer

    def routes(self) -> list[BaseRoute]:
        reads: dict[str, Callable[[Request], Json]] = {
            "/state": self._state,
            "/calls": self._calls,
            "/breaches": self._breaches,
            "/deliveries": self._deliveries,
            "/messages": self._messages,
            "/tasks": self._tasks,
            "/relations": self._relations,
        }
        actions: dict[str, Action] = {
            "/customers": self._add_customer,
            "/customers/delete": self._delete_customer,
            "/customers/edit": self._edit_customer,
            "/groups": self._create_group,
            "/groups/join": self._join_group,
            "/groups/leave": self._leave_group,
            "/groups/dismiss": self._dismiss_group,
            "/tags": self._create_tags,
            "/tasks/confirm": self._confirm,
            "/cards/tap": self._tap,
            "/faults": self._fault,
            "/flush": lambda body: {},
        }
        routes: list[BaseRoute] = [
            Route(path, self._reader(fn), methods=["GET"]) for path, fn in reads.items()
        ]
        routes += [Route(path, self._actor(fn), methods=["POST"]) for path, fn in actions.items()]
        return routes

    def _reader(
        self, fn: Callable[[Request], Json]
    ) -> Callable[[Request], Awaitable[JSONResponse]]:
        async def endpoint(request: Request) -> JSONResponse:
            return JSONResponse(_plain(fn(request)))

        return endpoint

    def _actor(self, fn: Action) -> Callable[[Request], Awaitable[JSONResponse]]:
        async def endpoint(request: Request) -> JSONResponse:
            try:
                raw = await request.body()
                body = json.loads(raw) if raw.strip() else {}
                if not isinstance(body, dict):
                    raise BadRequest("body must be a JSON object")
                result = fn(body)
            except (BadRequest, ValueError, KeyError, WeComError) as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
            if self.deliverer is not None:
                attempts = await self.deliverer.flush()
                result["deliveries"] = [dataclasses.asdict(a) for a in attempts]
            return JSONResponse(_plain(result))

        return endpoint

    # -- reads --------------------------------------------------------------------------

    def _state(self, request: Request) -> Json:
        world = self.world
        return {
            "corp_id": world.corp_id,
            "agent_id": world.agent_id,
            "members": list(world.members.values()),
            "customers": len(world.customers),
            "follow_relations": sum(1 for r in world.relations.values() if r.alive),
            "groups": [
                {"chat_id": g.chat_id, "name": g.name, "owner": g.owner, "size": len(g.members)}
                for g in world.groups.values()
                if not g.dismissed
            ],
            "tag_groups": sum(1 for g in world.tag_groups.values() if not g.deleted),
            "tasks": len(world.tasks),
            "pending_callbacks": len(world.ledger.pending_callbacks),
        }

    def _calls(self, request: Request) -> Json:
        path = request.query_params.get("path")
        limit = int(request.query_params.get("limit", "200"))
        return {"calls": self.world.calls(path)[-limit:], "unknown": self.world.unknown_calls()}

    def _breaches(self, request: Request) -> Json:
        return {"breaches": self.world.breaches(request.query_params.get("kind"))}

    def _deliveries(self, request: Request) -> Json:
        return {"attempts": self.deliverer.attempts if self.deliverer else []}

    def _messages(self, request: Request) -> Json:
        userid = request.query_params.get("userid")
        messages = self.world.inbox.get(userid, []) if userid else self.world.app_messages
        return {"messages": messages}

    def _tasks(self, request: Request) -> Json:
        return {"tasks": list(self.world.tasks.values())}

    def _relations(self, request: Request) -> Json:
        """Every follow relation with its tags (what mark_tag changed), optionally of one
        member (`?userid=`)."""
        userid = request.query_params.get("userid")
        return {
            "relations": [
                {
                    "userid": r.userid,
                    "external_userid": r.external_userid,
                    "tag_ids": list(r.tag_ids),
                    "alive": r.alive,
                }
                for r in self.world.relations.values()
                if userid is None or r.userid == userid
            ]
        }

    # -- actions ------------------------------------------------------------------------

    def _add_customer(self, body: Json) -> Json:
        result = self.script.customer_adds_member(
            _customer(body),
            _field(body, "userid"),
            state=str(body.get("state", "qr_branch_a")),
            verified=bool(body.get("verified", True)),
            welcome_code=bool(body.get("welcome_code", True)),
        )
        return {"external_userid": result.external_userid, "welcome_code": result.welcome_code}

    def _delete_customer(self, body: Json) -> Json:
        userid, ext = _field(body, "userid"), _field(body, "external_userid")
        if body.get("by", "member") == "customer":
            self.script.customer_deletes_member(ext, userid)
        else:
            self.script.member_deletes_customer(userid, ext)
        return {}

    def _edit_customer(self, body: Json) -> Json:
        self.script.member_edits_customer(
            _field(body, "userid"),
            _field(body, "external_userid"),
            remark=body.get("remark"),
            add_tags=list(body.get("add_tags", [])),
            remove_tags=list(body.get("remove_tags", [])),
        )
        return {}

    def _create_group(self, body: Json) -> Json:
        group = self.script.create_group(
            _field(body, "owner"), _field(body, "name"), list(body.get("members", []))
        )
        return {"chat_id": group.chat_id}

    def _join_group(self, body: Json) -> Json:
        ext = self.script.customer_joins_group(
            _field(body, "chat_id"),
            _customer(body),
            join_scene=int(body.get("join_scene", JOIN_QR_CODE)),
        )
        return {"external_userid": ext}

    def _leave_group(self, body: Json) -> Json:
        self.script.customer_leaves_group(
            _field(body, "chat_id"),
            _field(body, "external_userid"),
            removed=bool(body.get("removed", False)),
        )
        return {}

    def _dismiss_group(self, body: Json) -> Json:
        self.script.dismiss_group(_field(body, "chat_id"))
        return {}

    def _create_tags(self, body: Json) -> Json:
        group, tags = self.script.admin_creates_tag(
            _field(body, "group_name"), [str(t) for t in _field(body, "tags", list)]
        )
        return {"group_id": group.group_id, "tags": {t.name: t.tag_id for t in tags}}

    def _confirm(self, body: Json) -> Json:
        recipients = self.script.member_confirms_task(_field(body, "msgid"), _field(body, "userid"))
        return {"recipients": recipients}

    def _tap(self, body: Json) -> Json:
        code = self.script.member_taps_card_button(
            _field(body, "userid"), _field(body, "task_id"), _field(body, "event_key")
        )
        return {"response_code": code}

    def _fault(self, body: Json) -> Json:
        faults = self.world.faults
        kind = body.get("kind")
        path = body.get("path")
        times = int(body.get("times", 1))
        if kind == "errcode":
            faults.fail_next(path, int(_field(body, "errcode", int)), times=times)
        elif kind == "timeout":
            faults.timeout_next(
                path, times=times, after_effect=bool(body.get("after_effect", True))
            )
        elif kind == "expire_tokens":
            faults.expire_tokens_now()
        elif kind == "revoke_tokens":
            self.world.revoke_all_tokens()
        elif kind == "chaos":
            faults.set_chaos(
                busy_rate=float(body.get("busy_rate", 0.0)),
                quota_rate=float(body.get("quota_rate", 0.0)),
                timeout_rate=float(body.get("timeout_rate", 0.0)),
            )
        elif kind == "clear":
            faults.clear()
        else:
            raise BadRequest(
                "kind must be errcode, timeout, expire_tokens, revoke_tokens, chaos or clear"
            )
        return {}


def _plain(value: Any) -> Any:
    """Dataclasses and tuples as JSON-ready data."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
