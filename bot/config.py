"""Configuration: `config.yaml` validated strictly, overridden from `BOT_SECTION__KEY` variables.

Secrets (`wecom.secret`, `wecom.token`, `wecom.encoding_aes_key`, `server.admin_token`) are
`SecretStr`, so they never print; production supplies them, and the corp and agent ids,
through the environment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from bot.yamlsource import Loc, YamlDocument, YamlFileError, load_yaml

ENV_PREFIX = "BOT_"
ENV_DELIMITER = "__"
DEFAULT_CONFIG_PATH = Path("config.yaml")


class Section(BaseModel):
    """Base for every config section: immutable, unknown keys rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class QuotaConfig(Section):
    """WeCom's per-corp, per-API quota and the share of it the bot may use."""

    per_minute: int = Field(10_000, gt=0)
    per_hour: int = Field(150_000, gt=0)
    budget_ratio: float = Field(0.8, gt=0, le=1)


class MemberMessageLimit(Section):
    """Per-member cap for app messages (excess is dropped silently by WeCom)."""

    per_minute: int = Field(30, gt=0)
    per_hour: int = Field(1000, gt=0)


class RetryConfig(Section):
    """Backoff for transient WeCom errors (-1, 45033, timeouts)."""

    busy_max_retries: int = Field(3, ge=0, le=10)
    backoff_base_seconds: float = Field(0.5, gt=0)
    backoff_cap_seconds: float = Field(30.0, gt=0)
    rate_limit_pause_seconds: float = Field(60.0, gt=0)


class WeComConfig(Section):
    """The WeCom self-built app the bot acts as."""

    corp_id: str = ""
    agent_id: int = 0
    secret: SecretStr = SecretStr("")
    token: SecretStr = SecretStr("")
    encoding_aes_key: SecretStr = SecretStr("")
    api_base: str = "https://qyapi.weixin.qq.com/cgi-bin"
    timeout_seconds: float = Field(10.0, gt=0)
    quota: QuotaConfig = QuotaConfig()
    member_messages: MemberMessageLimit = MemberMessageLimit()
    retry: RetryConfig = RetryConfig()
    # Rate-limit buckets in the database, shared by every instance. "auto": on PostgreSQL
    # (several instances); on SQLite (one process) they stay in memory.
    shared_rate_limits: Literal["auto", "on", "off"] = "auto"

    @field_validator("shared_rate_limits", mode="before")
    @classmethod
    def _on_off(cls, value: object) -> object:
        # YAML reads a bare on/off as a boolean.
        if isinstance(value, bool):
            return "on" if value else "off"
        return value

    @field_validator("api_base")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("encoding_aes_key")
    @classmethod
    def _aes_key_shape(cls, value: SecretStr) -> SecretStr:
        raw = value.get_secret_value()
        if raw and (len(raw) != 43 or not raw.isalnum() or not raw.isascii()):
            raise ValueError("must be exactly 43 letters and digits")
        return value

    @field_validator("token")
    @classmethod
    def _token_shape(cls, value: SecretStr) -> SecretStr:
        raw = value.get_secret_value()
        if raw and (len(raw) > 32 or not raw.isalnum() or not raw.isascii()):
            raise ValueError("must be at most 32 letters and digits")
        return value


class DatabaseConfig(Section):
    """Where the store lives: SQLite by default, PostgreSQL in production."""

    url: str = "sqlite:///bot.db"
    busy_timeout_ms: int = Field(5000, ge=0)
    echo: bool = False


class ServerRole(StrEnum):
    """What a `bot serve` process runs (server.role, `bot serve --role`)."""

    ALL = "all"  # the HTTP app, dispatcher, outbox sender and scheduler in one process
    # The HTTP app only; stored callbacks wait for an "all" instance on the same database,
    # so acknowledging callbacks never shares a process with background work.
    GATEWAY = "gateway"


class ServerConfig(Section):
    """HTTP listener for `bot serve`."""

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    role: ServerRole = ServerRole.ALL
    # Added to the process's niceness when `bot serve` starts (0: unchanged). For instances
    # of role all beside gateway instances on shared cores: their tag syncs and planning
    # take whatever CPU is free, and a lower priority keeps the gateways' acknowledgements
    # from queueing behind them.
    nice: int = Field(0, ge=0, le=19)
    # Bearer token for the operator surface (/metrics); empty leaves that surface disabled.
    admin_token: SecretStr = SecretStr("")

    @field_validator("admin_token")
    @classmethod
    def _admin_token_length(cls, value: SecretStr) -> SecretStr:
        # A bearer token is the only guard of that surface: refuse one short enough to guess.
        raw = value.get_secret_value()
        if raw and (len(raw) < 16 or raw != raw.strip()):
            raise ValueError("must be at least 16 characters, without surrounding spaces")
        return value


class CallbackConfig(Section):
    """The callback gateway's guards."""

    max_body_bytes: int = Field(65_536, ge=1024)
    timestamp_tolerance_seconds: int = Field(300, ge=1)
    inbox_retention_hours: int = Field(72, ge=24)


class WelcomeConfig(Section):
    """Welcome messages, chosen by the channel `State` a customer came through."""

    enabled: bool = True
    default_template: str = "welcome/default.txt.j2"
    by_state: dict[str, str] = Field(default_factory=dict)
    lag_retry_seconds: float = Field(1.0, gt=0)


class OutboxConfig(Section):
    """The outbound queue and its sender."""

    lease_seconds: int = Field(60, ge=5)
    max_attempts: int = Field(8, ge=1)
    poll_interval_seconds: float = Field(1.0, gt=0)
    batch_size: int = Field(20, ge=1, le=500)
    concurrency: int = Field(4, ge=1, le=64)


class DispatcherConfig(Section):
    """Background processing of stored callbacks."""

    poll_interval_seconds: float = Field(1.0, gt=0)
    lease_seconds: int = Field(60, ge=5)
    max_attempts: int = Field(5, ge=1)
    linger_ms: int = Field(20, ge=0, le=1000)


class SchedulerConfig(Section):
    """The scheduler's leader lease: one instance runs the calendar, retag, segment and
    housekeeping jobs; another takes over once the leader has not renewed for a lease."""

    lease_seconds: float = Field(30.0, ge=5)
    renew_seconds: float = Field(10.0, gt=0)

    @model_validator(mode="after")
    def _renew_within_lease(self) -> SchedulerConfig:
        # Renewing at most every half lease lets one renewal fail without losing the lease.
        if self.renew_seconds * 2 > self.lease_seconds:
            raise ValueError("renew_seconds must be at most half of lease_seconds")
        return self


class SyncConfig(Section):
    """`bot sync` paging."""

    batch_userids: int = Field(100, ge=1, le=100)
    page_limit: int = Field(100, ge=1, le=100)
    group_page_limit: int = Field(1000, ge=1, le=1000)


class ImportConfig(Section):
    """`bot import-customers`: which column of the bank's export holds what."""

    columns: dict[str, str] = Field(
        default_factory=lambda: {
            "customer_key": "客户号",
            "external_userid": "企业微信客户ID",
            "mobile": "手机号",
            "aum": "AUM",
            "payroll": "代发标志",
            "birth_date": "出生日期",
            "age": "年龄",
            "products": "持有产品",
            "branch": "网点",
            "occupation": "职业",
            "interests": "兴趣爱好",
            "district": "商圈",
            "last_login": "最近手机银行登录",
            "opened_at": "开户日期",
        }
    )
    encoding: Literal["auto", "utf-8", "gbk"] = "auto"
    products_separator: str = "|"
    true_values: list[str] = Field(default_factory=lambda: ["1", "Y", "y", "是", "true", "TRUE"])
    false_values: list[str] = Field(
        default_factory=lambda: ["0", "N", "n", "否", "false", "FALSE", ""]
    )


class AssetTier(Section):
    """A tier entered at `min_aum` (yuan)."""

    code: str
    tag: str
    min_aum: float = Field(ge=0)


class LifecycleConfig(Section):
    """Thresholds for potential / new / growth / mature / churning."""

    new_account_days: int = Field(90, ge=1)
    mature_account_days: int = Field(730, ge=1)
    active_login_days: int = Field(30, ge=1)
    churn_inactive_days: int = Field(90, ge=1)
    growth_aum_trend: float = 0.05
    churn_aum_trend: float = -0.2
    tags: dict[str, str] = Field(
        default_factory=lambda: {
            "potential": "潜力客户",
            "new": "新客户",
            "growth": "成长客户",
            "mature": "成熟客户",
            "churning": "流失预警",
        }
    )


class KeywordRule(Section):
    """Tag customers whose remark or description (or activity answers) mention a keyword."""

    tag: str
    any: list[str] = Field(min_length=1)


class TaggingConfig(Section):
    """Rules that turn bank data and behaviour into tags."""

    asset_tiers: list[AssetTier] = Field(
        default_factory=lambda: [
            AssetTier(code="T1", tag="资产5万+", min_aum=50_000),
            AssetTier(code="T2", tag="资产10万+", min_aum=100_000),
            AssetTier(code="T3", tag="资产50万+", min_aum=500_000),
            AssetTier(code="T4", tag="资产600万+", min_aum=6_000_000),
        ]
    )
    hysteresis_ratio: float = Field(0.05, ge=0, lt=1)
    payroll_tag: str = "代发客户"
    senior_tag: str = "老年客户"
    senior_min_age: int = Field(60, ge=1)
    lifecycle: LifecycleConfig = LifecycleConfig()
    channels: dict[str, str] = Field(
        default_factory=lambda: {
            "qr_branch_a": "渠道-网点二维码",
            "qr_lobby": "渠道-大堂",
            "qr_senior_club": "渠道-银发俱乐部",
            "link_wechat_article": "渠道-公众号文章",
        }
    )
    keywords: list[KeywordRule] = Field(default_factory=list)


class TagSyncConfig(Section):
    """Pushing rule tags to WeCom corp tags (the bot owns one tag group per rule family)."""

    enabled: bool = True
    group_names: dict[str, str] = Field(
        default_factory=lambda: {
            "asset": "资产等级",
            "payroll": "代发",
            "senior": "年龄",
            "lifecycle": "生命周期",
            "channel": "来源渠道",
            "keyword": "兴趣标签",
        }
    )
    batch_size: int = Field(500, ge=1)


class SegmentRule(Section):
    """A group segment, by name, owner or member composition (any condition matches)."""

    segment: str
    name_contains: list[str] = Field(default_factory=list)
    owners: list[str] = Field(default_factory=list)
    member_tag: str | None = None
    member_tag_share: float = Field(0.5, gt=0, le=1)


class SegmentsConfig(Section):
    """Group segments: rules, plus segments set by hand per chat_id."""

    rules: list[SegmentRule] = Field(default_factory=list)
    manual: dict[str, list[str]] = Field(default_factory=dict)


class ContactWindow(Section):
    """Hours when some customers or groups may be reached (seniors: not at school-run or
    cooking time). A customer matching `audience`, or a group in one of `segments`, is only
    contacted inside `hours` ("HH:MM-HH:MM", local time)."""

    name: str
    audience: str | None = None
    segments: list[str] = Field(default_factory=list)
    hours: list[str] = Field(min_length=1)

    @field_validator("hours")
    @classmethod
    def _spans(cls, hours: list[str]) -> list[str]:
        for span in hours:
            start, sep, end = span.partition("-")
            if not sep or not (_is_hhmm(start) and _is_hhmm(end)) or start >= end:
                raise ValueError(f"{span!r}: write hours as HH:MM-HH:MM, start before end")
        return hours


def _is_hhmm(text: str) -> bool:
    hh, sep, mm = text.partition(":")
    return (
        bool(sep)
        and len(hh) == 2
        and len(mm) == 2
        and hh.isdigit()
        and mm.isdigit()
        and int(hh) < 24
        and int(mm) < 60
    )


class CopyLintConfig(Section):
    """Copy rules `bot check` applies to calendar content (WeChat folds long posts; bank
    marketing rules forbid promises)."""

    max_lines: int = Field(7, ge=1)
    hook_line_chars: int = Field(22, ge=1)
    product_by_line: int = Field(3, ge=1)
    text_max_bytes: int = Field(4000, ge=1, le=4000)
    max_attachments: int = Field(9, ge=0, le=9)
    forbidden: list[str] = Field(
        default_factory=lambda: [
            "保本",
            "稳赚",
            "无风险",
            "零风险",
            "稳赚不赔",
            "保收益",
            "刚性兑付",
            "100%收益",
        ]
    )
    risk_notice_phrases: list[str] = Field(
        default_factory=lambda: ["理财非存款", "产品有风险", "投资须谨慎", "投资需谨慎"],
        min_length=1,
    )


class CalendarConfig(Section):
    """The weekday theme calendar: caps, windows, lateness, reminders and result pulls."""

    enabled: bool = True
    # WeCom's receive cap per customer and per group: as many per month as the month has
    # days (default), or 7 per week, or 1 per day, as the corp admin set it.
    receive_cap: Literal["month_days", "week_7", "day_1"] = "month_days"
    lateness_minutes: int = Field(120, ge=0)
    contact_windows: list[ContactWindow] = Field(
        default_factory=lambda: [
            ContactWindow(
                name="seniors",
                audience='tag("老年客户")',
                segments=["银发群"],
                hours=["09:00-11:00", "14:00-17:00", "20:00-22:00"],
            )
        ]
    )
    remind_times: list[str] = Field(default_factory=lambda: ["11:00", "15:00", "19:30"])
    max_reminders_per_day: int = Field(3, ge=0, le=3)
    results_poll_minutes: int = Field(30, ge=1)
    results_final_hours: int = Field(72, ge=1)
    activity_link: str = "https://h5.example.com/h5/activity?week={week}"
    max_single_recipients: int = Field(10_000, ge=1, le=10_000)
    max_group_chats: int = Field(2_000, ge=1, le=2_000)
    lint: CopyLintConfig = CopyLintConfig()

    @field_validator("remind_times")
    @classmethod
    def _times(cls, times: list[str]) -> list[str]:
        for t in times:
            if not _is_hhmm(t):
                raise ValueError(f"{t!r}: write times as HH:MM")
        return times


class PrivacyConfig(Section):
    """Customers' choices about being contacted (PIPL Art. 24: an easy way to refuse)."""

    # A manager writing one of these into a customer's remark or description opts the
    # customer out for good; the same words start the opt-out command in the WeCom app.
    opt_out_keywords: list[str] = Field(default_factory=lambda: ["退订", "勿扰", "拒收"])

    @field_validator("opt_out_keywords")
    @classmethod
    def _words(cls, words: list[str]) -> list[str]:
        if any(not word.strip() or word != word.strip() for word in words):
            raise ValueError("keywords must be non-empty, without surrounding spaces")
        return words


class PathsConfig(Section):
    """Where content templates and calendars live (relative to the config file)."""

    content: str = "content"
    schedules: str = "schedules"


class Settings(Section):
    """The whole configuration."""

    timezone: str = "Asia/Shanghai"
    branch_name: str = "本支行"
    environment: Literal["development", "production"] = "development"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # "json": one JSON object per line, for log shippers (production); "text" for people.
    log_format: Literal["text", "json"] = "text"
    wecom: WeComConfig = WeComConfig()
    database: DatabaseConfig = DatabaseConfig()
    server: ServerConfig = ServerConfig()
    callback: CallbackConfig = CallbackConfig()
    welcome: WelcomeConfig = WelcomeConfig()
    outbox: OutboxConfig = OutboxConfig()
    dispatcher: DispatcherConfig = DispatcherConfig()
    scheduler: SchedulerConfig = SchedulerConfig()
    sync: SyncConfig = SyncConfig()
    import_: ImportConfig = Field(ImportConfig(), alias="import")
    tagging: TaggingConfig = TaggingConfig()
    tag_sync: TagSyncConfig = TagSyncConfig()
    segments: SegmentsConfig = SegmentsConfig()
    calendar: CalendarConfig = CalendarConfig()
    privacy: PrivacyConfig = PrivacyConfig()
    paths: PathsConfig = PathsConfig()
    base_dir: str = Field(".", exclude=True)

    def content_dir(self) -> Path:
        return Path(self.base_dir) / self.paths.content

    def schedules_dir(self) -> Path:
        return Path(self.base_dir) / self.paths.schedules


class ConfigError(Exception):
    """Configuration is invalid; `problems` lists each as 'place: message'."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid configuration:\n  " + "\n  ".join(problems))


def env_overrides(environ: Mapping[str, str]) -> tuple[dict[str, Any], dict[Loc, str]]:
    """Turn `BOT_A__B=v` variables into a nested dict, remembering each variable's name."""
    tree: dict[str, Any] = {}
    origins: dict[Loc, str] = {}
    problems: list[str] = []
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or name == "BOT_CONFIG":
            continue
        parts = [p.lower() for p in name[len(ENV_PREFIX) :].split(ENV_DELIMITER)]
        # Other tools share the BOT_ prefix (BOT_TEST_POSTGRES_URL, say): only names that
        # start with one of our keys are ours, and within those an unknown key is an error.
        if not all(parts) or parts[0] not in _top_level_keys():
            if meant := _single_underscore(parts[0]):
                problems.append(
                    f"environment {name}: not read; {ENV_PREFIX}{meant.upper()} sets that key"
                    f" (a section and its key are joined by {ENV_DELIMITER!r})"
                )
            continue
        node = tree
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                break
            node = child
        else:
            node[parts[-1]] = value
            origins[tuple(parts)] = name
    if problems:
        raise ConfigError(problems)
    return tree, origins


def _single_underscore(head: str) -> str | None:
    """`section__key` when `head` is a section and one of its keys joined by a single
    underscore (`database_url`): a mistyped override, which would otherwise be ignored
    as another tool's variable."""
    for section, field in Settings.model_fields.items():
        model = field.annotation
        key = field.alias or section
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            continue
        rest = head.removeprefix(f"{key}_")
        if rest != head and rest in {f.alias or n for n, f in model.model_fields.items()}:
            return f"{key}{ENV_DELIMITER}{rest}"
    return None


def _top_level_keys() -> set[str]:
    """Settings' keys as written in YAML (aliases where a key is a Python keyword)."""
    return {
        field.alias or name for name, field in Settings.model_fields.items() if name != "base_dir"
    }


def _deep_merge(base: Any, override: Mapping[str, Any]) -> dict[str, Any]:
    merged: dict[str, Any] = dict(base) if isinstance(base, Mapping) else {}
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _seed_default_mappings(
    data: Mapping[str, Any], overrides: Mapping[str, Any], model: type[BaseModel]
) -> dict[str, Any]:
    """`data` with the default of each mapping-valued field an override reaches into and
    the YAML leaves out, so that `BOT_TAG_SYNC__GROUP_NAMES__ASSET=…` changes one family's
    name instead of replacing every default family with that one. A mapping written in the
    YAML still replaces the default whole, as it always did."""
    seeded = dict(data)
    fields = {field.alias or name: field for name, field in model.model_fields.items()}
    for key, value in overrides.items():
        field = fields.get(key)
        if field is None or not isinstance(value, Mapping):
            continue
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            present = seeded.get(key)
            if isinstance(present, Mapping) or present is None:
                seeded[key] = _seed_default_mappings(present or {}, value, annotation)
        elif key not in seeded:
            default = field.get_default(call_default_factory=True)
            if isinstance(default, Mapping):
                seeded[key] = dict(default)
    return seeded


def _place(loc: Loc, doc: YamlDocument | None, origins: dict[Loc, str]) -> str:
    dotted = ".".join(str(p) for p in loc) or "(root)"
    for length in range(len(loc), 0, -1):
        if loc[:length] in origins:
            return f"environment {origins[loc[:length]]} ({dotted})"
    # A variable that reaches below the value refused (BOT_A__B__C where a.b must be text).
    for origin, name in origins.items():
        if loc and origin[: len(loc)] == loc:
            return f"environment {name} ({dotted})"
    if doc is not None:
        line = doc.line_of(loc)
        if line is not None and (loc in doc.lines or line > 1):
            return f"{doc.path}:{line} ({dotted})"
        return f"{doc.path} ({dotted})"
    return dotted


def build_settings(
    data: Mapping[str, Any] | None,
    environ: Mapping[str, str],
    *,
    doc: YamlDocument | None = None,
    base_dir: Path | None = None,
) -> Settings:
    """Validate YAML data overlaid with environment overrides."""
    if data is not None and not isinstance(data, Mapping):
        where = doc.path if doc else "config"
        raise ConfigError([f"{where}: top level must be a mapping of sections"])
    overrides, origins = env_overrides(environ)
    merged = _deep_merge(_seed_default_mappings(data or {}, overrides, Settings), overrides)
    if "base_dir" in merged:
        raise ConfigError(
            [_place(("base_dir",), doc, origins) + ": Extra inputs are not permitted"]
        )
    merged["base_dir"] = str(base_dir or Path("."))
    try:
        settings = Settings.model_validate(merged)
    except ValidationError as exc:
        problems = [
            f"{_place(tuple(err['loc']), doc, origins)}: {err['msg']}" for err in exc.errors()
        ]
        raise ConfigError(problems) from None
    if settings.environment == "production":
        _require_production_secrets(settings)
    return settings


def _require_production_secrets(settings: Settings) -> None:
    missing = [
        f"environment BOT_WECOM__{name.upper()}: required in production"
        for name in ("corp_id", "secret", "token", "encoding_aes_key")
        if not _value(getattr(settings.wecom, name))
    ]
    if not settings.wecom.agent_id:
        missing.append("environment BOT_WECOM__AGENT_ID: required in production")
    if missing:
        raise ConfigError(missing)


def _value(value: str | SecretStr) -> str:
    return value.get_secret_value() if isinstance(value, SecretStr) else value


def config_path(explicit: str | Path | None, environ: Mapping[str, str]) -> Path:
    """`--config`, else `BOT_CONFIG`, else ./config.yaml."""
    if explicit:
        return Path(explicit)
    if environ.get("BOT_CONFIG"):
        return Path(environ["BOT_CONFIG"])
    return DEFAULT_CONFIG_PATH


def load_config(
    path: str | Path | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Load `config.yaml` (or the given path) and apply `BOT_…` environment overrides."""
    env = os.environ if environ is None else environ
    file = config_path(path, env)
    doc: YamlDocument | None = None
    if file.exists():
        try:
            doc = load_yaml(file)
        except YamlFileError as exc:
            raise ConfigError([str(exc)]) from None
    elif path is not None or env.get("BOT_CONFIG"):
        raise ConfigError([f"{file}: file not found"])
    return build_settings(doc.data if doc else None, env, doc=doc, base_dir=file.parent.resolve())
