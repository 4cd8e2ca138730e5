"""Day release edges, with the noise switched off: the exact payload of every statistic at k
and k − 1, the token bound and segment ε at their boundaries, the entrance zone at the edges of
its rectangle, arrivals and stays, the counting hours' edges on both clocks, what a stop leaves
behind, a spent day, and the bookkeeping's purge boundary."""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from fractions import Fraction
from zoneinfo import ZoneInfo

import pytest

from edge.config.models import AppConfig
from edge.events import PresenceKind
from edge.privacy.aggregates import DWELL_LABELS
from edge.privacy.budget import Budget
from edge.privacy.daily import (
    DEFAULT_DESIGN,
    STATS,
    DayAggregator,
    DayBudget,
    DayDesign,
    _entrance_zone,
)
from edge.privacy.holders import Holding
from edge.privacy.ledger import EpsilonLedger
from tests.helpers import demo_config
from tests.privacy.fixed_noise import FixedNoise
from tests.privacy.test_daily import _ev, _message, _open, _walk, _Zero


def _cfg(**privacy: object) -> AppConfig:
    cfg = demo_config()
    update = {"release": "day", "day_hours": (8, 20), **privacy}
    return cfg.model_copy(update={"privacy": cfg.privacy.model_copy(update=update)})


def _agg(
    cfg: AppConfig,
    *,
    ledger: EpsilonLedger | None = None,
    mono: list[float] | None = None,
    started: float | None = 0.0,
) -> DayAggregator:
    clock = mono if mono is not None else [0.0]
    return DayAggregator(
        cfg,
        ledger=ledger or EpsilonLedger(None, Budget.from_config(cfg)),
        noise=lambda s: _Zero(1),
        new_id=lambda: "d-1",
        started=started,
        monotonic=lambda: clock[0],
    )


def _tok(i: int) -> bytes:
    return i.to_bytes(16, "big")


def _with_entrance(cfg: AppConfig, x: float, y: float) -> AppConfig:
    return cfg.model_copy(update={"store": cfg.store.model_copy(update={"entrance": (x, y)})})


def test_the_day_payload_lists_every_cell_exactly() -> None:
    cfg = _cfg()
    k = cfg.privacy.k
    zones = [z.id for z in cfg.store.zones]
    coupons = [c.id for c in cfg.campaigns]
    t0 = _open(cfg) + 2 * 3600  # 10:00
    agg = _agg(cfg)
    for i in range(k):  # arrive at the entrance, 45 s there and in coffee, an offer
        _walk(agg, i, t0 + i, ["entrance", "coffee"])
        agg.offer(_tok(i), coupons[0], t0 + i)
    for i in range(k - 1):
        agg.holdout(_tok(i), t0)
    window = agg.close(_open(cfg) + 12 * 3600)
    assert window is not None
    assert (window.id, window.site, window.device) == ("d-1", cfg.site, cfg.device)
    assert (window.start, window.end) == (int(_open(cfg)), int(_open(cfg)) + 12 * 3600)
    p = dict(window.payload)
    stats = p.pop("stats")
    n = agg.budget.tokens_per_day
    assert n == 74
    total = len(zones) * (1 + len(DWELL_LABELS)) + len(zones) * (len(zones) - 1) + 12 + 6 + 1
    assert p == {
        "release": "day",
        "id": "d-1",
        "site": cfg.site,
        "device": cfg.device,
        "day": "2027-03-10",
        "period_start": int(_open(cfg)),
        "period_end": int(_open(cfg)) + 12 * 3600,
        "partial": False,
        "cells": total,
        "cells_suppressed": total - 6,
        "privacy": {"k": k, "epsilon": 1.0, "noise": "discrete_laplace", "tokens_per_person": n},
    }
    assert agg.cells_suppressed_total == total - 6
    assert list(stats) == list(STATS)
    for stat, block in stats.items():
        share, cap = DEFAULT_DESIGN.shares[stat], agg.budget.caps[stat]
        assert {key: v for key, v in block.items() if key != "values"} == {
            "epsilon": round(float(share), 9),
            "sensitivity": n * cap,
            "noise_scale": round(float(Fraction(n * cap) / share), 6),
        }

    def only(hit: tuple[str, str], rows: dict[str, list[str]]) -> dict[str, dict[str, int | None]]:
        return {r: {c: (k if (r, c) == hit else None) for c in cs} for r, cs in rows.items()}

    assert stats["footfall"]["values"] == {
        z: {"visitors": k if z in ("entrance", "coffee") else None} for z in zones
    }
    assert stats["dwell"]["values"] == only(
        ("coffee", "30-60"), {z: list(DWELL_LABELS) for z in zones}
    )
    assert stats["transitions"]["values"] == only(
        ("entrance", "coffee"), {a: [b for b in zones if b != a] for a in zones}
    )
    assert stats["arrivals"]["values"] == only(
        ("*", "10"), {"*": [f"{h:02d}" for h in range(8, 20)]}
    )
    assert stats["offers"]["values"] == only(("*", coupons[0]), {"*": coupons})
    assert stats["holdout"]["values"] == {"*": {"tokens": None}}  # k − 1
    assert (agg.windows_closed, agg.windows_withheld) == (1, 0)


def test_day_budget_figures_at_their_boundaries() -> None:
    cfg = _cfg()
    b = DayBudget.from_config(cfg)
    assert b.slack_s == Fraction(35) and b.hold_s == 635.0
    assert (b.open_h, b.close_h, b.period_s, b.k) == (8, 20, 12 * 3600, cfg.privacy.k)
    assert b.caps["offers"] == cfg.policy.max_offers_per_visit == 2
    assert b.tokens(-5.0) == b.tokens(0) == 2
    assert b.tokens(565) == 2 and b.tokens(565.001) == 3  # (L + 35) / 600 just past 1
    one = Fraction(1)
    assert b.segment_epsilon(one, 3600, 0) == 1 == b.segment_epsilon(one, 3600, -1)
    assert b.segment_epsilon(Fraction(-1, 2), 3600, 0) == 0
    assert b.segment_epsilon(Fraction(-1, 2), 3600, 7200) == 0
    n, rest = b.tokens(3600), b.tokens(7200)
    assert b.segment_epsilon(Fraction(1, 2), 3600, 7200) == Fraction(1, 2) * n / (n + rest)
    assert b.worst_case_per_day == b.epsilon_per_day == 1
    # a stretch of no time (or a negative one) counts as 0 s: shown with a slack that is a
    # whole rotation (valid configs cannot have one, so build the budget directly)
    whole = dataclasses.replace(b, slack_s=Fraction(600))
    assert whole.tokens(-1.0) == whole.tokens(0) == 2 and whole.tokens(0.5) == 3


def test_design_checks_and_zero_shares() -> None:
    with pytest.raises(ValueError) as err:
        DayDesign(shares={"footfall": Fraction(3, 4), "arrivals": Fraction(1, 2)}, caps={})
    assert str(err.value) == "ε shares must be ≥ 0 and sum to at most 1"
    with pytest.raises(ValueError) as err:
        DayDesign(shares={"footfall": Fraction(-1, 10)}, caps={})
    assert str(err.value) == "ε shares must be ≥ 0 and sum to at most 1"
    with pytest.raises(ValueError) as err:
        DayDesign(shares={"paths": Fraction(1, 2), "dwell": Fraction(0)}, caps={})
    assert str(err.value) == "unknown statistics ['paths']"
    d = DayDesign(
        shares={"holdout": Fraction(1, 2), "dwell": Fraction(0), "footfall": Fraction(1, 2)},
        caps={},
    )
    assert d.published() == ["footfall", "holdout"]  # STATS order; a zero share is off


def test_the_entrance_zone_includes_the_edges_of_its_rectangle() -> None:
    cfg = demo_config()
    assert _entrance_zone(cfg) == "entrance"  # (3, 0): on the bottom edge
    assert _entrance_zone(_with_entrance(cfg, 30, 20)) == "frozen"  # far corner
    assert _entrance_zone(_with_entrance(cfg, 0, 14)) == "household"  # near corner
    assert _entrance_zone(_with_entrance(cfg, 6.5, 6.5)) is None  # the aisle between zones


def test_without_an_entrance_zone_every_first_sighting_is_an_arrival() -> None:
    cfg = _with_entrance(_cfg(), 6.5, 6.5)
    k = cfg.privacy.k
    agg = _agg(cfg)
    t0 = _open(cfg) + 3600
    for i in range(k):
        _walk(agg, i, t0 + i, ["coffee", "dairy"])
    msg = _message(agg, _open(cfg) + 12 * 3600)
    assert msg.stats["arrivals"].values["*"]["09"] == k
    assert msg.stats["footfall"].values["coffee"]["visitors"] == k  # the arrival stay counts


def test_arrivals_count_in_the_hour_of_the_first_sighting_and_not_for_a_leave() -> None:
    cfg = _cfg()
    k = cfg.privacy.k
    agg = _agg(cfg)
    nine = _open(cfg) + 3600
    for i in range(k):
        agg.presence(_ev(PresenceKind.ENTER, i, "entrance", nine - 0.5))  # 08:59:59.5
        agg.presence(_ev(PresenceKind.ENTER, 100 + i, "entrance", nine))  # 09:00:00
        agg.presence(_ev(PresenceKind.ENTER, 100 + i, "entrance", nine + 3700))  # seen again
        agg.presence(_ev(PresenceKind.LEAVE, 200 + i, "entrance", nine, dwell=60.0))
    msg = _message(agg, _open(cfg) + 12 * 3600)
    arrivals = msg.stats["arrivals"].values["*"]
    assert (arrivals["08"], arrivals["09"], arrivals["10"]) == (k, k, None)
    # a token first heard leaving did not arrive: its stay is no visit either
    assert msg.stats["footfall"].values["entrance"]["visitors"] is None


def test_a_stay_counts_once_and_only_when_the_token_entered_it() -> None:
    cfg = _cfg()
    k = cfg.privacy.k
    agg = _agg(cfg)
    t0 = _open(cfg) + 3600
    for i in range(k):
        _walk(agg, i, t0, ["entrance", "coffee"])  # coffee entered and left: one visit
        # back after the leave, with no move seen: not entered, so no second visit or dwell
        agg.presence(_ev(PresenceKind.ENTER, i, "coffee", t0 + 600))
        agg.presence(_ev(PresenceKind.LEAVE, i, "coffee", t0 + 900, dwell=300.0))
        agg.presence(_ev(PresenceKind.DWELL, i, "coffee", t0 + 901, "coffee", 80.0, 80.0))
    msg = _message(agg, _open(cfg) + 12 * 3600)
    assert msg.stats["footfall"].values["coffee"]["visitors"] == k
    assert msg.stats["dwell"].values["coffee"] == {
        label: (k if label == "30-60" else None) for label in DWELL_LABELS
    }
    assert msg.stats["dwell"].values["entrance"]["30-60"] is None  # an arrival stay: no dwell


def test_moves_into_unknown_zones_and_repeats_are_bounded() -> None:
    cfg = _cfg()
    k = cfg.privacy.k
    agg = _agg(cfg)
    t0 = _open(cfg) + 3600
    for i in range(k):
        agg.presence(_ev(PresenceKind.ENTER, i, "entrance", t0))
        agg.presence(_ev(PresenceKind.ENTER, i, "ghost", t0 + 60, "entrance", 0.0, 60.0))
        agg.presence(_ev(PresenceKind.ENTER, i, "coffee", t0 + 120, "ghost", 0.0, 60.0))
        agg.presence(_ev(PresenceKind.ENTER, i, "dairy", t0 + 180, "coffee", 0.0, 60.0))
        agg.presence(_ev(PresenceKind.ENTER, i, "bakery", t0 + 240, "dairy", 0.0, 60.0))
    msg = _message(agg, _open(cfg) + 12 * 3600)
    trans = msg.stats["transitions"].values
    assert trans["coffee"]["dairy"] == k  # the first known move; the cap is 1 per token
    assert trans["dairy"]["bakery"] is None and "ghost" not in trans
    foot = msg.stats["footfall"].values
    # a move out of an unknown zone is still a move in: coffee is entered
    assert [foot[z]["visitors"] for z in ("entrance", "coffee", "dairy")] == [k, k, k]
    assert foot["bakery"]["visitors"] is None  # its stay has not ended
    assert msg.stats["dwell"].values["coffee"]["60-120"] == k
    assert msg.stats["dwell"].values["dairy"]["60-120"] is None  # dwell cap 1: coffee had it


def test_offers_and_holdout_at_their_caps_and_campaigns_set_at_runtime() -> None:
    cfg = _cfg()
    k, cap = cfg.privacy.k, cfg.policy.max_offers_per_visit
    coupon = cfg.campaigns[0].id
    agg = _agg(cfg)
    t0 = _open(cfg) + 3600
    agg.offer(_tok(1), coupon, _open(cfg) - 1)  # before the counting hours: nothing opens
    assert not agg.due(_open(cfg) + 12 * 3600)
    for i in range(k):
        for _ in range(cap + 1):
            agg.offer(_tok(i), coupon, t0)
        agg.offer(_tok(i), "fresh", t0)  # not a campaign yet
        agg.holdout(_tok(i), t0)
        agg.holdout(_tok(i), t0 + 1)
    agg.set_campaigns(["fresh", "fresh"])
    for i in range(100, 100 + k):
        agg.offer(_tok(i), "fresh", t0 + 2)
    msg = _message(agg, _open(cfg) + 12 * 3600)
    offers = msg.stats["offers"].values["*"]
    assert offers[coupon] == k * cap and offers["fresh"] == k
    assert msg.stats["holdout"].values["*"]["tokens"] == k
    agg.offer(_tok(1), "fresh", _open(cfg) + 86_400 + 3600)  # the next day
    nxt = _message(agg, _open(cfg) + 86_400 + 12 * 3600)
    assert list(nxt.stats["offers"].values["*"]) == ["fresh"]  # the removed one is gone


def test_counting_hours_end_on_the_wall_clock_or_after_their_length_on_the_monotonic() -> None:
    cfg = _cfg()
    mono = [0.0]
    agg = _agg(cfg, mono=mono)
    t_open = _open(cfg)
    close = t_open + 12 * 3600
    assert not agg.due(close)
    agg.holdout(_tok(1), close)  # 20:00 exactly: not counted, nothing opens
    assert not agg.due(close + 1)
    agg.holdout(_tok(1), t_open + 3600)  # opened at 09:00: 11 h are left
    assert not agg.due(close - 0.001)
    assert agg.due(close)
    stuck = t_open + 3600  # the wall clock stops; the monotonic one runs on
    mono[0] = 11 * 3600 - 1
    assert not agg.due(stuck)
    mono[0] = 11 * 3600
    assert agg.due(stuck)


def test_the_default_hours_run_from_local_midnight_to_the_next() -> None:
    cfg = _cfg(day_hours=(0, 24))
    agg = _agg(cfg)
    tz = ZoneInfo(cfg.timezone)
    midnight = dt.datetime(2027, 1, 20, 0, 0, tzinfo=tz).timestamp()
    agg.holdout(_tok(1), midnight + 23.5 * 3600)
    assert agg.local_day(midnight + 23.5 * 3600) == "2027-01-20"
    assert agg.local_day(midnight - 1) == "2027-01-19"
    assert agg.local_day(midnight + 1800) == "2027-01-20"  # 23:30 UTC on the 19th
    assert not agg.due(midnight + 86_400 - 0.001) and agg.due(midnight + 86_400)
    msg = _message(agg, midnight + 86_400)
    assert (msg.period_start, msg.period_end, msg.day) == (
        int(midnight),
        int(midnight) + 86_400,
        "2027-01-20",
    )


def test_by_default_nothing_before_the_construction_counts() -> None:
    cfg = _cfg(day_hours=(0, 24))
    agg = DayAggregator(cfg, ledger=EpsilonLedger(None, Budget.from_config(cfg)))
    now = time.time()
    agg.holdout(_tok(1), now - 60)
    assert agg.contributions_held() == 0
    agg.holdout(_tok(1), now + 60)
    assert agg.contributions_held() == 1


def test_a_stop_clamps_the_segment_and_nothing_before_it_counts_again() -> None:
    cfg = _cfg()
    k = cfg.privacy.k
    ledger = EpsilonLedger(None, Budget.from_config(cfg))
    agg = _agg(cfg, ledger=ledger)
    t_open = _open(cfg)
    early = _agg(cfg)
    early.holdout(_tok(1), t_open + 3600)
    out = early.close(t_open - 100, partial=True)  # a stop stamped before the opening
    assert out is not None and (out.start, out.end) == (int(t_open), int(t_open))
    stop = t_open + 4 * 3600
    for i in range(k):
        agg.holdout(_tok(i), stop)
    part = agg.close(stop + 20, partial=True)
    assert part is not None and part.payload["partial"] is True
    assert (part.start, part.end) == (int(t_open), int(stop + 20))
    assert part.payload["stats"]["holdout"]["values"] == {"*": {"tokens": k}}
    agg.holdout(_tok(1), stop + 10)  # before the stop: never counted again
    assert agg.contributions_held() == 0 and not agg.due(t_open + 10**6)
    agg.holdout(_tok(1), stop + 100)
    late = agg.close(t_open + 10**6, partial=True)  # a stop long after closing: at the close
    assert late is not None and (late.start, late.end) == (int(stop + 20), int(t_open) + 43_200)
    assert ledger.spent_exact("2027-03-10") == 1


def test_a_spent_day_is_withheld_without_a_claim_and_segments_sit_under_minus_start() -> None:
    cfg = _cfg()
    ledger = EpsilonLedger(None, Budget.from_config(cfg))
    t_open = _open(cfg)
    agg = _agg(cfg, ledger=ledger)
    agg.holdout(_tok(1), t_open + 60)
    assert agg.close(t_open + 12 * 3600) is not None
    # the segment's slot is minus its start (a window release would use plus)
    assert not ledger.claim(-int(t_open), "2027-03-10", epsilon=Fraction(0))
    assert ledger.claim(int(t_open), "2027-03-10", epsilon=Fraction(0))
    assert ledger.published("2027-03-10") == 2
    again = _agg(cfg, ledger=ledger, started=t_open + 3600)  # restarted the same day
    again.holdout(_tok(2), t_open + 7200)
    assert again.due(t_open + 12 * 3600)
    assert again.close(t_open + 12 * 3600) is None
    assert (again.windows_withheld, again.windows_closed) == (1, 0)
    assert ledger.published("2027-03-10") == 2  # nothing claimed for it
    assert again.contributions_held() == 0 and not again.due(t_open + 12 * 3600)
    again.holdout(_tok(3), t_open + 86_400 + 60)  # the next day has its budget
    assert again.close(t_open + 86_400 + 12 * 3600) is not None
    assert ledger.claim(-int(t_open + 2 * 86_400), "2027-03-12", epsilon=Fraction(1))
    again.holdout(_tok(4), t_open + 2 * 86_400 + 60)  # that day's budget went elsewhere
    assert again.close(t_open + 2 * 86_400 + 12 * 3600) is None
    assert (again.windows_withheld, again.windows_closed) == (2, 1)


def test_privacy_figures_of_the_day_release() -> None:
    cfg = _cfg()
    ledger = EpsilonLedger(None, Budget.from_config(cfg))
    agg = _agg(cfg, ledger=ledger)
    t_open = _open(cfg)
    agg.holdout(_tok(1), t_open + 60)
    before = agg.privacy_figures(t_open + 61)
    assert (before.k, before.window_s, before.windows_today) == (cfg.privacy.k, 43_200, 0)
    assert (before.spent_today, before.remaining_today) == (0.0, 1.0)
    assert agg.close(t_open + 5 * 3600, partial=True) is not None
    f = agg.privacy_figures(t_open + 5 * 3600)
    b = agg.budget
    eps = b.tokens(5 * 3600) / Fraction(b.tokens(5 * 3600) + b.tokens(7 * 3600))
    assert (f.epsilon_per_day, f.epsilon_per_window, f.epsilon_worst_case_per_day) == (
        1.0,
        1.0,
        1.0,
    )
    assert f.spent_today == float(eps) and f.remaining_today == float(1 - eps)
    assert f.windows_today == 1


def test_the_bookkeeping_purge_boundary_is_one_token_lifetime() -> None:
    cfg = _cfg()
    mono = [1000.0]
    agg = _agg(cfg, mono=mono)
    t0 = _open(cfg) + 60
    assert agg.held(mono[0]) == Holding(0, 0.0, 635.0)
    agg.holdout(_tok(1), t0)
    mono[0] = 1100.0
    agg.holdout(_tok(2), t0)
    assert agg.held(1200.0) == Holding(2, 200.0, 635.0)
    assert agg.held(900.0) == Holding(2, 0.0, 635.0)  # never a negative age
    agg.purge(1000.0 + 635.0)  # exactly one lifetime: kept
    assert agg.contributions_held() == 2
    agg.purge(1000.0 + 635.5)
    assert agg.held(1700.0) == Holding(1, 600.0, 635.0)
    assert agg.forget(_tok(1)) == 0 and agg.forget(_tok(2)) == 1


@pytest.mark.parametrize("drawn", [2, -1])
def test_suppression_is_decided_on_the_noisy_count(drawn: int) -> None:
    cfg = _cfg()
    k = cfg.privacy.k
    agg = DayAggregator(
        cfg,
        ledger=EpsilonLedger(None, Budget.from_config(cfg)),
        noise=lambda s: FixedNoise(drawn),
        started=0.0,
    )
    for i in range(k - drawn):  # noisy: exactly k
        agg.holdout(_tok(i), _open(cfg) + 60)
    for i in range(100, 100 + k - drawn - 1):  # noisy: k − 1
        agg.offer(_tok(i), cfg.campaigns[0].id, _open(cfg) + 60)
    msg = _message(agg, _open(cfg) + 12 * 3600)
    assert msg.stats["holdout"].values["*"]["tokens"] == k
    assert msg.stats["offers"].values["*"][cfg.campaigns[0].id] is None


def test_higher_caps_are_counted_up_to_the_cap() -> None:
    caps = {"footfall": 2, "dwell": 2, "transitions": 2, "arrivals": 1, "holdout": 1}
    design = DayDesign(shares=DEFAULT_DESIGN.shares, caps=caps)
    cfg = _cfg()
    k = cfg.privacy.k
    agg = DayAggregator(
        cfg,
        design=design,
        ledger=EpsilonLedger(None, Budget.from_config(cfg)),
        noise=lambda s: _Zero(1),
        started=0.0,
    )
    t0 = _open(cfg) + 3600
    for i in range(k):  # five moves, 40 s each: only two of each count
        _walk(agg, i, t0, ["entrance", "produce", "bakery", "checkout", "coffee", "dairy"])
    msg = _message(agg, _open(cfg) + 12 * 3600)
    trans = msg.stats["transitions"].values
    assert trans["entrance"]["produce"] == k and trans["produce"]["bakery"] == k
    assert trans["bakery"]["checkout"] is None
    dwell = {z: msg.stats["dwell"].values[z]["30-60"] for z in ("produce", "bakery", "checkout")}
    assert dwell == {"produce": k, "bakery": k, "checkout": None}
    foot = msg.stats["footfall"].values
    assert [foot[z]["visitors"] for z in ("entrance", "produce", "bakery")] == [k, k, None]
    assert msg.stats["footfall"].sensitivity == 74 * 2


def test_a_design_using_part_of_the_day_states_that_part() -> None:
    half = DayDesign(
        shares={"holdout": Fraction(1, 4), "offers": Fraction(1, 4)}, caps=DEFAULT_DESIGN.caps
    )
    cfg = _cfg()
    agg = DayAggregator(
        cfg,
        design=half,
        ledger=EpsilonLedger(None, Budget.from_config(cfg)),
        noise=lambda s: _Zero(1),
        started=0.0,
    )
    agg.holdout(_tok(1), _open(cfg) + 60)
    msg = _message(agg, _open(cfg) + 12 * 3600)
    assert msg.privacy.epsilon == 0.5 and set(msg.stats) == {"offers", "holdout"}
    assert msg.stats["holdout"].epsilon == 0.25


def test_a_partial_segment_states_its_epsilon_to_nine_places_and_scale_to_six() -> None:
    cfg = _cfg()
    agg = _agg(cfg)
    t_open = _open(cfg)
    agg.holdout(_tok(1), t_open + 60)
    msg = _message(agg, t_open + 4 * 3600, partial=True)
    b = agg.budget
    n, rest = b.tokens(4 * 3600), b.tokens(8 * 3600)
    eps = Fraction(n, n + rest)
    assert round(float(eps), 10) != round(float(eps), 9)  # not a short decimal: rounding shows
    assert msg.privacy.epsilon == round(float(eps), 9)
    for stat, block in msg.stats.items():
        share = DEFAULT_DESIGN.shares[stat]
        assert block.epsilon == round(float(eps * share), 9)
        assert block.noise_scale == round(float(Fraction(n * b.caps[stat]) / (share * eps)), 6)
        assert block.sensitivity == n * b.caps[stat]
    assert msg.privacy.tokens_per_person == n


def test_a_stop_just_before_the_close_still_leaves_epsilon_for_the_rest() -> None:
    b = DayBudget.from_config(_cfg())
    n = b.tokens(3600)
    assert b.segment_epsilon(Fraction(1), 3600, 0.5) == Fraction(n, n + b.tokens(0.5))


def test_the_open_segment_counts_from_its_start_up_to_but_not_at_its_close() -> None:
    cfg = _cfg()
    k = cfg.privacy.k
    agg = _agg(cfg)
    t_open, close = _open(cfg), _open(cfg) + 12 * 3600
    agg.holdout(_tok(0), t_open)  # exactly at the opening: opens and counts
    for i in range(1, k):
        agg.holdout(_tok(i), t_open)  # at the segment's start: counts
    for i in range(100, 110):
        agg.holdout(_tok(i), close)  # at the close: not counted
    assert agg.contributions_held() == k
    msg = _message(agg, close)
    assert msg.stats["holdout"].values["*"]["tokens"] == k


def test_a_close_forced_by_the_monotonic_clock_ends_at_the_close() -> None:
    cfg = _cfg()
    mono = [0.0]
    agg = _agg(cfg, mono=mono)
    t_open = _open(cfg)
    agg.holdout(_tok(1), t_open + 3600)
    mono[0] = 11 * 3600
    stuck = t_open + 3600
    assert agg.due(stuck)
    window = agg.close(stuck)
    assert window is not None and (window.start, window.end) == (int(t_open), int(t_open) + 43_200)
    assert window.payload["partial"] is False


def test_suppressed_cells_add_up_over_releases() -> None:
    cfg = _cfg()
    agg = _agg(cfg)
    totals = []
    for day in (0, 1):
        agg.holdout(_tok(1), _open(cfg) + day * 86_400 + 60)
        window = agg.close(_open(cfg) + day * 86_400 + 12 * 3600)
        assert window is not None
        totals.append(window.payload["cells_suppressed"])
    assert totals[0] > 0 and agg.cells_suppressed_total == sum(totals)
    assert agg.windows_closed == 2
