"""What people do in the WeCom client: state changes plus the callbacks WeCom sends for them."""

# Changes made through the API never produce callbacks (96361), so only this module
# enqueues them.

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bot.sandbox import events
from bot.sandbox.models import (
    ADD_WAY_CUSTOMER_LINK,
    ADD_WAY_QR,
    JOIN_QR_CODE,
    CorpTag,
    CustomerGroup,
    PendingCallback,
    Recipient,
    TagGroup,
)
from bot.sandbox.world import SandboxWorld


@dataclass(frozen=True)
class NewCustomer:
    """A customer the world has not seen yet; type 1 WeChat users get a unionid by default."""

    name: str
    type: int = 1
    gender: int = 0
    unionid: str | None = None
    with_unionid: bool = True
    corp_name: str | None = None


@dataclass(frozen=True)
class AddResult:
    """What a customer adding a member produced."""

    external_userid: str
    welcome_code: str | None
    callback: PendingCallback


class Script:
    """High-level world changes that emit callbacks, as members, customers and admins act."""

    def __init__(self, world: SandboxWorld) -> None:
        self.world = world

    # -- contacts -----------------------------------------------------------------------

    def new_customer(self, spec: NewCustomer) -> str:
        unionid = spec.unionid
        if unionid is None and spec.with_unionid and spec.type == 1:
            unionid = "o" + self.world.random_string(27)
        customer = self.world.add_customer(
            spec.name,
            type=spec.type,
            gender=spec.gender,
            unionid=unionid,
            corp_name=spec.corp_name,
        )
        return customer.external_userid

    def _customer_id(self, customer: str | NewCustomer) -> str:
        if isinstance(customer, NewCustomer):
            return self.new_customer(customer)
        self.world.customer(customer)
        return customer

    def customer_adds_member(
        self,
        customer: str | NewCustomer,
        userid: str,
        *,
        state: str = "qr_branch_a",
        verified: bool = True,
        welcome_code: bool = True,
        add_way: int | None = None,
    ) -> AddResult:
        """A customer scans a member's 联系我 code (or opens a 获客链接) and adds them.

        `welcome_code=False` models the cases where WeCom sends none: an admin-configured
        welcome message, or a customer who has chatted before.
        """
        world = self.world
        ext = self._customer_id(customer)
        if userid not in world.members:
            raise ValueError(f"no member {userid}")
        way = add_way
        if way is None:
            way = ADD_WAY_CUSTOMER_LINK if state.startswith("link") else ADD_WAY_QR
        world.add_follow(userid, ext, state=state, add_way=way, oper_userid=ext)
        code = world.issue_welcome_code(userid, ext).code if welcome_code else None
        change = "add_external_contact" if verified else "add_half_external_contact"
        xml = events.contact_event(
            world.corp_id,
            world.now(),
            change,
            userid=userid,
            external_userid=ext,
            state=state or None,
            welcome_code=code,
        )
        callback = world.enqueue_callback(xml, event="change_external_contact", change_type=change)
        return AddResult(ext, code, callback)

    def member_deletes_customer(
        self, userid: str, external_userid: str, *, source: str | None = None
    ) -> PendingCallback:
        """The member deletes the customer; `source="DELETE_BY_TRANSFER"` for 在职继承."""
        self.world.end_follow(userid, external_userid)
        return self._contact("del_external_contact", userid, external_userid, source=source)

    def customer_deletes_member(self, external_userid: str, userid: str) -> PendingCallback:
        """The customer deletes the member: the member still lists them, sends now fail."""
        relation = self.world.relation(userid, external_userid)
        if relation is None:
            raise ValueError(f"{userid} does not follow {external_userid}")
        relation.customer_deleted = True
        return self._contact("del_follow_user", userid, external_userid)

    def member_edits_customer(
        self,
        userid: str,
        external_userid: str,
        *,
        remark: str | None = None,
        description: str | None = None,
        add_tags: Sequence[str] = (),
        remove_tags: Sequence[str] = (),
        remark_mobiles: Sequence[str] | None = None,
    ) -> PendingCallback | None:
        """A member edits remark or tags in the client; mobiles alone fire no event."""
        relation = self.world.relation(userid, external_userid)
        if relation is None:
            raise ValueError(f"{userid} does not follow {external_userid}")
        if remark is not None:
            relation.remark = remark
        if description is not None:
            relation.description = description
        if remark_mobiles is not None:
            relation.remark_mobiles = list(remark_mobiles)
        self.world.retag(relation, list(add_tags), list(remove_tags))
        notable = remark is not None or description is not None or add_tags or remove_tags
        if not notable:
            return None
        return self._contact("edit_external_contact", userid, external_userid)

    def transfer_fails(
        self, takeover_userid: str, external_userid: str, reason: str = "customer_refused"
    ) -> PendingCallback:
        """在职继承 failed (`customer_refused` or `customer_limit_exceed`); UserID is the
        member who was to take over."""
        return self._contact("transfer_fail", takeover_userid, external_userid, fail_reason=reason)

    def customer_starts_chatting(self, external_userid: str, userid: str) -> None:
        """The customer messages the member first: open welcome codes can no longer be used."""
        world = self.world
        for code in world.welcome_codes.values():
            if code.external_userid == external_userid and code.used_at is None:
                code.used_at = world.now()
        relation = world.relation(userid, external_userid)
        if relation is not None:
            relation.last_interaction = world.now()

    def _contact(
        self,
        change: str,
        userid: str,
        external_userid: str,
        *,
        source: str | None = None,
        fail_reason: str | None = None,
    ) -> PendingCallback:
        world = self.world
        xml = events.contact_event(
            world.corp_id,
            world.now(),
            change,
            userid=userid,
            external_userid=external_userid,
            source=source,
            fail_reason=fail_reason,
        )
        return world.enqueue_callback(xml, event="change_external_contact", change_type=change)

    # -- customer groups ----------------------------------------------------------------

    def create_group(
        self, owner: str, name: str, members: Sequence[str] = (), *, notice: str = ""
    ) -> CustomerGroup:
        group = self.world.create_group(owner, name, members, notice=notice)
        self._chat("create", group.chat_id)
        return group

    def customer_joins_group(
        self,
        chat_id: str,
        customer: str | NewCustomer,
        *,
        join_scene: int = JOIN_QR_CODE,
        invitor: str | None = None,
        state: str = "",
    ) -> str:
        """`join_scene` uses groupchat/get's enum (1 invite, 2 link, 3 QR); the callback's
        JoinScene folds invites into 0."""
        ext = self._customer_id(customer)
        self._join(chat_id, ext, join_scene, invitor, state)
        return ext

    def member_joins_group(self, chat_id: str, userid: str, *, invitor: str | None = None) -> None:
        self._join(chat_id, userid, 1, invitor or self.world.chat(chat_id).owner, "")

    def _join(
        self, chat_id: str, userid: str, join_scene: int, invitor: str | None, state: str
    ) -> None:
        if join_scene != JOIN_QR_CODE and invitor is None:
            invitor = self.world.chat(chat_id).owner
        last, current = self.world.join_group(
            chat_id, userid, join_scene=join_scene, invitor=invitor, state=state
        )
        self._chat(
            "update",
            chat_id,
            update_detail="add_member",
            join_scene=3 if join_scene == JOIN_QR_CODE else 0,
            changed=[userid],
            last_mem_ver=last,
            cur_mem_ver=current,
        )

    def customer_leaves_group(
        self, chat_id: str, external_userid: str, *, removed: bool = False
    ) -> None:
        """QuitScene 0 when they left, 1 when the owner or an admin removed them."""
        last, current = self.world.leave_group(chat_id, external_userid)
        self._chat(
            "update",
            chat_id,
            update_detail="del_member",
            quit_scene=1 if removed else 0,
            changed=[external_userid],
            last_mem_ver=last,
            cur_mem_ver=current,
        )

    def rename_group(self, chat_id: str, name: str) -> None:
        self.world.chat(chat_id).name = name
        self._chat("update", chat_id, update_detail="change_name")

    def change_group_notice(self, chat_id: str, notice: str) -> None:
        self.world.chat(chat_id).notice = notice
        self._chat("update", chat_id, update_detail="change_notice")

    def change_group_owner(self, chat_id: str, owner: str) -> None:
        group = self.world.chat(chat_id)
        if group.member(owner) is None:
            raise ValueError(f"{owner} is not in {chat_id}")
        group.owner = owner
        self._chat("update", chat_id, update_detail="change_owner")

    def dismiss_group(self, chat_id: str) -> None:
        self.world.chat(chat_id).dismissed = True
        self._chat("dismiss", chat_id)

    def _chat(
        self,
        change: str,
        chat_id: str,
        *,
        update_detail: str | None = None,
        join_scene: int | None = None,
        quit_scene: int | None = None,
        changed: Sequence[str] | None = None,
        last_mem_ver: str | None = None,
        cur_mem_ver: str | None = None,
    ) -> PendingCallback:
        world = self.world
        xml = events.chat_event(
            world.corp_id,
            world.now(),
            change,
            chat_id,
            update_detail=update_detail,
            join_scene=join_scene,
            quit_scene=quit_scene,
            changed=changed,
            last_mem_ver=last_mem_ver,
            cur_mem_ver=cur_mem_ver,
        )
        return world.enqueue_callback(xml, event="change_external_chat", change_type=change)

    # -- corp tags ----------------------------------------------------------------------

    def admin_creates_tag(
        self, group_name: str, tag_names: Sequence[str], *, group_order: int = 0
    ) -> tuple[TagGroup, list[CorpTag]]:
        """An admin adds tags in the console (reusing a group of the same name); one event
        per new group and per new tag, all in the same second."""
        world = self.world
        group = next(
            (g for g in world.tag_groups.values() if g.name == group_name and not g.deleted),
            None,
        )
        if group is None:
            group = world.create_tag_group(group_name, order=group_order)
            self._tag("create", group.group_id, "tag_group")
        existing = {t.name for t in world.tags_in(group.group_id)}
        created = []
        for order, name in enumerate(tag_names, start=1):
            if name in existing:
                continue
            tag = world.create_tag(group.group_id, name, order=order)
            created.append(tag)
            self._tag("create", tag.tag_id, "tag")
        return group, created

    def admin_edits_tag(
        self, tag_or_group_id: str, *, name: str | None = None, order: int | None = None
    ) -> None:
        world = self.world
        item: CorpTag | TagGroup | None = world.live_tag(tag_or_group_id)
        kind = "tag"
        if item is None:
            item, kind = world.live_group(tag_or_group_id), "tag_group"
        if item is None:
            raise ValueError(f"no tag or group {tag_or_group_id}")
        if name is not None:
            item.name = name
        if order is not None:
            item.order = order
        self._tag("update", tag_or_group_id, kind)

    def admin_deletes_tag(self, tag_or_group_id: str) -> None:
        world = self.world
        if world.live_tag(tag_or_group_id) is not None:
            world.delete_tag(tag_or_group_id)
            self._tag("delete", tag_or_group_id, "tag")
        elif world.live_group(tag_or_group_id) is not None:
            world.delete_group(tag_or_group_id)
            self._tag("delete", tag_or_group_id, "tag_group")
        else:
            raise ValueError(f"no tag or group {tag_or_group_id}")

    def admin_shuffles_tags(self, group_id: str = "") -> None:
        """Reordering in the console: `shuffle` with the group id, or empty for all groups."""
        self._tag("shuffle", group_id, None)

    def _tag(self, change: str, tag_id: str, tag_type: str | None) -> PendingCallback:
        world = self.world
        xml = events.tag_event(world.corp_id, world.now(), change, tag_id, tag_type=tag_type)
        return world.enqueue_callback(xml, event="change_external_tag", change_type=change)

    # -- mass-send tasks and cards ------------------------------------------------------

    def member_confirms_task(self, msgid: str, userid: str) -> list[Recipient]:
        """The member sends their share of a mass-send; the receive cap applies now."""
        return self.world.confirm_task(msgid, userid)

    def member_taps_card_button(
        self,
        userid: str,
        task_id: str,
        event_key: str,
        *,
        selected: Sequence[tuple[str, Sequence[str]]] = (),
    ) -> str:
        """A member taps a card button; returns the click's fresh response_code."""
        world = self.world
        card = world.cards.get(task_id)
        if card is None:
            raise ValueError(f"no template card with task_id {task_id}")
        if userid not in card.recipients:
            raise ValueError(f"{userid} did not receive card {task_id}")
        if event_key not in card.button_keys():
            raise ValueError(f"card {task_id} has no button {event_key}")
        code = world.issue_response_code(task_id)
        card.clicks.append((userid, event_key, world.now()))
        xml = events.template_card_event(
            world.corp_id,
            world.now(),
            userid=userid,
            agent_id=world.agent_id,
            event_key=event_key,
            task_id=task_id,
            card_type=card.card_type,
            response_code=code.code,
            selected=selected,
        )
        world.enqueue_callback(xml, event="template_card_event")
        return code.code

    # -- customer moments ---------------------------------------------------------------

    def member_publishes_moment(self, moment_id: str, userid: str) -> int:
        """The member confirms a corp moment in the client (no callback follows);
        returns when it was published."""
        return self.world.publish_moment(moment_id, userid)


__all__ = ["AddResult", "NewCustomer", "Script"]
