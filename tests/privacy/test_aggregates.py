"""Aggregates: contribution bounds, noise on every cell, suppression below k."""

from __future__ import annotations

import math
import random
from fractions import Fraction

from edge.events import PresenceEvent, PresenceKind
from edge.privacy import Budget, DiscreteLaplace, WindowAggregator
from edge.privacy.aggregates import DWELL_LABELS, dwell_bucket
from edge.privacy.holders import Holding, RawHolder
from tests.helpers import demo_config


class _NoNoise(DiscreteLaplace):
    def __init__(self) -> None:
        super().__init__(1)

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
    p = cfg.privacy
    m = p.max_zones_per_window
    assert b.sensitivity == 2 * m + cfg.policy.max_offers_per_visit + 1
    assert b.tokens_per_window == math.ceil(p.window_s / p.token_rotation_s) + 1
    assert b.epsilon_per_window == Fraction(str(p.epsilon_per_day)) / p.max_windows_per_day
    assert b.noise_scale == b.tokens_per_window * b.sensitivity / b.epsilon_per_window
    assert isinstance(b.noise_scale, Fraction)
    # every publishable window, every token a person can show in it: exactly ε per day
    assert b.worst_case_per_day == Fraction(str(p.epsilon_per_day))
    # default config: Δ = 9, T = 3, 96 windows → b = 2592
    assert (b.sensitivity, b.tokens_per_window, b.max_windows_per_day) == (9, 3, 96)
    assert b.noise_scale == 2592


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
    agg = WindowAggregator(
        cfg, noise=DiscreteLaplace(Budget.from_config(cfg).noise_scale, rng.randrange)
    )
    published = 0
    for w_i in range(50):
        agg.presence(_ev(PresenceKind.ENTER, 1, "coffee", w_i * 900.0))
        w = agg.close((w_i + 1) * 900.0)
        assert w is not None
        published += sum(1 for z in w.payload["zones"].values() if z["visitors"] is not None)
    # With noise of scale 2592 about half the empty or near-empty cells come out >= k.
    assert published > 0


def _contribution(agg: WindowAggregator) -> int:
    """L1 size of the raw counts accumulated so far in the open window."""
    c = agg._counts
    return (
        sum(c.visitors.values())
        + sum(sum(h) for h in c.dwell.values())
        + sum(c.offers.values())
        + c.holdout
    )


def test_leave_and_return_does_not_raise_a_tokens_contribution() -> None:
    cfg = demo_config()
    agg = WindowAggregator(cfg, noise=_NoNoise())
    bound = Budget.from_config(cfg).sensitivity
    zones = [z.id for z in cfg.store.zones]
    coupon = cfg.campaigns[0].id
    token = (42).to_bytes(16, "big")
    t = 1_800_000_000.0 - (1_800_000_000 % 900)
    for cycle in range(10):  # ten visits inside one window, 30+ s of silence between them
        for i, zone in enumerate(zones[cycle % 3 : cycle % 3 + 4]):
            agg.presence(
                _ev(
                    PresenceKind.ENTER,
                    42,
                    zone,
                    t,
                    previous_zone=zones[0],
                    previous_dwell_s=40.0 * i,
                )
            )
            t += 5
        agg.offer(token, coupon, t)
        agg.offer(token, coupon, t)
        agg.offer(token, coupon, t)
        agg.holdout(token, t)
        agg.presence(_ev(PresenceKind.LEAVE, 42, zones[cycle % 5], t, dwell_s=65.0))
        t += 35
    assert t < 1_800_000_000 - (1_800_000_000 % 900) + 900  # still the same window
    assert 0 < _contribution(agg) <= bound
    # and each part of the declared sensitivity Δ = 2m + offers + 1 holds on its own
    c, m = agg._counts, cfg.privacy.max_zones_per_window
    assert sum(c.visitors.values()) == m  # it did visit more than m zones
    assert 0 < sum(sum(h) for h in c.dwell.values()) <= m
    assert sum(c.offers.values()) == cfg.policy.max_offers_per_visit  # 30 offers tried
    assert c.holdout == 1  # 10 holdout counts tried
    assert agg.held(0.0).records == 1  # one bookkeeping entry, however many visits


def test_bookkeeping_is_keyed_by_a_salted_digest_not_the_token() -> None:
    agg = WindowAggregator(demo_config(), noise=_NoNoise())
    token = bytes(range(16))
    agg.presence(_ev(PresenceKind.ENTER, int.from_bytes(token, "big"), "coffee", 0.0))
    (key,) = agg._contrib
    assert token not in key and key != token
    assert agg.forget(token) == 1 and agg.held(0.0).records == 0
    agg.presence(_ev(PresenceKind.ENTER, int.from_bytes(token, "big"), "coffee", 1.0))
    (key_same_window,) = agg._contrib
    assert key_same_window == key
    agg.close(900.0)
    agg.presence(_ev(PresenceKind.ENTER, int.from_bytes(token, "big"), "coffee", 901.0))
    (key_next_window,) = agg._contrib
    assert key_next_window != key  # a fresh salt each window: no linking across windows


def test_discrete_laplace_variance_matches_analytic() -> None:
    noise = DiscreteLaplace(3, random.Random(0).randrange)
    xs = [noise.sample() for _ in range(40_000)]
    mean = sum(xs) / len(xs)
    var = sum((x - mean) ** 2 for x in xs) / len(xs)
    assert abs(mean) < 0.1
    assert math.isclose(var, noise.variance(), rel_tol=0.05)


class _Mono:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_aggregator_is_a_raw_holder_bounded_by_the_window() -> None:
    mono = _Mono()
    cfg = demo_config()
    agg = WindowAggregator(cfg, noise=_NoNoise(), monotonic=mono)
    assert isinstance(agg, RawHolder) and agg.holder_name == "privacy.aggregator"
    w = float(cfg.privacy.window_s)
    assert agg.held(mono.t) == Holding(0, 0.0, w)
    t0 = 1_800_000_000.0 - (1_800_000_000 % 900)
    agg.presence(_ev(PresenceKind.ENTER, 1, "coffee", t0))
    mono.t += 100
    agg.offer((2).to_bytes(16, "big"), cfg.campaigns[0].id, t0 + 100)
    assert agg.held(mono.t) == Holding(2, 100.0, w)
    agg.purge(mono.t)  # nothing is older than the window: nothing goes
    assert agg.held(mono.t).records == 2
    assert agg.forget((1).to_bytes(16, "big")) == 1
    assert agg.forget((1).to_bytes(16, "big")) == 0
    assert agg.held(mono.t) == Holding(1, 0.0, w)
    agg.close(t0 + 900)
    assert agg.held(mono.t).records == 0  # bookkeeping (and its salt) go with the window


def test_a_backward_wall_clock_step_neither_stretches_a_window_nor_recounts() -> None:
    mono = _Mono()
    agg = WindowAggregator(demo_config(), noise=_NoNoise(), monotonic=mono)
    t0 = 1_800_000_000.0 - (1_800_000_000 % 900)
    for tok in range(6):
        agg.presence(_ev(PresenceKind.ENTER, tok, "coffee", t0 + 10))
    mono.t += 899
    assert not agg.due(t0 - 3600)  # the wall clock stepped back an hour
    mono.t += 1
    assert agg.due(t0 - 3600)  # but 900 s of collecting have passed on the monotonic clock
    window = agg.close(t0 - 3600)
    assert window is not None and window.start == t0
    assert window.payload["zones"]["coffee"]["visitors"] == 6
    assert agg._start == t0 + 900  # slots only move forward, never back to one published
    assert agg.held(mono.t).records == 0


def test_a_purge_before_close_seals_the_window() -> None:
    mono = _Mono()
    agg = WindowAggregator(demo_config(), noise=_NoNoise(), monotonic=mono)
    t0 = 1_800_000_000.0 - (1_800_000_000 % 900)
    for tok in range(6):
        agg.presence(_ev(PresenceKind.ENTER, tok, "coffee", t0 + 10))
    mono.t += 901  # no tick closed the window in time
    agg.purge(mono.t)
    assert agg.held(mono.t).records == 0
    for tok in range(6):  # the same tokens again: their bookkeeping is gone, so not counted
        agg.presence(_ev(PresenceKind.ENTER, tok, "coffee", t0 + 20))
        agg.holdout(tok.to_bytes(16, "big"), t0 + 20)
    assert agg._counts.visitors["coffee"] == 6 and agg._counts.holdout == 0
    window = agg.close(t0 + 900)
    assert window is not None and window.payload["zones"]["coffee"]["visitors"] == 6
    agg.presence(_ev(PresenceKind.ENTER, 1, "coffee", t0 + 901))  # the next window counts
    assert agg._counts.visitors["coffee"] == 1


def test_campaigns_added_at_runtime_are_counted_from_then_on() -> None:
    cfg = demo_config()
    agg = WindowAggregator(cfg, noise=_NoNoise())
    known = cfg.campaigns[0].id
    t0 = 1_800_000_000.0 - (1_800_000_000 % 900)
    for tok in range(6):
        agg.offer(tok.to_bytes(16, "big"), known, t0)
        agg.offer(tok.to_bytes(16, "big"), "new-coupon", t0)  # unknown yet: not counted
    agg.set_campaigns(["new-coupon"])  # the known id is no longer listed: kept to the close
    for tok in range(6, 12):
        agg.offer(tok.to_bytes(16, "big"), "new-coupon", t0 + 1)
    window = agg.close(t0 + 900)
    assert window is not None
    assert window.payload["offers"] == {known: 6, "new-coupon": 6}
    assert sorted(agg._counts.offers) == ["new-coupon"]  # the removed id is gone now
