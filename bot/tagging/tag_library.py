"""The bot's own WeCom tag groups, one per rule family: created if missing, mapped, mirrored."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy import false, select, update
from sqlalchemy.orm import Session

from bot import mirror
from bot.config import Settings, TaggingConfig
from bot.store.db import Database
from bot.store.models import CorpTag, CustomerTag, RuleTagMapping, TagGroup
from bot.tagging.rules import ASSET, CHANNEL, KEYWORD, LIFECYCLE, PAYROLL, SENIOR
from bot.wecom.errors import ConfigurationError, RequestRejected
from bot.wecom.models import CorpTagGroup

if TYPE_CHECKING:
    from bot.wecom.client import WeComClient

MAX_NAME: Final = 30  # WeCom's limit for tag and group names (92117)

# What happened to one family's group.
OK: Final = "ok"  # group and every tag already there and mapped
CREATED: Final = "created"  # the group was created, with the family's tags
EXTENDED: Final = "extended"  # missing tags were added to the bot's group
MAPPED: Final = "mapped"  # nothing created; the mapping was (re)built from WeCom's list
ADOPTED: Final = "adopted"  # a group of that name that this app created earlier (lost mapping)
FOREIGN: Final = "foreign"  # a group of that name exists but another app or an admin made it
UNCONFIGURED: Final = "unconfigured"  # rule tags of a family with no tag_sync.group_names entry
FAILED: Final = "failed"  # WeCom refused; see `problem`
WOULD_CREATE: Final = "would_create"  # dry run
WOULD_EXTEND: Final = "would_extend"  # dry run
UNCHECKED: Final = "unchecked"  # dry run: a group of that name exists, ownership not probed


@dataclass
class FamilyReport:
    """One rule family's tag group in WeCom."""

    family: str
    group_name: str
    status: str
    group_id: str | None = None
    created_tags: list[str] = field(default_factory=list)
    mapped: int = 0
    problem: str | None = None  # something an operator has to fix
    note: str | None = None  # worth knowing, nothing to fix


@dataclass
class LibraryReport:
    """What `ensure_tag_library` found and did."""

    families: list[FamilyReport] = field(default_factory=list)
    read_wecom: bool = False
    dry_run: bool = False

    @property
    def created_groups(self) -> int:
        return sum(1 for f in self.families if f.status == CREATED)

    @property
    def created_tags(self) -> int:
        return sum(len(f.created_tags) for f in self.families)

    @property
    def problems(self) -> list[str]:
        return [f"{f.family} ({f.group_name}): {f.problem}" for f in self.families if f.problem]

    def family(self, name: str) -> FamilyReport | None:
        return next((f for f in self.families if f.family == name), None)

    def summary(self) -> str:
        verb = "would create" if self.dry_run else "created"
        groups = sum(1 for f in self.families if f.status in (CREATED, WOULD_CREATE))
        lines = [
            f"tag library: {len(self.families)} famil{'y' if len(self.families) == 1 else 'ies'}"
            f", {verb} {groups} group(s) and {self.created_tags} tag(s)"
            + ("" if self.read_wecom else " (local mapping complete, WeCom not asked)")
        ]
        lines.extend(f"  ! {problem}" for problem in self.problems)
        lines.extend(f"  - {f.family}: {f.note}" for f in self.families if f.note)
        return "\n".join(lines)


def rule_tag_catalogue(config: TaggingConfig) -> dict[str, list[str]]:
    """Every tag the configured rules can set, per family, in config order."""
    catalogue = {
        ASSET: [tier.tag for tier in config.asset_tiers],
        PAYROLL: [config.payroll_tag],
        SENIOR: [config.senior_tag],
        LIFECYCLE: list(config.lifecycle.tags.values()),
        CHANNEL: list(config.channels.values()),
        KEYWORD: [rule.tag for rule in config.keywords],
    }
    return {family: list(dict.fromkeys(t for t in tags if t)) for family, tags in catalogue.items()}


def wanted_library(session: Session, settings: Settings) -> dict[str, list[str]]:
    """The configured catalogue plus any rule tag customers hold that config does not list
    (a rule removed from config still has customers to take its tag off)."""
    wanted = rule_tag_catalogue(settings.tagging)
    claimed = {tag for tags in wanted.values() for tag in tags}
    held = session.execute(
        select(CustomerTag.family, CustomerTag.tag).distinct().order_by(CustomerTag.tag)
    )
    for family, tag in held:
        if tag not in claimed:
            wanted.setdefault(family, []).append(tag)
            claimed.add(tag)
    return {family: tags for family, tags in wanted.items() if tags}


@dataclass(frozen=True)
class _Local:
    """The mapping and the mirror as they stand, to decide whether WeCom must be asked."""

    mapping: dict[str, tuple[str, str | None, str | None]]  # tag → (family, group, tag id)
    live_tags: dict[str, str]  # tag id → group id, for tags not deleted
    live_groups: frozenset[str]

    @classmethod
    def load(cls, session: Session) -> _Local:
        mapping = {
            row.tag: (row.family, row.wecom_group_id, row.wecom_tag_id)
            for row in session.scalars(select(RuleTagMapping))
        }
        live = select(CorpTag.tag_id, CorpTag.group_id).where(CorpTag.deleted == false())
        live_tags = dict(session.execute(live).all())
        groups = session.scalars(select(TagGroup.group_id).where(TagGroup.deleted == false()))
        return cls(mapping, live_tags, frozenset(groups))

    def complete(self, tags: list[str]) -> bool:
        """Every tag mapped to a live tag of a live group, as the mapping says."""
        for tag in tags:
            _family, group_id, tag_id = self.mapping.get(tag, ("", None, None))
            if tag_id is None or group_id is None or group_id not in self.live_groups:
                return False
            if self.live_tags.get(tag_id) != group_id:
                return False
        return True

    def family_groups(self, family: str) -> list[str]:
        return sorted({g for f, g, _ in self.mapping.values() if f == family and g})

    def owned_groups(self) -> set[str]:
        return {g for _, g, _ in self.mapping.values() if g}


async def ensure_tag_library(
    client: WeComClient,
    db: Database,
    *,
    settings: Settings,
    now: datetime,
    refresh: bool = False,
    dry_run: bool = False,
) -> LibraryReport:
    """Make sure each rule family has its own WeCom tag group holding every rule tag, and
    that rule_tag_map names each tag's WeCom id.

    WeCom is asked only when the local mapping and mirror are incomplete (or `refresh`):
    the mirror learns of console deletions through change_external_tag callbacks. A group
    of the configured name that this app did not create is reported, never written to.
    With `dry_run` nothing is created or stored and no ownership probe is sent.
    """
    wanted = await db.run(lambda s: wanted_library(s, settings))
    local = await db.run(_Local.load)
    names = settings.tag_sync.group_names
    report = LibraryReport(dry_run=dry_run)
    todo: dict[str, list[str]] = {}
    for family, tags in wanted.items():
        group_name = names.get(family)
        if not group_name:
            report.families.append(
                FamilyReport(
                    family,
                    "",
                    UNCONFIGURED,
                    note=f"not synced (no tag_sync.group_names entry): {len(tags)} tag(s)",
                )
            )
        else:
            todo[family] = tags
    if not refresh and all(local.complete(tags) for tags in todo.values()):
        for family, tags in todo.items():
            group_id = local.mapping[tags[0]][1]
            report.families.append(FamilyReport(family, names[family], OK, group_id, [], len(tags)))
        return report

    listing = await client.tags.get_corp_tag_list()
    report.read_wecom = True
    if not dry_run:
        answer = [g.model_dump(mode="json") for g in listing.tag_group]
        # get_corp_tag_list with no filter is complete: whatever it omits was deleted.
        await db.run(lambda s: mirror.apply_tag_groups(s, answer, now=now, complete_scope=set()))
    live = {g.group_id: g for g in listing.tag_group if not g.deleted}
    builder = _FamilyBuilder(client, db, now=now, dry_run=dry_run, live=live, local=local)
    for family, tags in todo.items():
        report.families.append(await builder.ensure(family, names[family], tags))
    return report


class _FamilyBuilder:
    """Brings one family's group into shape; state shared across families of one run."""

    def __init__(
        self,
        client: WeComClient,
        db: Database,
        *,
        now: datetime,
        dry_run: bool,
        live: dict[str, CorpTagGroup],
        local: _Local,
    ) -> None:
        self.client = client
        self.db = db
        self.now = now
        self.dry_run = dry_run
        self.live = live
        self.local = local
        self.owned = local.owned_groups()
        self.foreign: set[str] = set()

    async def ensure(self, family: str, group_name: str, tags: list[str]) -> FamilyReport:
        report = FamilyReport(family, group_name, OK)
        valid = [t for t in tags if 1 <= len(t) <= MAX_NAME]
        if len(valid) < len(tags):
            bad = ", ".join(t for t in tags if t not in valid)
            report.problem = f"tag names longer than {MAX_NAME} characters skipped: {bad}"
        if not 1 <= len(group_name) <= MAX_NAME:
            report.status = FAILED
            report.problem = f"group name must be 1-{MAX_NAME} characters"
            return report
        try:
            group = await self._find_group(family, group_name, report)
            if report.status in (FOREIGN, UNCHECKED, FAILED):
                return report
            if group is None:
                return await self._create(group_name, family, valid, report)
            return await self._complete(group, family, valid, report)
        except (RequestRejected, ConfigurationError) as exc:
            report.status = FAILED
            report.problem = f"WeCom refused: {exc}"
            return report

    async def _find_group(
        self, family: str, group_name: str, report: FamilyReport
    ) -> CorpTagGroup | None:
        """The family's group: the one the mapping records, else one of that name this app
        owns, else one of that name a no-op edit shows this app created (mapping lost)."""
        for group_id in self.local.family_groups(family):
            if group_id in self.live:
                return self.live[group_id]
        named = [g for g in self.live.values() if g.group_name == group_name]
        for group in named:
            if group.group_id in self.owned:
                return group
        unknown = [g for g in named if g.group_id not in self.foreign]
        if unknown and self.dry_run:
            report.status = UNCHECKED
            report.group_id = unknown[0].group_id
            report.note = "a group of this name exists; its owner is checked on a real run"
            return None
        for group in unknown:
            if await self._probe_owned(group):
                report.status = ADOPTED
                self.owned.add(group.group_id)
                return group
            self.foreign.add(group.group_id)
        if named:
            report.status = FOREIGN
            report.group_id = named[0].group_id
            report.problem = (
                "a tag group of this name exists but was not created by this app; WeCom lets "
                "only the creating app edit it, so its tags are left alone. Rename or delete "
                "it in the admin console, or set another tag_sync.group_names entry"
            )
        return None

    async def _probe_owned(self, group: CorpTagGroup) -> bool:
        """Whether this app created `group`: WeCom refuses an edit by any other app, so
        re-setting the group's own order (a no-op) answers the question. A permission
        error (ConfigurationError) is not an answer and propagates."""
        try:
            await self.client.tags.edit_corp_tag(group.group_id, order=group.order)
        except RequestRejected:
            return False
        return True

    async def _create(
        self, group_name: str, family: str, tags: list[str], report: FamilyReport
    ) -> FamilyReport:
        if not tags:
            report.status = FAILED
            report.problem = report.problem or "no valid tags: WeCom does not allow empty groups"
            return report
        if self.dry_run:
            report.status = WOULD_CREATE
            report.created_tags = list(tags)
            return report
        # WeCom lists a larger order first: keep config order (lowest tier first) on screen.
        ordered = [{"name": t, "order": len(tags) - i} for i, t in enumerate(tags)]
        result = await self.client.tags.add_corp_tag(ordered, group_name=group_name)
        group = result.tag_group
        if not group.group_name:  # keep the mirror's name even if WeCom's answer omits it
            group = group.model_copy(update={"group_name": group_name})
        self.owned.add(group.group_id)
        self.live[group.group_id] = group
        report.status = CREATED
        report.group_id = group.group_id
        report.created_tags = [t.name for t in group.tag]
        report.mapped = await self._record(family, group, tags)
        return report

    async def _complete(
        self, group: CorpTagGroup, family: str, tags: list[str], report: FamilyReport
    ) -> FamilyReport:
        report.group_id = group.group_id
        have = {t.name for t in group.tag if not t.deleted}
        missing = [t for t in tags if t not in have]
        if missing and self.dry_run:
            report.status = WOULD_EXTEND
            report.created_tags = missing
            return report
        if missing:
            result = await self.client.tags.add_corp_tag(missing, group_id=group.group_id)
            added = result.tag_group
            merged = group.model_copy(update={"tag": [*group.tag, *added.tag]})
            self.live[group.group_id] = merged
            report.created_tags = [t.name for t in added.tag]
            if report.status == OK:
                report.status = EXTENDED
            report.mapped = await self._record(family, merged, tags)
            return report
        if report.status == OK and not self.local.complete(tags):
            report.status = MAPPED
        if not self.dry_run:
            report.mapped = await self._record(family, group, tags)
        return report

    async def _record(self, family: str, group: CorpTagGroup, tags: list[str]) -> int:
        """Store the group in the mirror (WeCom sends no callback for changes made through
        the API) and the mapping of each rule tag to its WeCom id."""
        ids = {t.name: t.id for t in group.tag if not t.deleted}
        answer: dict[str, Any] = group.model_dump(mode="json")
        now = self.now

        def write(session: Session) -> int:
            mirror.apply_tag_groups(session, [answer], now=now, complete_scope=None)
            return map_rule_tags(session, family, group.group_id, ids, tags, now=now)

        return await self.db.run(write)


def map_rule_tags(
    session: Session,
    family: str,
    group_id: str,
    ids: dict[str, str],
    tags: list[str],
    *,
    now: datetime,
) -> int:
    """Point each rule tag at its WeCom tag id; returns how many are mapped."""
    mapped = 0
    for tag in tags:
        tag_id = ids.get(tag)
        if tag_id is None:
            continue
        # wecom_tag_id is unique: a renamed tag may still be recorded under its old name.
        session.execute(
            update(RuleTagMapping)
            .where(RuleTagMapping.wecom_tag_id == tag_id, RuleTagMapping.tag != tag)
            .values(wecom_tag_id=None, updated_at=now)
        )
        row = session.get(RuleTagMapping, tag)
        if row is None:
            row = RuleTagMapping(tag=tag, family=family, updated_at=now)
            session.add(row)
        row.family = family
        row.wecom_group_id = group_id
        row.wecom_tag_id = tag_id
        row.updated_at = now
        session.flush()
        mapped += 1
    return mapped
