"""Decision engine with the real TFLite scorer: tiers, ranking, sensitive categories."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from edge.config import AppConfig
from edge.decide import DecisionEngine, HoldoutGroup, Policy, Reason
from edge.decide.scorer import CouponScorer
from edge.events import PresenceEvent, PresenceKind
from edge.presence import StoreLayout
from tests.helpers import demo_config

MONDAY_10 = dt.datetime(2026, 11, 23, 10, 0, tzinfo=ZoneInfo("Europe/Berlin")).timestamp()


@pytest.fixture(scope="module")
def scorer() -> CouponScorer:
    return CouponScorer.load()


def _engine(cfg: AppConfig, scorer: CouponScorer | None) -> DecisionEngine:
    return DecisionEngine(
        cfg, StoreLayout(cfg), scorer=scorer, policy=Policy(cfg, HoldoutGroup(0.0))
    )


def _ev(zone: str, tier: int, *, dwell: float = 60.0, token: int = 1) -> PresenceEvent:
    return PresenceEvent(
        kind=PresenceKind.DWELL,
        token=token.to_bytes(16, "big"),
        tier=tier,
        zone=zone,
        previous_zone="entrance",
        dwell_s=dwell,
        pace_per_min=1.0,
        ts=MONDAY_10,
    )


async def test_tier2_is_ranked_by_the_model(scorer: CouponScorer) -> None:
    engine = _engine(demo_config(), scorer)
    d = await engine.decide(_ev("coffee", 2))
    assert d.reason is Reason.OFFERED and d.offer is not None and d.cue is not None
    assert d.offer.model_ranked
    assert set(d.offer.payload()) == {"id", "token", "coupon_id", "expires_at"}
    assert d.cue.zone == "coffee" and d.cue.url.startswith("https://")
    assert engine.model_ranked == 1
    engine.close()


async def test_tier1_is_ranked_by_distance_without_model(scorer: CouponScorer) -> None:
    engine = _engine(demo_config(), scorer)
    d = await engine.decide(_ev("coffee", 1))
    assert d.offer is not None and not d.offer.model_ranked
    assert d.offer.coupon_id == "coffee-beans-2for1"  # the only campaign in the zone itself
    engine.close()


async def test_model_threshold_blocks_with_low_score(scorer: CouponScorer) -> None:
    cfg = demo_config()
    cfg = cfg.model_copy(update={"policy": cfg.policy.model_copy(update={"min_model_score": 1.0})})
    engine = _engine(cfg, scorer)
    d = await engine.decide(_ev("coffee", 2))
    assert d.reason is Reason.LOW_SCORE and d.offer is None
    engine.close()


async def test_sensitive_campaign_is_never_offered_to_a_person(scorer: CouponScorer) -> None:
    engine = _engine(demo_config(), scorer)
    for token in range(20):
        d = await engine.decide(_ev("pharmacy", 2, token=token))
        assert d.offer is None or d.offer.coupon_id != "pharmacy-vitamins"
    engine.close()


async def test_caps_hold_and_leave_forgets(scorer: CouponScorer) -> None:
    engine = _engine(demo_config(), scorer)
    first = await engine.decide(_ev("coffee", 2))
    assert first.reason is Reason.OFFERED
    again = await engine.decide(_ev("coffee", 2))
    assert again.reason is Reason.COOLDOWN
    leave = PresenceEvent(
        PresenceKind.LEAVE, (1).to_bytes(16, "big"), 2, "coffee", None, 0, 0, MONDAY_10
    )
    await engine.decide(leave)
    assert engine.policy.tokens_held() == 0
    assert engine.reasons["offered"] == 1 and engine.reasons["cooldown"] == 1
    engine.close()
