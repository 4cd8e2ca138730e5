"""Offer policy at its boundaries (mutation gaps): rule order, the edges of every cap and window,
the per-day reset, retention of the per-token counters (a raw holder), and live rule changes."""

from __future__ import annotations

import datetime as dt

from edge.config.models import AppConfig
from edge.decide.policy import HoldoutGroup, Policy, Reason, campaign_active, is_sensitive
from edge.privacy.holders import Holding, RawHolder
from tests.helpers import demo_config

DAY = dt.date(2026, 11, 23)
TOK = b"\x01" * 16


class Mono:
    def __init__(self, t: float = 0.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def _cfg(**policy: object) -> AppConfig:
    cfg = demo_config()
    return cfg.model_copy(
        update={"policy": cfg.policy.model_copy(update={"holdout_share": 0.0, **policy})}
    )


def _policy(mono: Mono | None = None, **policy: object) -> Policy:
    return Policy(_cfg(**policy), monotonic=mono or Mono())


def test_reasons_are_stable_names() -> None:
    assert [r.value for r in Reason] == [
        "offered",
        "tier_counted_only",
        "departed",
        "holdout",
        "min_dwell",
        "visit_cap",
        "day_cap",
        "cooldown",
        "screen_rate",
        "no_candidate",
        "low_score",
    ]


def test_rules_run_in_order_and_the_first_that_blocks_is_the_reason() -> None:
    p = Policy(_cfg(min_dwell_s=15), HoldoutGroup(1.0), monotonic=Mono())
    assert p.check(TOK, 0, 0.0, 0.0, DAY) is Reason.TIER_COUNTED_ONLY  # before holdout
    assert p.check(TOK, 1, 0.0, 0.0, DAY) is Reason.HOLDOUT  # before min dwell
    q = _policy(min_dwell_s=15, max_offers_per_visit=1, cooldown_s=100)
    q.record_offer(TOK, "a", 0.0, DAY)
    assert q.check(TOK, 1, 1.0, 1.0, DAY) is Reason.MIN_DWELL  # before the caps
    assert q.check(TOK, 1, 20.0, 1.0, DAY) is Reason.VISIT_CAP  # before day cap and cooldown


def test_day_cap_counts_per_day_and_resets_on_a_new_day() -> None:
    p = _policy(max_offers_per_visit=10, max_offers_per_day=2, cooldown_s=0)
    p.record_offer(TOK, "a", 0.0, DAY)
    assert p.check(TOK, 2, 60, 1.0, DAY) is None  # 1 of 2
    tomorrow = DAY + dt.timedelta(days=1)
    p.record_offer(TOK, "b", 2.0, tomorrow)
    assert p.check(TOK, 2, 60, 3.0, tomorrow) is None  # a new day: 1 of 2 again
    p.record_offer(TOK, "c", 4.0, tomorrow)
    assert p.check(TOK, 2, 60, 5.0, tomorrow) is Reason.DAY_CAP
    assert p.offers_this_visit(TOK) == 3


def test_cooldown_edge() -> None:
    p = _policy(cooldown_s=180)
    p.record_offer(TOK, "a", 1000.0, DAY)
    assert p.check(TOK, 2, 60, 1179.9, DAY) is Reason.COOLDOWN
    assert p.check(TOK, 2, 60, 1180.0, DAY) is None


def test_screen_rate_window_is_sixty_seconds() -> None:
    p = _policy(screen_rate_per_min=2)
    p.record_offer(b"\x02" * 16, "a", 100.0, DAY)
    p.record_offer(b"\x03" * 16, "a", 130.0, DAY)
    assert p.check(TOK, 2, 60, 159.9, DAY) is Reason.SCREEN_RATE
    assert p.check(TOK, 2, 60, 160.0, DAY) is None  # the offer at 100 is exactly 60 s old
    assert p.check(TOK, 2, 60, 189.9, DAY) is None
    assert _policy(screen_rate_per_min=0).check(TOK, 2, 60, 0.0, DAY) is Reason.SCREEN_RATE


def test_bookkeeping_of_one_token() -> None:
    p = _policy()
    assert p.already_offered(TOK) == frozenset() and p.offers_this_visit(TOK) == 0
    p.record_offer(TOK, "a", 0.0, DAY)
    p.record_offer(TOK, "a", 500.0, DAY)
    assert p.already_offered(TOK) == frozenset({"a"})
    assert p.offers_this_visit(TOK) == 2
    assert p.tokens_held() == 1
    assert p.forget(TOK) == 1
    assert p.forget(TOK) == 0
    assert p.tokens_held() == 0


def test_counters_expire_retention_after_the_token_was_last_seen() -> None:
    mono = Mono(0.0)
    p = _policy(mono)  # demo retention: 30 s
    p.record_offer(TOK, "a", 0.0, DAY)
    mono.t = 25.0
    p.check(TOK, 2, 60, 25.0, DAY)  # seen again: the retention restarts
    p.purge(55.0)  # cutoff 25: seen exactly then, kept
    assert p.held(55.0) == Holding(1, 30.0)
    p.purge(55.5)
    assert p.held(55.5) == Holding(0, 0.0)
    assert type(p.held(55.5).records) is int  # status shows 0, not 0.0


def test_held_reports_the_stalest_token_and_clamps_at_zero() -> None:
    mono = Mono(10.0)
    p = _policy(mono)
    p.record_offer(TOK, "a", 0.0, DAY)
    mono.t = 14.0
    p.record_offer(b"\x02" * 16, "a", 0.0, DAY)
    assert p.held(20.0) == Holding(2, 10.0)
    assert p.held(5.0) == Holding(2, 0.0)
    assert p.holder_name == "decide.policy" and isinstance(p, RawHolder)


def test_update_config_keeps_counters_and_takes_new_rules() -> None:
    mono = Mono()
    p = _policy(mono, max_offers_per_visit=1)
    p.record_offer(TOK, "a", 0.0, DAY)
    assert p.check(TOK, 2, 60, 1000.0, DAY) is Reason.VISIT_CAP
    base = _cfg(max_offers_per_visit=3, sensitive_categories=["Tobacco"])
    new = base.model_copy(
        update={"privacy": base.privacy.model_copy(update={"raw_retention_s": 10.0})}
    )
    p.update_config(new)
    assert p.check(TOK, 2, 60, 1000.0, DAY) is None  # the counter stayed at 1 of 3
    p.update_config(
        new.model_copy(update={"policy": new.policy.model_copy(update={"holdout_share": 0.25})})
    )
    assert p.holdout.share == 0.25  # (membership is random per day: only the share is checked)
    assert p.sensitive == frozenset({"tobacco"})
    p.purge(10.0)  # seen at 0, the new retention is 10 s: cutoff 0, kept
    assert p.tokens_held() == 1
    p.purge(10.5)
    assert p.tokens_held() == 0


def test_sensitive_matching_ignores_case() -> None:
    cfg = demo_config()
    camp = cfg.campaigns[0].model_copy(update={"category": "PHARMACY"})
    assert is_sensitive(camp, frozenset({"pharmacy"}))
    p = Policy(_cfg(sensitive_categories=["Pharmacy", "ALCOHOL"]))
    assert p.sensitive == frozenset({"pharmacy", "alcohol"})


def test_a_disabled_campaign_is_never_active() -> None:
    cfg = demo_config()
    camp = cfg.campaigns[0]
    noon = dt.datetime(2026, 11, 23, 12, 0)
    assert campaign_active(camp.model_copy(update={"enabled": True}), noon) is True
    assert campaign_active(camp.model_copy(update={"enabled": False}), noon) is False


def test_holdout_draws_a_32_byte_salt_once_a_day() -> None:
    asked: list[int] = []

    def salt(n: int) -> bytes:
        asked.append(n)
        return bytes([len(asked)]) * n

    group = HoldoutGroup(0.5, salt_source=salt)
    tokens = [i.to_bytes(16, "big") for i in range(200)]
    first = [group.contains(t, DAY) for t in tokens]
    assert [group.contains(t, DAY) for t in tokens] == first
    assert asked == [32]
    second = [group.contains(t, DAY + dt.timedelta(days=1)) for t in tokens]
    assert asked == [32, 32] and second != first


def test_holdout_share_zero_and_all() -> None:
    tokens = [i.to_bytes(16, "big") for i in range(300)]
    assert not any(HoldoutGroup(0.0).contains(t, DAY) for t in tokens)
    assert all(HoldoutGroup(1.0).contains(t, DAY) for t in tokens)


def test_default_holdout_follows_the_config_share() -> None:
    assert Policy(_cfg(holdout_share=0.3)).holdout.share == 0.3


def test_the_policy_asks_the_holdout_about_todays_date() -> None:
    asked: list[int] = []

    def salt(n: int) -> bytes:
        asked.append(n)
        return b"s" * n

    p = Policy(_cfg(), HoldoutGroup(0.0, salt_source=salt), monotonic=Mono())
    p.check(TOK, 2, 60, 0.0, DAY)
    p.check(TOK, 2, 60, 0.0, DAY)
    assert asked == [32]  # drawn for DAY, once
    p.check(TOK, 2, 60, 0.0, DAY + dt.timedelta(days=1))
    assert asked == [32, 32]
