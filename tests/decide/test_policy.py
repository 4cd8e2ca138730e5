"""Each policy rule, on its own."""

from __future__ import annotations

import datetime as dt

from edge.decide.policy import HoldoutGroup, Policy, Reason, campaign_active, is_sensitive
from tests.helpers import demo_config

DAY = dt.date(2026, 11, 23)
TOK = b"\x01" * 16


def _policy(**policy_updates: object) -> Policy:
    cfg = demo_config()
    cfg = cfg.model_copy(
        update={"policy": cfg.policy.model_copy(update={"holdout_share": 0.0, **policy_updates})}
    )
    return Policy(cfg)


def test_tier_zero_is_counted_only() -> None:
    assert _policy().check(TOK, 0, 100, 0, DAY) is Reason.TIER_COUNTED_ONLY
    assert _policy().check(TOK, 1, 100, 0, DAY) is None


def test_min_dwell() -> None:
    p = _policy(min_dwell_s=15)
    assert p.check(TOK, 2, 14.9, 0, DAY) is Reason.MIN_DWELL
    assert p.check(TOK, 2, 15.0, 0, DAY) is None


def test_visit_cap_and_cooldown() -> None:
    p = _policy(max_offers_per_visit=2, cooldown_s=100)
    p.record_offer(TOK, "a", 0.0, DAY)
    assert p.check(TOK, 2, 60, 50.0, DAY) is Reason.COOLDOWN
    assert p.check(TOK, 2, 60, 100.0, DAY) is None
    p.record_offer(TOK, "b", 100.0, DAY)
    assert p.check(TOK, 2, 60, 1000.0, DAY) is Reason.VISIT_CAP
    assert p.already_offered(TOK) == {"a", "b"}
    p.forget(TOK)
    assert p.check(TOK, 2, 60, 1000.0, DAY) is None


def test_day_cap() -> None:
    p = _policy(max_offers_per_visit=10, max_offers_per_day=1, cooldown_s=0)
    p.record_offer(TOK, "a", 0.0, DAY)
    assert p.check(TOK, 2, 60, 10.0, DAY) is Reason.DAY_CAP
    assert p.check(TOK, 2, 60, 10.0, DAY + dt.timedelta(days=1)) is None


def test_screen_rate_limit() -> None:
    p = _policy(screen_rate_per_min=3)
    for i in range(3):
        p.record_offer(i.to_bytes(16, "big"), "a", float(i), DAY)
    assert p.check(TOK, 2, 60, 10.0, DAY) is Reason.SCREEN_RATE
    assert p.check(TOK, 2, 60, 61.0, DAY) is None


def test_holdout_is_stable_within_a_day_and_near_its_share() -> None:
    salts = iter([b"a" * 32, b"b" * 32])
    group = HoldoutGroup(0.10, salt_source=lambda n: next(salts))
    tokens = [i.to_bytes(16, "big") for i in range(5000)]
    first = [group.contains(t, DAY) for t in tokens]
    again = [group.contains(t, DAY) for t in tokens]
    assert first == again
    assert 0.085 < sum(first) / len(first) < 0.115
    next_day = [group.contains(t, DAY + dt.timedelta(days=1)) for t in tokens]
    assert next_day != first  # a new salt each day


def test_holdout_blocks_offers() -> None:
    cfg = demo_config()
    p = Policy(cfg, HoldoutGroup(1.0))
    assert p.check(TOK, 2, 60, 0, DAY) is Reason.HOLDOUT


def test_sensitive_categories_and_dayparts() -> None:
    cfg = demo_config()
    sensitive = frozenset(cfg.policy.sensitive_categories)
    by_id = {c.id: c for c in cfg.campaigns}
    assert is_sensitive(by_id["pharmacy-vitamins"], sensitive)
    assert not is_sensitive(by_id["coffee-beans-2for1"], sensitive)
    morning = dt.datetime(2026, 11, 23, 9, 30)
    evening = dt.datetime(2026, 11, 23, 18, 0)
    assert campaign_active(by_id["bakery-morning"], morning)
    assert not campaign_active(by_id["bakery-morning"], evening)
