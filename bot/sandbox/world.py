"""The simulated corp's state, and the state changes shared by the API and scripted actions."""

# Nothing here emits a callback: WeCom does not call back for changes made through the API,
# so only `bot.sandbox.script` (the "people in the WeCom client") enqueues callbacks.

from __future__ import annotations

import random
import string
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bot.clock import Clock
from bot.sandbox import errors
from bot.sandbox.errors import WeComError
from bot.sandbox.faults import FaultInjector
from bot.sandbox.limits import Limits, MemberMessageCap, PathQuota
from bot.sandbox.models import (
    ADD_WAY_QR,
    MOMENT_JOB_DONE,
    MOMENT_JOB_DONE_AFTER,
    MOMENT_JOB_RUNNING,
    MOMENT_JOB_RUNNING_AFTER,
    MOMENT_JOB_STARTED,
    SEND_CAPPED,
    SEND_NOT_FRIEND,
    SEND_OK,
    TASK_SENT,
    AppMessage,
    AttachmentMedia,
    Breach,
    CallRecord,
    Card,
    CorpTag,
    Customer,
    CustomerGroup,
    FollowRelation,
    GroupMember,
    MassTask,
    Media,
    Member,
    Moment,
    MomentJob,
    PendingCallback,
    Recipient,
    ResponseCode,
    TagGroup,
    WelcomeCode,
    WelcomeMessage,
)

ID_ALPHABET = string.ascii_letters + string.digits + "_-"
ALNUM = string.ascii_letters + string.digits


@dataclass
class Token:
    """An issued access_token and when it stops working."""

    value: str
    expires_at: float
    revoked: bool = False


@dataclass
class Ledger:
    """What the bot did that tests look at: calls, limit breaches, WeCom's owed callbacks."""

    calls: list[CallRecord] = field(default_factory=list)
    breaches: list[Breach] = field(default_factory=list)
    pending_callbacks: deque[PendingCallback] = field(default_factory=deque)
    emitted_callbacks: list[PendingCallback] = field(default_factory=list)


class SandboxWorld:
    """In-memory state of one corp with one self-built app, on the given clock."""

    def __init__(
        self,
        clock: Clock,
        *,
        corp_id: str,
        agent_id: int,
        secret: str,
        rng: random.Random,
        token: str | None = None,
        encoding_aes_key: str | None = None,
        limits: Limits | None = None,
    ) -> None:
        self.clock = clock
        self.corp_id = corp_id
        self.agent_id = agent_id
        self.secret = secret
        self.rng = rng
        self.token = token or self.random_string(32, ALNUM)
        self.encoding_aes_key = encoding_aes_key or self.random_string(43, ALNUM)
        self.limits = limits or Limits()
        self.faults = FaultInjector(rng, on_expire_tokens=self.expire_all_tokens)
        self.ledger = Ledger()

        self.members: dict[str, Member] = {}
        self.customers: dict[str, Customer] = {}
        self.relations: dict[tuple[str, str], FollowRelation] = {}
        self.tag_groups: dict[str, TagGroup] = {}
        self.tags: dict[str, CorpTag] = {}
        self.groups: dict[str, CustomerGroup] = {}
        self.tasks: dict[str, MassTask] = {}
        self.welcome_codes: dict[str, WelcomeCode] = {}
        self.welcome_messages: list[WelcomeMessage] = []
        self.app_messages: list[AppMessage] = []
        self.inbox: dict[str, list[AppMessage]] = {}
        self.cards: dict[str, Card] = {}
        self.response_codes: dict[str, ResponseCode] = {}
        self.media: dict[str, Media] = {}
        self.tokens: dict[str, Token] = {}
        self.receipts: dict[str, list[float]] = {}
        self.quotas: dict[str, PathQuota] = {}
        self.member_caps: dict[str, MemberMessageCap] = {}
        # (userid, message digest) -> when it was last delivered, for enable_duplicate_check.
        self.recent_messages: dict[tuple[str, str], float] = {}
        self._seq = 0
        # Customer moments: creation jobs by jobid, moments by moment_id, and the files
        # from media/upload_attachment (a separate store from media/upload's).
        self.moment_jobs: dict[str, MomentJob] = {}
        self.moments: dict[str, Moment] = {}
        self.attachment_media: dict[str, AttachmentMedia] = {}

    # -- time and ids -------------------------------------------------------------------

    def now(self) -> int:
        """WeCom timestamps are whole epoch seconds."""
        return int(self.clock.timestamp())

    def random_string(self, length: int, alphabet: str = ID_ALPHABET) -> str:
        return "".join(self.rng.choice(alphabet) for _ in range(length))

    def new_id(self, prefix: str, length: int = 32) -> str:
        """An id shaped like WeCom's: `wm…` customers, `wr…` groups, `et…` tags, `msg…` tasks."""
        return prefix + self.random_string(length - len(prefix))

    def next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def new_version(self) -> str:
        return f"{self.rng.getrandbits(128):032x}"

    # -- tokens -------------------------------------------------------------------------

    def issue_token(self) -> Token:
        token = Token(self.random_string(64, ALNUM), self.clock.timestamp() + self.limits.token_ttl)
        self.tokens[token.value] = token
        return token

    def check_token(self, value: str | None) -> None:
        if not value:
            raise WeComError(errors.MISSING_TOKEN)
        token = self.tokens.get(value)
        if token is None or token.revoked:
            raise WeComError(errors.INVALID_TOKEN)
        if self.clock.timestamp() >= token.expires_at:
            raise WeComError(errors.TOKEN_EXPIRED)

    def expire_all_tokens(self) -> None:
        now = self.clock.timestamp()
        for token in self.tokens.values():
            token.expires_at = min(token.expires_at, now)

    def revoke_all_tokens(self) -> None:
        """WeCom may invalidate tokens early; callers then get 40014."""
        for token in self.tokens.values():
            token.revoked = True

    # -- members and customers ----------------------------------------------------------

    def add_member(
        self, userid: str, name: str, *, follow_enabled: bool = True, visible: bool = True
    ) -> Member:
        member = Member(userid, name, follow_enabled, visible)
        self.members[userid] = member
        return member

    def member(self, userid: str) -> Member:
        member = self.members.get(userid)
        if member is None or not member.visible:
            raise WeComError(errors.INVALID_USERID, userid)
        return member

    def add_customer(
        self,
        name: str,
        *,
        type: int = 1,
        gender: int = 0,
        unionid: str | None = None,
        corp_name: str | None = None,
        avatar: str | None = None,
        external_userid: str | None = None,
    ) -> Customer:
        ext = external_userid or self.new_id("wm")
        customer = Customer(
            ext,
            name,
            type,
            gender,
            unionid,
            corp_name,
            avatar or f"http://wx.qlogo.cn/mmhead/{self.random_string(40, ALNUM)}/0",
        )
        self.customers[ext] = customer
        return customer

    def customer(self, external_userid: str) -> Customer:
        customer = self.customers.get(external_userid)
        if customer is None:
            raise WeComError(errors.INVALID_EXTERNAL_USERID, external_userid)
        return customer

    def add_follow(
        self,
        userid: str,
        external_userid: str,
        *,
        state: str = "",
        add_way: int = ADD_WAY_QR,
        oper_userid: str | None = None,
        remark: str = "",
        description: str = "",
        remark_mobiles: list[str] | None = None,
        tag_ids: list[str] | None = None,
        at: float | None = None,
    ) -> FollowRelation:
        """Start (or restart) a follow relation; `at` back-dates it for pre-existing state."""
        when = self.clock.timestamp() if at is None else at
        relation = FollowRelation(
            userid=userid,
            external_userid=external_userid,
            createtime=int(when),
            remark=remark,
            description=description,
            remark_mobiles=list(remark_mobiles or []),
            tag_ids=list(tag_ids or []),
            add_way=add_way,
            state=state,
            oper_userid=oper_userid if oper_userid is not None else external_userid,
            last_interaction=int(when),
            added_at=when,
        )
        self.relations[(userid, external_userid)] = relation
        return relation

    def relation(self, userid: str, external_userid: str) -> FollowRelation | None:
        relation = self.relations.get((userid, external_userid))
        return relation if relation is not None and relation.alive else None

    def visible(self, relation: FollowRelation) -> bool:
        """Whether read APIs see a relation yet: WeCom lags just after an add (84061)."""
        lag = self.limits.contact_visibility_lag
        return relation.alive and self.clock.timestamp() >= relation.added_at + lag

    def followers(self, external_userid: str) -> list[FollowRelation]:
        """Visible follow relations of one customer, oldest first."""
        found = [
            r
            for (_, ext), r in self.relations.items()
            if ext == external_userid and self.visible(r) and self._member_visible(r.userid)
        ]
        return sorted(found, key=lambda r: r.added_at)

    def relations_of(self, userid: str, *, visible_only: bool = True) -> list[FollowRelation]:
        found = [
            r
            for (uid, _), r in self.relations.items()
            if uid == userid and (self.visible(r) if visible_only else r.alive)
        ]
        return sorted(found, key=lambda r: r.added_at)

    def end_follow(self, userid: str, external_userid: str) -> FollowRelation:
        relation = self.relation(userid, external_userid)
        if relation is None:
            raise ValueError(f"{userid} does not follow {external_userid}")
        relation.alive = False
        relation.deleted_at = self.now()
        return relation

    def _member_visible(self, userid: str) -> bool:
        member = self.members.get(userid)
        return member is not None and member.visible

    # -- tags ---------------------------------------------------------------------------

    def create_tag_group(
        self, name: str, *, order: int = 0, agent: int | None = None, at: int | None = None
    ) -> TagGroup:
        group = TagGroup(self.new_id("et"), name, order, self._at(at), agent)
        self.tag_groups[group.group_id] = group
        return group

    def create_tag(
        self,
        group_id: str,
        name: str,
        *,
        order: int = 0,
        agent: int | None = None,
        at: int | None = None,
    ) -> CorpTag:
        tag = CorpTag(self.new_id("et"), group_id, name, order, self._at(at), agent)
        self.tags[tag.tag_id] = tag
        return tag

    def live_group(self, group_id: str) -> TagGroup | None:
        group = self.tag_groups.get(group_id)
        return group if group is not None and not group.deleted else None

    def live_tag(self, tag_id: str) -> CorpTag | None:
        tag = self.tags.get(tag_id)
        return tag if tag is not None and not tag.deleted else None

    def tags_in(self, group_id: str) -> list[CorpTag]:
        found = [t for t in self.tags.values() if t.group_id == group_id and not t.deleted]
        return sorted(found, key=lambda t: (t.order, t.create_time, t.tag_id))

    def delete_tag(self, tag_id: str) -> None:
        tag = self.tags[tag_id]
        tag.deleted = True
        self._strip_tags({tag_id})
        # WeCom drops a group once its last tag is gone (empty groups are not allowed).
        if not self.tags_in(tag.group_id):
            self.tag_groups[tag.group_id].deleted = True

    def delete_group(self, group_id: str) -> None:
        self.tag_groups[group_id].deleted = True
        removed = {t.tag_id for t in self.tags.values() if t.group_id == group_id}
        for tag_id in removed:
            self.tags[tag_id].deleted = True
        self._strip_tags(removed)

    def _strip_tags(self, removed: set[str]) -> None:
        for relation in self.relations.values():
            relation.tag_ids = [t for t in relation.tag_ids if t not in removed]

    def retag(self, relation: FollowRelation, add: list[str], remove: list[str]) -> None:
        tags = [t for t in relation.tag_ids if t not in set(remove)]
        tags.extend(t for t in add if t not in tags)
        relation.tag_ids = tags

    # -- customer groups ----------------------------------------------------------------

    def create_group(
        self,
        owner: str,
        name: str,
        members: Sequence[str] = (),
        *,
        notice: str = "",
        at: int | None = None,
    ) -> CustomerGroup:
        created = self._at(at)
        group = CustomerGroup(self.new_id("wr"), name, owner, created, notice)
        group.members.append(self._group_member(owner, created, 1, None))
        for userid in members:
            if userid != owner:
                group.members.append(self._group_member(userid, created, 1, owner))
        group.member_version = self.new_version()
        self.groups[group.chat_id] = group
        return group

    def chat(self, chat_id: str) -> CustomerGroup:
        group = self.groups.get(chat_id)
        if group is None or group.dismissed:
            raise WeComError(errors.INVALID_CHATID, chat_id)
        return group

    def join_group(
        self,
        chat_id: str,
        userid: str,
        *,
        join_scene: int,
        invitor: str | None = None,
        state: str = "",
        at: int | None = None,
    ) -> tuple[str, str]:
        """Add one member or customer; returns (previous, current) member_version."""
        group = self.chat(chat_id)
        if group.member(userid) is not None:
            raise ValueError(f"{userid} is already in {chat_id}")
        member = self._group_member(userid, self._at(at), join_scene, invitor)
        member.state = state
        group.members.append(member)
        return self._bump(group)

    def leave_group(self, chat_id: str, userid: str) -> tuple[str, str]:
        group = self.chat(chat_id)
        if group.member(userid) is None:
            raise ValueError(f"{userid} is not in {chat_id}")
        group.members = [m for m in group.members if m.userid != userid]
        group.admins = [a for a in group.admins if a != userid]
        return self._bump(group)

    def _bump(self, group: CustomerGroup) -> tuple[str, str]:
        previous = group.member_version
        group.member_version = self.new_version()
        return previous, group.member_version

    def _group_member(
        self, userid: str, join_time: int, join_scene: int, invitor: str | None
    ) -> GroupMember:
        if userid in self.members:
            return GroupMember(userid, 1, join_time, join_scene, self.members[userid].name, invitor)
        customer = self.customer(userid)
        return GroupMember(
            userid, 2, join_time, join_scene, customer.name, invitor, unionid=customer.unionid
        )

    # -- mass-send ----------------------------------------------------------------------

    def cap_left(self, target: str, at: float | None = None) -> int:
        """How many more mass-sends `target` (customer or group) may receive this period."""
        ts = self.clock.timestamp() if at is None else at
        cap = self.limits.receive_cap
        key = cap.period_key(ts, self.clock.tz)
        used = sum(
            1 for t in self.receipts.get(target, []) if cap.period_key(t, self.clock.tz) == key
        )
        return cap.allowance(ts, self.clock.tz) - used

    def confirm_task(self, msgid: str, userid: str) -> list[Recipient]:
        """A member taps "send" in the client: each of their recipients gets a final status."""
        task = self.tasks.get(msgid)
        if task is None:
            raise ValueError(f"no mass-send task {msgid}")
        if task.cancelled:
            raise ValueError(f"task {msgid} was cancelled")
        member_task = task.tasks.get(userid)
        if member_task is None:
            raise ValueError(f"task {msgid} has nothing for {userid}")
        if member_task.status == TASK_SENT:
            return []
        now = self.now()
        mine = [r for r in task.recipients if r.userid == userid]
        for recipient in mine:
            if not self._still_reachable(task, recipient):
                recipient.status = SEND_NOT_FRIEND
            elif self.cap_left(recipient.target) <= 0:
                recipient.status = SEND_CAPPED
                self.breach("receive_cap", msgid=msgid, target=recipient.target)
            else:
                recipient.status = SEND_OK
                recipient.send_time = now
                self.receipts.setdefault(recipient.target, []).append(self.clock.timestamp())
        member_task.status = TASK_SENT
        member_task.send_time = now
        return mine

    def _still_reachable(self, task: MassTask, recipient: Recipient) -> bool:
        if task.chat_type == "single":
            relation = self.relation(recipient.userid, recipient.target)
            return relation is not None and not relation.customer_deleted
        group = self.groups.get(recipient.target)
        return group is not None and not group.dismissed and group.owner == recipient.userid

    # -- welcome codes, cards, media ----------------------------------------------------

    def issue_welcome_code(self, userid: str, external_userid: str) -> WelcomeCode:
        code = WelcomeCode(self.random_string(43, ALNUM), userid, external_userid, self.now())
        self.welcome_codes[code.code] = code
        return code

    def issue_response_code(self, task_id: str) -> ResponseCode:
        code = ResponseCode(self.random_string(43, ALNUM), task_id, self.now())
        self.response_codes[code.code] = code
        return code

    # -- the ledger ---------------------------------------------------------------------

    def breach(self, kind: str, **detail: Any) -> None:
        self.ledger.breaches.append(Breach(kind, self.now(), detail))

    def breaches(self, kind: str | None = None) -> list[Breach]:
        return [b for b in self.ledger.breaches if kind is None or b.kind == kind]

    def calls(self, path: str | None = None) -> list[CallRecord]:
        return [c for c in self.ledger.calls if path is None or c.path == path]

    def unknown_calls(self) -> list[CallRecord]:
        return [c for c in self.ledger.calls if not c.known]

    def assert_no_unknown_calls(self) -> None:
        unknown = self.unknown_calls()
        if unknown:
            paths = ", ".join(f"{c.method} {c.path}" for c in unknown)
            raise AssertionError(f"calls to paths WeCom does not serve: {paths}")

    def enqueue_callback(
        self, xml: str, *, event: str, change_type: str = "", agent_id: str | None = None
    ) -> PendingCallback:
        callback = PendingCallback(
            self.next_seq(),
            xml,
            event,
            change_type,
            self.now(),
            str(self.agent_id) if agent_id is None else agent_id,
        )
        self.ledger.pending_callbacks.append(callback)
        self.ledger.emitted_callbacks.append(callback)
        return callback

    def _at(self, at: int | None) -> int:
        return self.now() if at is None else at

    # -- customer moments ---------------------------------------------------------------

    def moment_job_status(self, job: MomentJob) -> int:
        """1 started, 2 running, 3 done: the job finishes a few seconds after the call."""
        elapsed = self.clock.timestamp() - job.created_at
        if elapsed >= MOMENT_JOB_DONE_AFTER:
            return MOMENT_JOB_DONE
        return MOMENT_JOB_RUNNING if elapsed >= MOMENT_JOB_RUNNING_AFTER else MOMENT_JOB_STARTED

    def live_moment(self, moment_id: str) -> Moment | None:
        """A moment whose creation job is done (until then nobody knows its id)."""
        moment = self.moments.get(moment_id)
        if moment is None:
            return None
        job = self.moment_jobs.get(moment.jobid)
        if job is not None and self.moment_job_status(job) != MOMENT_JOB_DONE:
            return None
        return moment

    def attachment_ok(self, media_id: object, media_type: str) -> bool:
        """Whether `media_id` is an unexpired moments attachment of `media_type`."""
        media = self.attachment_media.get(media_id) if isinstance(media_id, str) else None
        return (
            media is not None
            and media.type == media_type
            and media.attachment_type == 1
            and self.now() < media.created_at + self.limits.media_ttl
        )

    def publish_moment(self, moment_id: str, userid: str) -> int:
        """A member confirms a corp moment in the client; returns when it was published."""
        moment = self.live_moment(moment_id)
        if moment is None:
            raise ValueError(f"no moment {moment_id} (or its job is not done yet)")
        if moment.cancelled:
            raise ValueError(f"moment {moment_id} was cancelled")
        if userid not in moment.senders:
            raise ValueError(f"moment {moment_id} was not assigned to {userid}")
        return moment.published.setdefault(userid, self.now())
