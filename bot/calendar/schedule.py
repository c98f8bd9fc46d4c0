"""Calendar files (`schedules/*.yaml`): strict models, validation with file:line, `Calendar`.

One calendar may span several files; slot ids are unique across all of them (regular and
override slots alike), because a slot id and a date name one send everywhere downstream.
Every problem is reported as "path:line: message", and one bad slot never hides the
problems of the others: each slot is validated on its own.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path, PurePosixPath
from types import MappingProxyType
from typing import Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from bot.calendar.group_audience import parse_groups
from bot.tagging.audience.errors import ExpressionError
from bot.tagging.audience.service import parse as parse_audience
from bot.yamlsource import Loc, YamlDocument, YamlFileError, load_yaml

Channel = Literal["group", "single", "moments"]
HolidayPolicy = Literal["skip", "next_workday", "variant"]
WindowPolicy = Literal["defer", "skip"]
OverrideMode = Literal["add", "replace"]
AttachmentKind = Literal["link", "image", "miniprogram"]
ATTACHMENT_KINDS: tuple[AttachmentKind, ...] = ("link", "image", "miniprogram")

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MAX_ATTACHMENTS = 9  # WeCom's limit for one mass-send
DEFAULT_PRIORITY = 10
_SLOT_ID = re.compile(r"[a-z0-9-]+")
_HHMM = re.compile(r"([01]\d|2[0-3]):([0-5]\d)")


class CalendarError(Exception):
    """The calendar is invalid; `problems` lists each as "path:line: message"."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid calendar:\n  " + "\n  ".join(problems))


# -- what a file may say (pydantic) ---------------------------------------------------------


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _http_url(value: str) -> str:
    if not value.startswith(("https://", "http://")):
        raise ValueError(f"{value!r} is not a web address: start it with https://")
    return value


class LinkSpec(_Spec):
    """A link card: title and url required; description and cover (an image url) optional."""

    title: str = Field(min_length=1)
    url: str
    description: str | None = None
    cover: str | None = None

    @field_validator("url", "cover")
    @classmethod
    def _web(cls, value: str | None) -> str | None:
        return None if value is None else _http_url(value)


class ImageSpec(_Spec):
    """An image by its web address."""

    url: str

    @field_validator("url")
    @classmethod
    def _web(cls, value: str) -> str:
        return _http_url(value)


class MiniprogramSpec(_Spec):
    """A mini-program card; `cover_media` is the media_id of its cover image."""

    title: str = Field(min_length=1)
    appid: str
    page: str = Field(min_length=1)
    cover_media: str = Field(min_length=1)

    @field_validator("appid")
    @classmethod
    def _appid(cls, value: str) -> str:
        if not value.startswith("wx"):
            raise ValueError(f"appid {value!r}: a mini-program appid starts with 'wx'")
        return value


class AttachmentSpec(_Spec):
    """Exactly one of link, image, miniprogram."""

    link: LinkSpec | None = None
    image: ImageSpec | None = None
    miniprogram: MiniprogramSpec | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> AttachmentSpec:
        given = [k for k in ATTACHMENT_KINDS if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "an attachment is exactly one of link, image or miniprogram"
                + (f" (found {', '.join(given)})" if given else "")
            )
        return self


class HolidaySpec(_Spec):
    """What a slot does on a statutory holiday; `template` only (and always) with variant."""

    policy: HolidayPolicy
    template: str | None = None

    @model_validator(mode="after")
    def _template(self) -> HolidaySpec:
        if self.policy == "variant" and not self.template:
            raise ValueError("policy variant needs `template:` (the holiday template)")
        if self.policy != "variant" and self.template is not None:
            raise ValueError(f"`template:` is only used with policy variant, not {self.policy}")
        return self


class SlotSpec(_Spec):
    """One slot as written. `days` is optional here because override slots may omit it
    (every day of the override); the loader requires it for regular slots."""

    id: str
    theme: str = Field(min_length=1)
    days: list[str] | None = None
    time: str
    channel: Channel
    audience: str | None = None
    groups: str | None = None
    tags: list[str] | None = None
    template: str = Field(min_length=1)
    attachments: list[AttachmentSpec] = Field(default_factory=list)
    priority: int = DEFAULT_PRIORITY
    holiday: HolidaySpec = HolidaySpec(policy="skip")
    window_policy: WindowPolicy = "defer"
    lateness_minutes: int | None = Field(None, ge=0)

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not _SLOT_ID.fullmatch(value):
            raise ValueError(f"slot id {value!r}: use lowercase letters, digits and '-'")
        return value

    @field_validator("days", mode="before")
    @classmethod
    def _days(cls, value: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, list) or not value:
            raise ValueError("write days as a list, e.g. [mon] or [sat, sun]")
        for day in value:
            if day not in WEEKDAYS:
                raise ValueError(f"{day!r} is not a day: write {', '.join(WEEKDAYS)}")
        if len(set(value)) != len(value):
            raise ValueError("a day is listed twice")
        return value

    @field_validator("time", mode="before")
    @classmethod
    def _time(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            # YAML 1.1 reads an unquoted 10:00 as the number 600 (base 60).
            hint = f"{value // 60:02d}:{value % 60:02d}"
            raise ValueError(f'write the time in quotes, e.g. time: "{hint}"')
        if not isinstance(value, str) or not _HHMM.fullmatch(value):
            raise ValueError(f'{value!r} is not a time: write "HH:MM" (24-hour), e.g. "09:30"')
        return value

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and any(not tag.strip() for tag in value):
            raise ValueError("a tag name is empty")
        return value

    @field_validator("attachments", mode="before")
    @classmethod
    def _attachment_count(cls, value: Any) -> Any:
        if isinstance(value, list) and len(value) > MAX_ATTACHMENTS:
            raise ValueError(f"at most {MAX_ATTACHMENTS} attachments (WeCom), found {len(value)}")
        return value


def _day(value: Any) -> Any:
    if isinstance(value, datetime):
        raise ValueError("write a date without a time, e.g. 2026-11-09")
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a date: write YYYY-MM-DD") from None
    return value


class OverrideSpec(_Spec):
    """Special days: extra slots (add) or only these slots (replace), and slots to skip."""

    name: str = Field(min_length=1)
    from_: date = Field(alias="from")
    to: date
    mode: OverrideMode = "add"
    skip: list[str] = Field(default_factory=list)
    # Validated one by one by the loader, so each slot's problems point at that slot.
    slots: list[dict[str, Any]] = Field(default_factory=list)

    @field_validator("from_", "to", mode="before")
    @classmethod
    def _dates(cls, value: Any) -> Any:
        return _day(value)


class FileSpec(_Spec):
    """A calendar file's top level."""

    name: str = Field(min_length=1)
    slots: list[dict[str, Any]] = Field(default_factory=list)
    overrides: list[dict[str, Any]] = Field(default_factory=list)


# Every key a calendar file may use, for "did you mean" hints on unknown keys.
_KNOWN_KEYS = sorted(
    {
        info.alias or name
        for model in (
            FileSpec,
            OverrideSpec,
            SlotSpec,
            HolidaySpec,
            AttachmentSpec,
            LinkSpec,
            ImageSpec,
            MiniprogramSpec,
        )
        for name, info in model.model_fields.items()
    }
)


# -- what the rest of the bot uses -----------------------------------------------------------


@dataclass(frozen=True)
class Attachment:
    """An attachment as written in the calendar; `to_wecom` gives WeCom's JSON."""

    kind: AttachmentKind
    # Read-only; left out of the hash because a mapping has none.
    fields: Mapping[str, str] = field(hash=False)

    def to_wecom(self) -> dict[str, Any]:
        """The `attachments[]` item of externalcontact/add_msg_template (92135)."""
        f = self.fields
        if self.kind == "link":
            body = {
                "title": f["title"],
                "picurl": f.get("cover"),
                "desc": f.get("description"),
                "url": f["url"],
            }
        elif self.kind == "image":
            body = {"pic_url": f["url"]}
        else:
            body = {
                "title": f["title"],
                "pic_media_id": f["cover_media"],
                "appid": f["appid"],
                "page": f["page"],
            }
        return {"msgtype": self.kind, self.kind: {k: v for k, v in body.items() if v is not None}}


@dataclass(frozen=True)
class Slot:
    """A slot of the calendar, validated."""

    id: str
    theme: str
    days: frozenset[int] | None  # weekday numbers, Monday 0; None = every day (overrides)
    time: time
    channel: Channel
    audience: str | None
    groups: str | None
    tags: tuple[str, ...]
    template: str
    attachments: tuple[Attachment, ...]
    priority: int
    holiday: HolidayPolicy
    holiday_template: str | None
    window_policy: WindowPolicy
    lateness_minutes: int | None
    source: str  # "path:line" of the slot in its file
    override: str | None = None  # the override that brings it, if any

    def on_weekday(self, day: date) -> bool:
        return self.days is None or day.weekday() in self.days


@dataclass(frozen=True)
class Override:
    """Special days from `start` to `end` inclusive."""

    name: str
    start: date
    end: date
    mode: OverrideMode
    skip: frozenset[str]
    slots: tuple[Slot, ...]
    source: str

    def covers(self, day: date) -> bool:
        return self.start <= day <= self.end


@dataclass(frozen=True)
class Calendar:
    """Every slot and override of the calendar files in a folder."""

    names: tuple[str, ...]
    slots: tuple[Slot, ...]
    overrides: tuple[Override, ...]
    default_lateness: timedelta = timedelta(minutes=120)

    def all_slots(self) -> tuple[Slot, ...]:
        """Regular slots, then the slots of each override."""
        return self.slots + tuple(s for o in self.overrides for s in o.slots)

    def slot(self, slot_id: str) -> Slot:
        for slot in self.all_slots():
            if slot.id == slot_id:
                return slot
        raise KeyError(slot_id)


def load_calendar(
    folder: Path, content_root: Path | None = None, *, lateness_minutes: int = 120
) -> Calendar:
    """Load and validate every `*.yaml` / `*.yml` file in `folder`.

    `content_root`: the content folder templates must exist in (None: not checked).
    `lateness_minutes`: the default for slots that set none (settings.calendar).
    Raises CalendarError listing every problem found.
    """
    if not folder.is_dir():
        raise CalendarError([f"{folder}: schedules folder not found"])
    loader = _Loader(content_root)
    for path in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]):
        loader.load_file(path)
    loader.check_skips()
    if loader.problems:
        raise CalendarError(loader.problems)
    return Calendar(
        names=tuple(loader.names),
        slots=tuple(loader.slots),
        overrides=tuple(loader.overrides),
        default_lateness=timedelta(minutes=lateness_minutes),
    )


# -- loading ---------------------------------------------------------------------------------


def _where(doc: YamlDocument, loc: Loc) -> str:
    line = doc.line_of(loc)
    return f"{doc.path}:{line}" if line else doc.path


def _message(err: Mapping[str, Any]) -> str:
    loc = tuple(err["loc"])
    key = next((str(p) for p in reversed(loc) if isinstance(p, str)), "")
    kind = err["type"]
    if kind == "extra_forbidden":
        close = difflib.get_close_matches(key, _KNOWN_KEYS, n=1, cutoff=0.6)
        return f"unknown key {key!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
    if kind == "missing":
        return f"missing key {key!r}"
    if kind == "value_error":
        return f"{key}: {err['ctx']['error']}" if key else str(err["ctx"]["error"])
    return f"{key}: {err['msg']}" if key else str(err["msg"])


_S = TypeVar("_S", bound=_Spec)


class _Loader:
    def __init__(self, content_root: Path | None) -> None:
        self.content_root = content_root
        self.problems: list[str] = []
        self.names: list[str] = []
        self.slots: list[Slot] = []
        self.overrides: list[Override] = []
        self.ids: dict[str, str] = {}  # slot id -> where it was first defined
        self.skips: list[tuple[str, str]] = []  # (slot id, where the skip names it)

    def problem(self, doc: YamlDocument, loc: Loc, message: str) -> None:
        self.problems.append(f"{_where(doc, loc)}: {message}")

    def validate(self, doc: YamlDocument, loc: Loc, model: type[_S], data: Any) -> _S | None:
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            for err in exc.errors():
                self.problem(doc, (*loc, *err["loc"]), _message(err))
            return None

    def load_file(self, path: Path) -> None:
        try:
            doc = load_yaml(path)
        except YamlFileError as exc:
            self.problems.append(str(exc))
            return
        if not isinstance(doc.data, dict):
            self.problem(doc, (), "a calendar file is a mapping with name:, slots: and overrides:")
            return
        spec = self.validate(doc, (), FileSpec, doc.data)
        if spec is None:
            return
        self.names.append(spec.name)
        for index, raw in enumerate(spec.slots):
            slot = self.slot(doc, ("slots", index), raw, override=None)
            if slot is not None:
                self.slots.append(slot)
        for index, raw in enumerate(spec.overrides):
            override = self.override(doc, ("overrides", index), raw)
            if override is not None:
                self.overrides.append(override)

    def claim_id(self, doc: YamlDocument, loc: Loc, raw: Mapping[str, Any]) -> None:
        slot_id = raw.get("id")
        if not isinstance(slot_id, str):
            return
        where = _where(doc, loc)
        if slot_id in self.ids:
            self.problem(
                doc, (*loc, "id"), f"duplicate slot id {slot_id!r} (also at {self.ids[slot_id]})"
            )
        else:
            self.ids[slot_id] = where

    def slot(
        self, doc: YamlDocument, loc: Loc, raw: dict[str, Any], override: str | None
    ) -> Slot | None:
        # Ids are claimed before validation so that a slot with other problems still
        # counts as defined (a skip naming it is not reported as unknown).
        self.claim_id(doc, loc, raw)
        spec = self.validate(doc, loc, SlotSpec, raw)
        if spec is None:
            return None
        before = len(self.problems)
        if spec.days is None and override is None:
            self.problem(doc, loc, "missing key 'days'")
        self.check_channel(doc, loc, spec)
        self.check_expressions(doc, loc, spec)
        self.check_template(doc, (*loc, "template"), spec.template)
        if spec.holiday.template is not None:
            self.check_template(doc, (*loc, "holiday", "template"), spec.holiday.template)
        if len(self.problems) > before:
            return None
        return _build_slot(spec, _where(doc, loc), override)

    def check_channel(self, doc: YamlDocument, loc: Loc, spec: SlotSpec) -> None:
        if spec.groups is not None and spec.channel != "group":
            self.problem(
                doc,
                (*loc, "groups"),
                f"groups is for group slots; a {spec.channel} slot chooses customers "
                "with audience:",
            )
        if spec.tags is not None and spec.channel != "moments":
            self.problem(doc, (*loc, "tags"), "tags is for moments slots only")
        if spec.channel == "group" and spec.audience is not None:
            self.problem(
                doc,
                (*loc, "audience"),
                "audience is for single and moments slots; a group slot chooses groups "
                "with groups:",
            )
        if spec.channel == "single" and spec.audience is None:
            self.problem(doc, loc, "a single slot needs audience: (which customers get it)")
        if spec.channel == "moments" and spec.attachments:
            # WeCom wants every moments image and link cover uploaded first
            # (media/upload_attachment), which the calendar does not do: refuse here rather
            # than fail at send time.
            self.problem(
                doc,
                (*loc, "attachments"),
                "moments posts are text only here (WeCom needs moments media uploaded "
                "first); put the link in the text",
            )

    def check_expressions(self, doc: YamlDocument, loc: Loc, spec: SlotSpec) -> None:
        for key, source in (("audience", spec.audience), ("groups", spec.groups)):
            if source is None:
                continue
            try:
                if key == "audience":
                    parse_audience(source)
                else:
                    parse_groups(source)
            except ExpressionError as exc:
                self.problem(doc, (*loc, key), f"{key} column {exc.column}: {exc.message}")

    def check_template(self, doc: YamlDocument, loc: Loc, name: str) -> None:
        pure = PurePosixPath(name)
        if pure.is_absolute() or ".." in pure.parts or "\\" in name:
            self.problem(doc, loc, f"template {name!r}: write a path inside content/")
            return
        if self.content_root is not None and not _is_file(self.content_root / pure):
            self.problem(doc, loc, f"template {name!r} not found in {self.content_root}")

    def override(self, doc: YamlDocument, loc: Loc, raw: dict[str, Any]) -> Override | None:
        spec = self.validate(doc, loc, OverrideSpec, raw)
        if spec is None:
            return None
        before = len(self.problems)
        if spec.to < spec.from_:
            self.problem(doc, (*loc, "to"), "to is before from (for a single day, from == to)")
        if spec.mode == "replace" and spec.skip:
            self.problem(
                doc,
                (*loc, "skip"),
                "skip is for mode add: mode replace already runs only the override's slots",
            )
        for index, slot_id in enumerate(spec.skip):
            self.skips.append((slot_id, _where(doc, (*loc, "skip", index))))
        slots: list[Slot] = []
        for index, slot_raw in enumerate(spec.slots):
            slot = self.slot(doc, (*loc, "slots", index), slot_raw, override=spec.name)
            if slot is not None:
                slots.append(slot)
        if len(self.problems) > before:
            return None
        return Override(
            name=spec.name,
            start=spec.from_,
            end=spec.to,
            mode=spec.mode,
            skip=frozenset(spec.skip),
            slots=tuple(slots),
            source=_where(doc, loc),
        )

    def check_skips(self) -> None:
        """Skips may name slots of other files, so they are checked once all are read."""
        for slot_id, where in self.skips:
            if slot_id not in self.ids:
                close = difflib.get_close_matches(slot_id, list(self.ids), n=1, cutoff=0.6)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                self.problems.append(f"{where}: skip names unknown slot {slot_id!r}{hint}")


def _is_file(path: Path) -> bool:
    # is_file() still raises for a name the system refuses outright (too long, a NUL).
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def _attachments(spec: SlotSpec) -> list[Attachment]:
    out: list[Attachment] = []
    for item in spec.attachments:
        for kind in ATTACHMENT_KINDS:
            body = getattr(item, kind)
            if body is not None:
                fields = body.model_dump(exclude_none=True)
                out.append(Attachment(kind, MappingProxyType(fields)))
    return out


def _build_slot(spec: SlotSpec, source: str, override: str | None) -> Slot:
    hh, mm = spec.time.split(":")
    return Slot(
        id=spec.id,
        theme=spec.theme,
        days=None if spec.days is None else frozenset(WEEKDAYS.index(d) for d in spec.days),
        time=time(int(hh), int(mm)),
        channel=spec.channel,
        audience=spec.audience,
        groups=spec.groups,
        tags=tuple(spec.tags or ()),
        template=spec.template,
        attachments=tuple(_attachments(spec)),
        priority=spec.priority,
        holiday=spec.holiday.policy,
        holiday_template=spec.holiday.template,
        window_policy=spec.window_policy,
        lateness_minutes=spec.lateness_minutes,
        source=source,
        override=override,
    )
