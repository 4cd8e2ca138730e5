"""Aggregates: contribution bounds, noise on every cell, suppression below k."""

from __future__ import annotations

import math
import random

import pytest

from edge.events import PresenceEvent, PresenceKind
from edge.privacy import Budget, DiscreteLaplace, WindowAggregator
from edge.privacy.aggregates import DWELL_LABELS, dwell_bucket
from tests.helpers import demo_config


class _NoNoise(DiscreteLaplace):
    def __init__(self) -> None:
        super().__init__(1.0)

    def sample(self) -> int:
        return 0


def _ev(kind: PresenceKind, token: int, zone: str, ts: float, **kw: object) -> PresenceEvent:
    return PresenceEvent(
        kind=kind,
        token=token.to_bytes(16, "big"),
        tier=1,
        zone=zone,
        previous_zone=kw.get("previous_zone"),  # type: ignore[arg-type]
        dwell_s=float(kw.get("dwell_s", 0.0)),  # type: ignore[arg-type]
        pace_per_min=0.0,
        ts=ts,
        previous_dwell_s=float(kw.get("previous_dwell_s", 0.0)),  # type: ignore[arg-type]
    )


def test_budget_derivation_matches_docs() -> None:
    cfg = demo_config()
    b = Budget.from_config(cfg)
    m = cfg.privacy.max_zones_per_window
    assert b.sensitivity == 2 * m + cfg.policy.max_offers_per_visit + 1
    assert b.epsilon_per_window == pytest.approx(cfg.privacy.epsilon_per_day / 4)
    assert b.noise_scale == pytest.approx(b.sensitivity / b.epsilon_per_window)
    assert b.spent(1) == pytest.approx(b.epsilon_per_window)
    assert b.spent(100) == pytest.approx(cfg.privacy.epsilon_per_day)


def test_counts_are_bounded_and_suppressed_below_k() -> None:
    agg = WindowAggregator(demo_config(), noise=_NoNoise())
    t0 = 1_800_000_000.0 - (1_800_000_000 % 900)
    for tok in range(7):
        agg.presence(_ev(PresenceKind.ENTER, tok, "coffee", t0 + tok))
        agg.presence(_ev(PresenceKind.DWELL, tok, "coffee", t0 + tok + 10))  # no double count
    for tok in range(3):
        agg.presence(_ev(PresenceKind.ENTER, 100 + tok, "dairy", t0 + 5))
    # Tokens walking through many zones count in at most max_zones_per_window (3) of them.
    for tok in range(200, 206):
        for i, zone in enumerate(["produce", "bakery", "snacks", "frozen", "household"]):
            agg.presence(_ev(PresenceKind.ENTER, tok, zone, t0 + 20 + i))
    assert agg.due(t0 + 900)
    window = agg.close(t0 + 900)
    assert window is not None
    zones = window.payload["zones"]
    assert zones["coffee"]["visitors"] == 7
    assert "dairy" not in zones  # 3 < k = 5: suppressed
    assert window.payload["cells_suppressed"] > 0
    assert [zones[z]["visitors"] for z in ("produce", "bakery", "snacks")] == [6, 6, 6]
    assert "frozen" not in zones and "household" not in zones
    assert agg.contributions_held() == 0


def test_dwell_histogram_and_offers() -> None:
    agg = WindowAggregator(demo_config(), noise=_NoNoise())
    t0 = 1_800_000_000.0 - (1_800_000_000 % 900)
    for tok in range(6):
        agg.presence(_ev(PresenceKind.ENTER, tok, "coffee", t0))
        agg.presence(
            _ev(
                PresenceKind.ENTER,
                tok,
                "snacks",
                t0 + 70,
                previous_zone="coffee",
                previous_dwell_s=70.0,
            )
        )
        agg.offer(tok.to_bytes(16, "big"), "coffee-beans-2for1", t0 + 71)
        agg.offer(tok.to_bytes(16, "big"), "coffee-beans-2for1", t0 + 72)
        agg.offer(tok.to_bytes(16, "big"), "coffee-beans-2for1", t0 + 73)  # over the cap of 2
    window = agg.close(t0 + 900)
    assert window is not None
    assert window.payload["zones"]["coffee"]["dwell_s"] == {DWELL_LABELS[dwell_bucket(70)]: 6}
    assert window.payload["offers"] == {"coffee-beans-2for1": 12}


def test_every_cell_gets_noise_even_empty_ones() -> None:
    rng = random.Random(1)
    cfg = demo_config()
    agg = WindowAggregator(cfg, noise=DiscreteLaplace(Budget.from_config(cfg).noise_scale, rng))
    agg.presence(_ev(PresenceKind.ENTER, 1, "coffee", 0.0))
    published = 0
    for _ in range(50):
        w = agg.close(900.0)
        assert w is not None
        published += sum(1 for z in w.payload["zones"].values() if z["visitors"] is not None)
        agg.presence(_ev(PresenceKind.ENTER, 1, "coffee", 0.0))
    # With noise of scale ~36 some empty cells are pushed to >= k and published (noisy).
    assert published > 0


def test_discrete_laplace_variance_matches_analytic() -> None:
    noise = DiscreteLaplace(3.0, random.Random(0))
    xs = [noise.sample() for _ in range(40_000)]
    mean = sum(xs) / len(xs)
    var = sum((x - mean) ** 2 for x in xs) / len(xs)
    assert abs(mean) < 0.1
    assert math.isclose(var, noise.variance(), rel_tol=0.05)
