"""Tag rules as pure functions: tiers (hysteresis), payroll, senior, lifecycle, channel, keyword."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from bot.config import AssetTier, KeywordRule, LifecycleConfig, TaggingConfig
from bot.tagging.rules import (
    ASSET,
    CHANNEL,
    KEYWORD,
    LIFECYCLE,
    PAYROLL,
    SENIOR,
    STAGES,
    Facts,
    Profile,
    Relation,
    RuleSet,
    TagDecision,
    TextSource,
    age_on,
    asset_tier,
    channels,
    evaluate,
    keywords,
    lifecycle_stage,
    money,
    payroll,
    senior,
)

TODAY = date(2026, 11, 23)
CONFIG = TaggingConfig()
LIFE = LifecycleConfig()
T1, T2, T3, T4 = "资产5万+", "资产10万+", "资产50万+", "资产600万+"


RULES = RuleSet.compile(CONFIG)


def tier(aum: float | None, *held: str, config: TaggingConfig = CONFIG) -> TagDecision | None:
    found = asset_tier(aum, set(held), RuleSet.compile(config))
    return found[1] if found else None


def stage(profile: Profile | None) -> str:
    return lifecycle_stage(profile, TODAY, LIFE)[0]


def days_ago(days: int) -> date:
    return TODAY - timedelta(days=days)


# -- asset tiers ----------------------------------------------------------------------------


def test_exactly_at_min_aum_enters_the_tier_with_the_reason() -> None:
    decision = tier(500_000)
    assert decision == TagDecision(T3, ASSET, "asset_tier:T3", "AUM 500,000 ≥ 500,000 (资产50万+)")


def test_just_below_min_aum_stays_in_the_tier_below() -> None:
    decision = tier(499_999.99)
    assert decision is not None
    assert decision.tag == T2
    assert decision.reason == "AUM 499,999.99 ≥ 100,000 (资产10万+)"


def test_hysteresis_keeps_the_current_tier_inside_the_band() -> None:
    decision = tier(480_000, T3)
    assert decision is not None
    assert decision.tag == T3
    assert decision.reason == (
        "kept 资产50万+: AUM 480,000 still above the 475,000 exit line (hysteresis 5%)"
    )


def test_hysteresis_exit_line_is_inclusive_and_a_fen_below_drops() -> None:
    kept = tier(475_000, T3)
    dropped = tier(474_999.99, T3)
    assert kept is not None
    assert kept.tag == T3
    assert dropped is not None
    assert dropped.tag == T2


def test_below_the_band_drops_to_the_next_tier() -> None:
    decision = tier(470_000, T3)
    assert decision is not None
    assert decision.tag == T2
    assert decision.reason == "AUM 470,000 ≥ 100,000 (资产10万+)"


def test_a_new_customer_inside_the_band_gets_the_lower_tier() -> None:
    decision = tier(480_000)
    assert decision is not None
    assert decision.tag == T2


def test_a_customer_from_a_lower_tier_inside_the_band_does_not_get_the_higher_tier() -> None:
    decision = tier(480_000, T2)
    assert decision is not None
    assert decision.tag == T2


def test_only_the_highest_tier_applies() -> None:
    decision = tier(7_000_000, T1, T2, T3)
    assert decision is not None
    assert decision.tag == T4
    found = evaluate(Facts("wm1", Profile("C1", aum=7_000_000)), {T1, T2, T3}, RULES, TODAY)
    assert [d.tag for d in found.tags if d.family == ASSET] == [T4]
    assert found.asset_tier == "T4"


def test_falling_out_of_a_tier_keeps_the_band_of_the_tier_below() -> None:
    # 96,000 is under T2's 100,000 but above its 95,000 exit line: a T3 customer was in T2 too.
    decision = tier(96_000, T3)
    assert decision is not None
    assert decision.tag == T2
    assert "kept 资产10万+" in decision.reason
    assert "coming down from 资产50万+" in decision.reason
    lower = tier(94_000, T3)
    assert lower is not None
    assert lower.tag == T1


def test_below_every_tier_or_without_aum_gives_no_tier() -> None:
    assert tier(47_000, T1) is None
    kept = tier(47_500, T1)
    assert kept is not None
    assert kept.tag == T1
    assert tier(None, T3) is None
    assert tier(0) is None


def test_zero_hysteresis_drops_at_once() -> None:
    config = TaggingConfig(hysteresis_ratio=0)
    decision = tier(499_999, T3, config=config)
    assert decision is not None
    assert decision.tag == T2


def test_tiers_are_ordered_by_min_aum_not_by_their_place_in_config() -> None:
    config = TaggingConfig(
        asset_tiers=[
            AssetTier(code="B", tag="high", min_aum=1000),
            AssetTier(code="A", tag="low", min_aum=10),
        ]
    )
    rules = RuleSet.compile(config)
    entered = asset_tier(5000, set(), rules)
    assert entered is not None
    assert entered[0].code == "B"
    kept = asset_tier(960, {"high"}, rules)
    assert kept is not None
    assert kept[0].code == "B"


def test_money_shows_fen_only_when_there_are_any() -> None:
    assert money(523_000) == "523,000"
    assert money(523_000.5) == "523,000.50"


# -- payroll and senior ---------------------------------------------------------------------


def test_payroll_flag_sets_the_payroll_tag() -> None:
    assert payroll(Profile("C1", payroll=True), CONFIG) == [
        TagDecision("代发客户", PAYROLL, "payroll", "代发 (payroll) flag set in bank data")
    ]
    assert payroll(Profile("C1", payroll=False), CONFIG) == []
    assert payroll(Profile("C1"), CONFIG) == []


@pytest.mark.parametrize(("age", "is_senior"), [(59, False), (60, True), (75, True)])
def test_senior_by_exported_age(age: int, is_senior: bool) -> None:
    found = senior(Profile("C1", age=age), TODAY, CONFIG)
    assert bool(found) is is_senior
    if found:
        assert found[0].family == SENIOR
        assert found[0].reason == f"age {age} (from bank data) ≥ 60 (老年客户)"


def test_senior_from_birth_date_turns_on_the_birthday() -> None:
    on_the_day = senior(Profile("C1", birth_date=date(1966, 11, 23)), TODAY, CONFIG)
    day_before = senior(Profile("C1", birth_date=date(1966, 11, 24)), TODAY, CONFIG)
    assert [d.tag for d in on_the_day] == ["老年客户"]
    assert on_the_day[0].reason == "age 60 (from birth date) ≥ 60 (老年客户)"
    assert day_before == []


def test_birth_date_wins_over_a_stale_exported_age() -> None:
    assert senior(Profile("C1", age=70, birth_date=date(1980, 1, 1)), TODAY, CONFIG) == []


def test_leap_day_birthdays_count_from_the_first_of_march() -> None:
    born = date(1964, 2, 29)
    assert age_on(born, date(2024, 2, 29)) == 60
    assert age_on(born, date(2025, 2, 28)) == 60
    assert age_on(born, date(2025, 3, 1)) == 61


# -- lifecycle ------------------------------------------------------------------------------


def test_potential_without_profile_or_without_account() -> None:
    assert lifecycle_stage(None, TODAY, LIFE) == (
        "potential",
        "WeCom customer without a bank profile",
    )
    assert stage(Profile("C1")) == "potential"
    assert stage(Profile("C1", aum=0)) == "potential"
    assert stage(Profile("C1", aum=10)) != "potential"
    assert stage(Profile("C1", opened_at=days_ago(400))) != "potential"


def test_churning_after_churn_inactive_days_without_login() -> None:
    old = days_ago(1000)
    assert stage(Profile("C1", opened_at=old, last_login=days_ago(90))) == "churning"
    assert stage(Profile("C1", opened_at=old, last_login=days_ago(89))) == "mature"
    _, reason = lifecycle_stage(Profile("C1", opened_at=old, last_login=days_ago(120)), TODAY, LIFE)
    assert reason == "no mobile-banking login for ≥ 90 days (last on 2026-07-26)"


def test_churning_when_aum_trend_falls_to_the_churn_line() -> None:
    old = days_ago(1000)
    assert stage(Profile("C1", opened_at=old, aum_trend=-0.2)) == "churning"
    assert stage(Profile("C1", opened_at=old, aum_trend=-0.19)) == "mature"
    _, reason = lifecycle_stage(Profile("C1", opened_at=old, aum_trend=-0.25), TODAY, LIFE)
    assert reason == "AUM down 25.0% over 30 days (≤ -20%)"


def test_new_within_new_account_days() -> None:
    assert stage(Profile("C1", opened_at=days_ago(90))) == "new"
    assert stage(Profile("C1", opened_at=days_ago(91))) == "growth"
    _, reason = lifecycle_stage(Profile("C1", opened_at=days_ago(10)), TODAY, LIFE)
    assert reason == "account opened on 2026-11-13 (within 90 days)"


def test_growth_by_aum_trend_even_for_an_old_account() -> None:
    profile = Profile("C1", opened_at=days_ago(2000), aum_trend=0.05)
    assert lifecycle_stage(profile, TODAY, LIFE) == (
        "growth",
        "AUM up 5.0% over 30 days (≥ +5%)",
    )
    assert stage(Profile("C1", opened_at=days_ago(2000), aum_trend=0.0499)) == "mature"


def test_mature_after_mature_account_days_when_stable() -> None:
    assert stage(Profile("C1", opened_at=days_ago(731), last_login=days_ago(2))) == "mature"
    assert stage(Profile("C1", opened_at=days_ago(730))) == "growth"


def test_between_new_and_mature_is_growth_and_names_recent_logins() -> None:
    active = Profile("C1", opened_at=days_ago(300), last_login=days_ago(3))
    idle = Profile("C1", opened_at=days_ago(300), last_login=days_ago(45))
    assert lifecycle_stage(active, TODAY, LIFE) == (
        "growth",
        "active: mobile-banking login within 30 days, no churn signal",
    )
    assert lifecycle_stage(idle, TODAY, LIFE)[0] == "growth"
    assert lifecycle_stage(idle, TODAY, LIFE)[1] == (
        "account opened on 2026-01-27: past new (90 days), not yet mature (730 days), "
        "no churn signal"
    )
    assert stage(Profile("C1", aum=1000)) == "growth"


def test_lifecycle_precedence() -> None:
    # churning beats new, new beats growth, growth (trend) beats mature.
    assert stage(Profile("C1", opened_at=days_ago(10), aum_trend=-0.5)) == "churning"
    assert stage(Profile("C1", opened_at=days_ago(10), last_login=days_ago(95))) == "churning"
    assert stage(Profile("C1", opened_at=days_ago(10), aum_trend=0.5)) == "new"
    assert stage(Profile("C1", opened_at=days_ago(2000), aum_trend=0.5)) == "growth"
    # a profile with no account is potential whatever else it says
    assert stage(Profile("C1", last_login=days_ago(400), aum_trend=-0.9)) == "potential"


def test_every_stage_is_reachable_and_has_a_default_tag() -> None:
    reached = {
        stage(None),
        stage(Profile("C1", opened_at=days_ago(10))),
        stage(Profile("C1", opened_at=days_ago(300))),
        stage(Profile("C1", opened_at=days_ago(1000))),
        stage(Profile("C1", opened_at=days_ago(1000), aum_trend=-0.5)),
    }
    assert reached == set(STAGES)
    assert set(LIFE.tags) == set(STAGES)


def test_lifecycle_tag_uses_the_configured_name_and_carries_the_reason() -> None:
    found = evaluate(Facts("wm1", Profile("C1", opened_at=days_ago(5))), set(), RULES, TODAY)
    assert found.lifecycle == "new"
    assert TagDecision(
        "新客户", LIFECYCLE, "lifecycle:new", "account opened on 2026-11-18 (within 90 days)"
    ) in (found.tags)
    without = TaggingConfig(lifecycle=LifecycleConfig(tags={"mature": "成熟"}))
    quiet = evaluate(
        Facts("wm1", Profile("C1", opened_at=days_ago(5))), set(), RuleSet.compile(without), TODAY
    )
    assert quiet.lifecycle == "new"
    assert all(d.family != LIFECYCLE for d in quiet.tags)


# -- channel and keyword --------------------------------------------------------------------


def test_channel_tag_from_the_state_with_its_reason() -> None:
    found = channels(
        [
            Relation("li", "qr_lobby", date(2026, 3, 1)),
            Relation("wang", "unknown_state", date(2026, 1, 1)),
            Relation("zhao", None),
            Relation("qian", "qr_lobby", date(2026, 5, 1)),
        ],
        CONFIG,
    )
    assert found == [
        TagDecision(
            "渠道-大堂",
            CHANNEL,
            "channel:qr_lobby",
            "came through channel State qr_lobby (manager li on 2026-03-01)",
        )
    ]


def test_keyword_tags_name_the_keyword_and_the_source_not_the_text() -> None:
    rules = [
        KeywordRule(tag="小微企业主", any=["老板", "店主"]),
        KeywordRule(tag="教师", any=["老师"]),
        KeywordRule(tag="VIP", any=["vip"]),
    ]
    texts = [
        TextSource("manager li's remark", "张三 13812345678 店主"),
        TextSource("manager li's description", "开了家 VIP 茶馆"),
    ]
    found = keywords(texts, RuleSet.compile(TaggingConfig(keywords=rules)))
    assert found == [
        TagDecision("小微企业主", KEYWORD, "keyword:店主", "「店主」 in manager li's remark"),
        TagDecision("VIP", KEYWORD, "keyword:vip", "「vip」 in manager li's description"),
    ]
    assert all("13812345678" not in d.reason and "张三" not in d.reason for d in found)


def test_keyword_rule_reads_any_text_source_such_as_activity_answers() -> None:
    config = TaggingConfig(keywords=[KeywordRule(tag="退休人员", any=["退休"])])
    facts = Facts("wm1", texts=(TextSource("quiz answer on 2026-11-20", "我已经退休了"),))
    found = evaluate(facts, set(), RuleSet.compile(config), TODAY)
    assert (
        TagDecision("退休人员", KEYWORD, "keyword:退休", "「退休」 in quiz answer on 2026-11-20")
        in found.tags
    )
    assert keywords([TextSource("x", "")], RuleSet.compile(config)) == []
    assert keywords([TextSource("x", "在职")], RuleSet.compile(config)) == []


def test_the_same_tag_from_two_families_is_kept_once_in_family_order() -> None:
    config = TaggingConfig(keywords=[KeywordRule(tag="代发客户", any=["代发"])])
    facts = Facts("wm1", Profile("C1", payroll=True), texts=(TextSource("r", "代发"),))
    found = evaluate(facts, set(), RuleSet.compile(config), TODAY)
    assert [(d.tag, d.family) for d in found.tags if d.tag == "代发客户"] == [("代发客户", PAYROLL)]


def test_a_customer_without_profile_gets_only_potential_channel_and_keyword_tags() -> None:
    config = TaggingConfig(keywords=[KeywordRule(tag="教师", any=["老师"])])
    facts = Facts(
        "wm1",
        relations=(Relation("li", "qr_senior_club"),),
        texts=(TextSource("manager li's remark", "王老师"),),
    )
    found = evaluate(facts, {T3}, RuleSet.compile(config), TODAY)
    assert found.asset_tier is None
    assert found.lifecycle == "potential"
    assert {d.tag for d in found.tags} == {"潜力客户", "渠道-银发俱乐部", "教师"}
