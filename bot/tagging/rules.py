"""Tag rules: pure functions from one customer's facts and current tags to the tags they set.

Every rule returns `TagDecision`s (tag, family, rule name, reason); nothing here reads the
database or the clock, so the engine and the tests call the same code.

Families (the keys of `tag_sync.group_names`): asset, payroll, senior, lifecycle, channel,
keyword. If two rules produce the same tag name, the first in that order wins.

Asset tier: tiers are ordered by `min_aum`; only the highest one applies. A tier is entered
at AUM ≥ min_aum. A customer currently holding tier N counts as being in every tier up to N,
and keeps each of those while AUM ≥ min_aum × (1 − hysteresis_ratio) (the exit line, rounded
to the fen). So at 5% a 资产50万+ customer keeps it down to 475,000, and one who falls out of
it keeps 资产10万+ down to 95,000 rather than dropping two tiers at once.

Lifecycle stage, first match wins:
  1. potential  no bank profile, or a profile with no account (no opening date, no assets)
  2. churning   no mobile-banking login for ≥ churn_inactive_days, or AUM trend ≤ churn_aum_trend
  3. new        account opened ≤ new_account_days ago
  4. growth     AUM trend ≥ growth_aum_trend
  5. mature     account opened > mature_account_days ago (stable: no churn or growth signal)
  6. growth     everything else: an account past `new` but not yet `mature` (or of unknown
                age), still being built up; the reason names recent logins when there are
An unknown login date or trend is no evidence either way. The AUM trend is
(AUM now − AUM `AUM_TREND_DAYS` ago) / AUM then, computed by the engine from the history.
Reasons name dates rather than day counts, so they read the same from one day to the next.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import date
from typing import NamedTuple

from bot.config import AssetTier, LifecycleConfig, TaggingConfig

ASSET = "asset"
PAYROLL = "payroll"
SENIOR = "senior"
LIFECYCLE = "lifecycle"
CHANNEL = "channel"
KEYWORD = "keyword"
FAMILIES = (ASSET, PAYROLL, SENIOR, LIFECYCLE, CHANNEL, KEYWORD)

STAGES = ("potential", "new", "growth", "mature", "churning")
AUM_TREND_DAYS = 30
RULE_NAME_MAX = 64

# The value types are NamedTuples: a full retag builds several per customer, 100k customers
# at a time, and a NamedTuple is made several times faster than a frozen dataclass.


class Profile(NamedTuple):
    """What the bank says about a customer (dates already in the bank's time zone)."""

    customer_key: str
    aum: float | None = None
    payroll: bool | None = None
    age: int | None = None
    birth_date: date | None = None
    opened_at: date | None = None
    last_login: date | None = None
    aum_trend: float | None = None


class Relation(NamedTuple):
    """A manager's follow relation: who, and the channel `State` the customer came through."""

    userid: str
    state: str | None = None
    added_on: date | None = None


class TextSource(NamedTuple):
    """Free text about a customer that keyword rules read (a remark, an activity answer)."""

    origin: str
    text: str


class Facts(NamedTuple):
    """Everything the rules may look at for one WeCom customer."""

    external_userid: str
    profile: Profile | None = None
    relations: tuple[Relation, ...] = ()
    texts: tuple[TextSource, ...] = ()


class TagDecision(NamedTuple):
    """One tag a rule sets, and why."""

    tag: str
    family: str
    rule: str
    reason: str


class Evaluation(NamedTuple):
    """The outcome for one customer: its rule tags, asset tier code and lifecycle stage."""

    tags: tuple[TagDecision, ...]
    asset_tier: str | None
    lifecycle: str


class _Tier(NamedTuple):
    tier: AssetTier
    level: int
    rule: str
    entry: str
    exit_line: float
    exit_text: str


@dataclass(frozen=True)
class RuleSet:
    """The tagging config with what every evaluation would recompute worked out once."""

    config: TaggingConfig
    tiers: tuple[_Tier, ...]  # highest first
    levels: dict[str, int]  # tier tag → its place counted from the lowest tier
    stage_tags: dict[str, tuple[str, str]]  # lifecycle stage → (tag, rule name)
    keywords: tuple[tuple[str, tuple[tuple[str, str], ...]], ...]  # (tag, ((word, folded)…))

    @classmethod
    def compile(cls, config: TaggingConfig) -> RuleSet:
        ordered = sorted(config.asset_tiers, key=lambda t: t.min_aum)
        tiers = [
            _Tier(
                tier=tier,
                level=level,
                rule=_rule(f"asset_tier:{tier.code}"),
                entry=f" ≥ {money(tier.min_aum)} ({tier.tag})",
                exit_line=exit_line(tier, config.hysteresis_ratio),
                exit_text=money(exit_line(tier, config.hysteresis_ratio)),
            )
            for level, tier in enumerate(ordered)
        ]
        return cls(
            config=config,
            tiers=tuple(reversed(tiers)),
            levels={t.tag: level for level, t in enumerate(ordered)},
            stage_tags={
                stage: (tag, _rule(f"lifecycle:{stage}"))
                for stage, tag in config.lifecycle.tags.items()
                if tag
            },
            keywords=tuple(
                (rule.tag, tuple((word, word.casefold()) for word in rule.any if word))
                for rule in config.keywords
            ),
        )


def evaluate(facts: Facts, current: Collection[str], rules: RuleSet, today: date) -> Evaluation:
    """Run every rule; `current` is the set of tags the customer holds now (for hysteresis)."""
    config = rules.config
    profile = facts.profile
    tier = asset_tier(profile.aum if profile else None, current, rules)
    stage, stage_reason = lifecycle_stage(profile, today, config.lifecycle)
    decisions = [tier[1]] if tier else []
    if profile is not None:
        decisions += payroll(profile, config)
        decisions += senior(profile, today, config)
    stage_tag = rules.stage_tags.get(stage)
    if stage_tag is not None:
        decisions.append(TagDecision(stage_tag[0], LIFECYCLE, stage_tag[1], stage_reason))
    if facts.relations:
        decisions += channels(facts.relations, config)
    if facts.texts:
        decisions += keywords(facts.texts, rules)
    return Evaluation(
        tags=tuple(_first_per_tag(decisions)),
        asset_tier=tier[0].code if tier else None,
        lifecycle=stage,
    )


def _first_per_tag(decisions: list[TagDecision]) -> list[TagDecision]:
    if len({d.tag for d in decisions}) == len(decisions):
        return decisions  # the usual case: no two rules gave the same tag
    seen: set[str] = set()
    kept: list[TagDecision] = []
    for decision in decisions:
        if decision.tag not in seen:
            seen.add(decision.tag)
            kept.append(decision)
    return kept


# -- asset tier ---------------------------------------------------------------------------


def exit_line(tier: AssetTier, hysteresis_ratio: float) -> float:
    """The AUM below which a customer in `tier` leaves it."""
    return round(tier.min_aum * (1 - hysteresis_ratio), 2)


def asset_tier(
    aum: float | None, current: Collection[str], rules: RuleSet
) -> tuple[AssetTier, TagDecision] | None:
    """The one tier `aum` puts the customer in, given the tags they hold now."""
    if aum is None:
        return None
    levels = rules.levels
    held = max((levels[tag] for tag in current if tag in levels), default=-1)
    for t in rules.tiers:
        if aum >= t.tier.min_aum:
            reason = f"AUM {money(aum)}{t.entry}"
        elif t.level <= held and aum >= t.exit_line:
            came_from = "" if t.level == held else f", coming down from {_tag_at(rules, held)}"
            reason = (
                f"kept {t.tier.tag}: AUM {money(aum)} still above the {t.exit_text} exit line "
                f"(hysteresis {rules.config.hysteresis_ratio * 100:g}%{came_from})"
            )
        else:
            continue
        return t.tier, TagDecision(t.tier.tag, ASSET, t.rule, reason)
    return None


def _tag_at(rules: RuleSet, level: int) -> str:
    return next(t.tier.tag for t in rules.tiers if t.level == level)


def money(value: float) -> str:
    """523,000 or 523,000.50: yuan with thousands separators, fen only when there are any."""
    return f"{value:,.0f}" if value == round(value) else f"{value:,.2f}"


# -- payroll and age ----------------------------------------------------------------------


def payroll(profile: Profile, config: TaggingConfig) -> list[TagDecision]:
    """The payroll (代发) tag when the bank's flag is set."""
    if not profile.payroll:
        return []
    return [
        TagDecision(config.payroll_tag, PAYROLL, "payroll", "代发 (payroll) flag set in bank data")
    ]


def age_on(birth_date: date, today: date) -> int:
    """Completed years; someone born on 29 February has their birthday on 1 March."""
    before_birthday = (today.month, today.day) < (birth_date.month, birth_date.day)
    return today.year - birth_date.year - int(before_birthday)


def senior(profile: Profile, today: date, config: TaggingConfig) -> list[TagDecision]:
    """The senior tag at age ≥ senior_min_age; a birth date wins over an exported age."""
    if profile.birth_date is not None:
        age, source = age_on(profile.birth_date, today), "from birth date"
    elif profile.age is not None:
        age, source = profile.age, "from bank data"
    else:
        return []
    if age < config.senior_min_age:
        return []
    reason = f"age {age} ({source}) ≥ {config.senior_min_age} ({config.senior_tag})"
    return [TagDecision(config.senior_tag, SENIOR, "senior_age", reason)]


# -- lifecycle ----------------------------------------------------------------------------


def lifecycle_stage(
    profile: Profile | None, today: date, config: LifecycleConfig
) -> tuple[str, str]:
    """The stage and its reason; see the module docstring for the precedence."""
    if profile is None:
        return "potential", "WeCom customer without a bank profile"
    if profile.opened_at is None and not profile.aum:
        return "potential", "bank profile shows no account (no opening date, no assets)"
    opened_days = (today - profile.opened_at).days if profile.opened_at else None
    login_days = (today - profile.last_login).days if profile.last_login else None
    trend = profile.aum_trend

    # Reasons name dates, not day counts, so they stay the same from one day to the next
    # while the facts do: a daily full retag then rewrites only what really changed.
    if login_days is not None and login_days >= config.churn_inactive_days:
        return "churning", (
            f"no mobile-banking login for ≥ {config.churn_inactive_days} days "
            f"(last on {profile.last_login})"
        )
    if trend is not None and trend <= config.churn_aum_trend:
        return "churning", f"AUM {_trend(trend)} (≤ {_percent(config.churn_aum_trend)})"
    if opened_days is not None and opened_days <= config.new_account_days:
        return "new", (
            f"account opened on {profile.opened_at} (within {config.new_account_days} days)"
        )
    if trend is not None and trend >= config.growth_aum_trend:
        return "growth", f"AUM {_trend(trend)} (≥ {_percent(config.growth_aum_trend)})"
    if opened_days is not None and opened_days > config.mature_account_days:
        return "mature", (
            f"account opened on {profile.opened_at} (over {config.mature_account_days} days), "
            "stable: no churn or growth signal"
        )
    if login_days is not None and login_days <= config.active_login_days:
        return "growth", (
            f"active: mobile-banking login within {config.active_login_days} days, no churn signal"
        )
    if opened_days is not None:
        return "growth", (
            f"account opened on {profile.opened_at}: past new ({config.new_account_days} days), "
            f"not yet mature ({config.mature_account_days} days), no churn signal"
        )
    return "growth", "holds assets, account age unknown, no churn signal"


def _trend(trend: float) -> str:
    direction = "up" if trend >= 0 else "down"
    return f"{direction} {abs(trend) * 100:.1f}% over {AUM_TREND_DAYS} days"


def _percent(ratio: float) -> str:
    return f"{ratio * 100:+g}%"


# -- channel and keyword ------------------------------------------------------------------


def channels(relations: Iterable[Relation], config: TaggingConfig) -> list[TagDecision]:
    """A tag per configured channel `State` any of the customer's relations came through;
    the earliest relation gives the reason."""
    mapping = config.channels
    known = [r for r in relations if r.state in mapping]
    if len(known) > 1:
        known.sort(key=lambda r: (r.added_on or date.min, r.userid))
    decisions: list[TagDecision] = []
    for relation in known:
        state = relation.state or ""
        when = f" on {relation.added_on.isoformat()}" if relation.added_on else ""
        reason = f"came through channel State {state} (manager {relation.userid}{when})"
        decisions.append(TagDecision(mapping[state], CHANNEL, _rule(f"channel:{state}"), reason))
    return _first_per_tag(decisions)


def keywords(texts: Iterable[TextSource], rules: RuleSet) -> list[TagDecision]:
    """A tag per keyword rule any text source mentions; the reason names the keyword and
    where it was found, never the text itself (remarks often hold names and numbers)."""
    folded = [(source.origin, source.text.casefold()) for source in texts if source.text]
    decisions: list[TagDecision] = []
    for tag, words in rules.keywords:
        found = _first_mention(folded, words)
        if found is not None:
            word, origin = found
            reason = f"「{word}」 in {origin}"
            decisions.append(TagDecision(tag, KEYWORD, _rule(f"keyword:{word}"), reason))
    return _first_per_tag(decisions)


def _first_mention(
    texts: Iterable[tuple[str, str]], words: Iterable[tuple[str, str]]
) -> tuple[str, str] | None:
    for origin, text in texts:
        for word, folded in words:
            if folded in text:
                return word, origin
    return None


def _rule(name: str) -> str:
    return name[:RULE_NAME_MAX]
