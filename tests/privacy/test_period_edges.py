"""Period release edges, with the noise switched off: the exact payload of a summed period with
two statistics at k and k − 1, calendar alignment and the period's end on its boundary, days
the ledger refuses, the error messages, and the combined day-and-period aggregator's counters,
figures, routing and raw-holder view."""

from __future__ import annotations

import datetime as dt
from fractions import Fraction

import pytest

from edge.config.models import AppConfig
from edge.contract.aggregate import PeriodMessage
from edge.privacy.daily import DEFAULT_DESIGN, DayDesign
from edge.privacy.holders import Holding
from edge.privacy.ledger import EpsilonLedger
from edge.privacy.period import (
    PERIOD_DESIGN,
    PERIOD_STATS,
    DayAndPeriod,
    PeriodAggregator,
    day_design_beside,
)
from tests.privacy.fixed_noise import FixedNoise
from tests.privacy.test_period import _at, _cfg, _drain, _ledger, _parse, _walk, _Zero

TWO = DayDesign(
    shares={"footfall": Fraction(7, 10), "arrivals": Fraction(1, 5)}, caps=DEFAULT_DESIGN.caps
)


def _tok(i: int) -> bytes:
    return i.to_bytes(16, "big")


def _period(
    cfg: AppConfig, ledger: EpsilonLedger, design: DayDesign = PERIOD_DESIGN, **kw: object
) -> PeriodAggregator:
    return PeriodAggregator(
        cfg,
        design=design,
        ledger=ledger,
        noise=lambda s: _Zero(1),
        new_id=lambda: "p-1",
        **{"started": 0.0, **kw},  # type: ignore[arg-type]
    )


def test_a_summed_period_payload_is_exact() -> None:
    cfg = _cfg()
    k = cfg.privacy.k
    zones = [z.id for z in cfg.store.zones]
    agg = _period(cfg, _ledger(cfg), TWO)
    for i in range(k - 1):  # Monday: k − 1 walk to coffee at 10:00
        _walk(agg, i, _at(cfg, 8, 10) + i, ["entrance", "coffee"])
    assert _drain(agg, _at(cfg, 8, 20)) == []
    _walk(agg, 100, _at(cfg, 9, 10), ["entrance", "coffee"])  # Tuesday: one more (k in all)
    for i in range(k - 1):  # and k − 1 to dairy at 11:00
        _walk(agg, 200 + i, _at(cfg, 9, 11) + i, ["entrance", "dairy"])
    assert _drain(agg, _at(cfg, 9, 20)) == []
    assert not agg.due(_at(cfg, 14, 20) - 0.001)
    (window,) = _drain(agg, _at(cfg, 14, 20))
    _parse(window)
    p = dict(window.payload)
    stats = p.pop("stats")
    n = agg.budget.tokens_per_day
    assert n == 74
    assert p == {
        "release": "period",
        "id": "p-1",
        "site": cfg.site,
        "device": cfg.device,
        "first_day": "2027-03-08",
        "last_day": "2027-03-14",
        "days": ["2027-03-08", "2027-03-09"],
        "period_start": int(_at(cfg, 8, 8)),
        "period_end": int(_at(cfg, 9, 20)),
        "partial": False,
        "cells": len(zones) + 12,
        "cells_suppressed": len(zones) + 12 - 3,
        "privacy": {
            "k": k,
            "epsilon": 1.8,
            "epsilon_per_day": 0.9,
            "noise": "discrete_laplace",
            "tokens_per_person": 2 * n,
            "tokens_per_person_per_day": n,
        },
    }
    assert (window.start, window.end) == (p["period_start"], p["period_end"])
    assert stats["footfall"] == {
        "epsilon": 1.4,
        "epsilon_per_day": 0.7,
        "sensitivity": 2 * n * 4,
        "noise_scale": round(float(Fraction(n * 4) / Fraction(7, 10)), 6),
        "values": {
            z: {"visitors": {"entrance": 2 * k - 1, "coffee": k}.get(z)} for z in sorted(zones)
        },
    }
    assert stats["arrivals"] == {
        "epsilon": 0.4,
        "epsilon_per_day": 0.2,
        "sensitivity": 2 * n,
        "noise_scale": 370.0,
        "values": {"*": {f"{h:02d}": (k if h == 10 else None) for h in range(8, 20)}},
    }
    assert agg.cells_suppressed_total == len(zones) + 12 - 3
    assert agg.windows_closed == 1
    assert not agg.due(_at(cfg, 30, 20))  # nothing left open


def test_a_two_day_period_is_the_shortest() -> None:
    cfg = _cfg(period_days=2)
    agg = _period(cfg, _ledger(cfg))
    _walk(agg, 1, _at(cfg, 8, 10), ["entrance", "coffee"])
    (window,) = agg.close_all(_at(cfg, 8, 21))
    msg = _parse(window)
    assert isinstance(msg, PeriodMessage)
    first = dt.date.fromisoformat(msg.first_day)
    assert dt.date.fromisoformat(msg.last_day) - first == dt.timedelta(days=1)


def test_periods_are_aligned_to_the_calendar() -> None:
    week = _period(_cfg(), _ledger(_cfg()))
    assert week.days == 7
    monday = week.period_of("2027-03-08")
    assert week.period_of("2027-03-14") == monday and week.period_of("2027-03-07") == monday - 1
    assert week.period_days_of(monday) == (dt.date(2027, 3, 8), dt.date(2027, 3, 14))
    three = _period(_cfg(period_days=3), _ledger(_cfg()))
    pid = three.period_of("2027-03-08")
    assert pid == (dt.date(2027, 3, 8).toordinal() - 1) // 3
    first, last = three.period_days_of(pid)
    assert (last - first).days == 2 and first <= dt.date(2027, 3, 8) <= last
    assert three.period_of(first.isoformat()) == three.period_of(last.isoformat()) == pid
    assert three.period_of((last + dt.timedelta(days=1)).isoformat()) == pid + 1
    assert dt.date.fromordinal(1) == three.period_days_of(0)[0]


def test_day_epsilon_follows_the_token_bound() -> None:
    cfg = _cfg()
    agg = _period(cfg, _ledger(cfg), TWO)
    b = agg.budget
    full = Fraction(9, 10)
    assert agg.epsilon_per_full_day == full
    assert agg.day_epsilon(3600) == full * b.tokens(3600) / 74
    assert agg.period_noise_scale("footfall") == Fraction(74 * 4) / Fraction(7, 10)
    assert agg.period_noise_scale("arrivals") == Fraction(74) / Fraction(1, 5)


def test_days_the_ledger_refuses_are_not_counted() -> None:
    cfg = _cfg()
    k = cfg.privacy.k
    ledger = _ledger(cfg)
    # Monday's period slot was claimed before (an earlier run); Tuesday's budget is spent
    assert ledger.claim(int(_at(cfg, 8, 8)) + 1, "2027-03-08", epsilon=Fraction(0))
    assert ledger.claim(-int(_at(cfg, 9, 8)) - 7, "2027-03-09", epsilon=Fraction(1))
    agg = _period(cfg, ledger)
    for day in (8, 9, 10):
        for i in range(k):
            _walk(agg, 10 * day + i, _at(cfg, day, 10) + i, ["entrance", "coffee"])
        assert agg.contributions_held() == (k if day == 10 else 0)
        _drain(agg, _at(cfg, day, 20))
    assert ledger.published("2027-03-08") == 1 and ledger.published("2027-03-09") == 1
    assert ledger.spent_exact("2027-03-10") == PERIOD_DESIGN.shares["footfall"]
    assert ledger.published("2027-03-10") == 1
    (window,) = _drain(agg, _at(cfg, 14, 20))
    msg = _parse(window)
    assert msg.days == ["2027-03-10"]  # type: ignore[union-attr]
    assert msg.stats["footfall"].values["coffee"]["visitors"] == k


def test_the_period_claims_its_day_under_its_opening_plus_one() -> None:
    cfg = _cfg()
    ledger = _ledger(cfg)
    agg = _period(cfg, ledger)
    agg.touch(_at(cfg, 8, 7))  # before the opening: nothing claimed
    assert ledger.published("2027-03-08") == 0
    agg.touch(_at(cfg, 8, 15))
    opened = int(_at(cfg, 8, 8))
    assert not ledger.claim(opened + 1, "2027-03-08", epsilon=Fraction(0))
    assert ledger.claim(opened, "2027-03-08", epsilon=Fraction(0))
    assert ledger.spent_exact("2027-03-08") == Fraction(7, 10)  # a full day's reservation


def test_error_messages() -> None:
    with pytest.raises(ValueError) as err:
        PeriodAggregator(_cfg(), design=DEFAULT_DESIGN, ledger=_ledger(_cfg()))
    assert (
        str(err.value)
        == "a period release cannot sum ['dwell', 'holdout', 'offers', 'transitions']"
    )
    one = _cfg()
    one = one.model_copy(
        update={"privacy": one.privacy.model_copy(update={"period_days": 1})}
    )  # bypasses the config's own check
    with pytest.raises(ValueError) as err:
        PeriodAggregator(one, ledger=_ledger(one))
    assert str(err.value) == "a period release needs privacy.period_days >= 2"
    all_of_day = DayDesign(shares=DEFAULT_DESIGN.shares, caps=DEFAULT_DESIGN.caps)
    with pytest.raises(ValueError) as err:
        day_design_beside(all_of_day)
    assert str(err.value) == "the period release leaves the day release no statistic"
    assert set(PERIOD_STATS) == {"footfall", "arrivals"}


def test_the_day_design_beside_a_two_statistic_period() -> None:
    beside = day_design_beside(TWO)
    assert beside.published() == ["dwell", "transitions", "offers", "holdout"]
    assert beside.shares["dwell"] == Fraction(1, 25) / Fraction(1, 10)
    assert sum(beside.shares.values()) == 1 and beside.caps == DEFAULT_DESIGN.caps


def test_a_stop_folds_the_open_day_at_the_stop_and_counts_nothing_before_it_again() -> None:
    cfg = _cfg()
    k = cfg.privacy.k
    agg = _period(cfg, _ledger(cfg))
    for i in range(k):
        _walk(agg, i, _at(cfg, 8, 10) + i, ["entrance", "coffee"])
    stop = _at(cfg, 8, 12)
    (part,) = agg.close_all(stop)
    msg = _parse(part)
    assert msg.partial and msg.period_end == int(stop)
    assert agg.close_all(stop) == [] and not agg.due(_at(cfg, 30, 20))
    _walk(agg, 50, stop - 60, ["entrance", "coffee"])  # before the stop: not again
    assert agg.contributions_held() == 0
    late = _period(cfg, _ledger(cfg))
    _walk(late, 1, _at(cfg, 8, 10), ["entrance", "coffee"])
    (after,) = late.close_all(_at(cfg, 9, 3))  # a stop after the day's close: ends at close
    assert _parse(after).period_end == int(_at(cfg, 8, 20))


def test_two_finished_periods_come_out_oldest_first() -> None:
    cfg = _cfg()
    agg = _period(cfg, _ledger(cfg))
    _walk(agg, 1, _at(cfg, 8, 10), ["entrance", "coffee"])
    _drain(agg, _at(cfg, 8, 20))
    _walk(agg, 2, _at(cfg, 15, 10), ["entrance", "coffee"])  # the next period, no tick between
    _walk(agg, 3, _at(cfg, 15, 11), ["entrance", "coffee"])
    out = agg.close_all(_at(cfg, 15, 12))
    assert [_parse(w).days for w in out] == [["2027-03-08"], ["2027-03-15"]]  # type: ignore[union-attr]
    assert [_parse(w).partial for w in out] == [False, True]


def test_day_and_period_counters_figures_and_raw_holder_view() -> None:
    cfg = _cfg()
    ledger = _ledger(cfg)
    mono = [1000.0]
    agg = DayAndPeriod(
        cfg,
        ledger=ledger,
        noise=lambda s: _Zero(1),
        new_id=lambda: "x",
        started=0.0,
        monotonic=lambda: mono[0],
    )
    assert (agg.windows_closed, agg.windows_withheld, agg.cells_suppressed_total) == (0, 0, 0)
    # only offers and holdout on Monday: the period still takes its reservation first
    agg.holdout(_tok(1), _at(cfg, 8, 10))
    mono[0] = 1100.0
    agg.offer(_tok(2), cfg.campaigns[0].id, _at(cfg, 8, 11))
    assert ledger.spent_exact("2027-03-08") == Fraction(7, 10)
    assert agg.contributions_held() == 2  # the period keeps none for them
    assert agg.held(1200.0) == Holding(2, 200.0, agg.budget.hold_s)
    _walk(agg, 3, _at(cfg, 8, 12), ["entrance", "coffee"])
    assert agg.held(1200.0) == Holding(4, 200.0, agg.budget.hold_s)
    assert agg.period.held(1200.0) == Holding(1, 100.0, agg.budget.hold_s)
    f = agg.privacy_figures(_at(cfg, 8, 12))
    assert f.epsilon_per_window == pytest.approx(0.3) and f.spent_today == pytest.approx(0.7)
    out = [_parse(w) for w in _drain(agg, _at(cfg, 8, 20))]
    assert [m.release for m in out] == ["day"] and out[0].privacy.epsilon == pytest.approx(0.3)
    assert agg.windows_closed == 1 and agg.cells_suppressed_total == out[0].cells_suppressed
    # Tuesday: the day release is refused (its budget went elsewhere), the period is not
    assert ledger.claim(-int(_at(cfg, 9, 8)) - 7, "2027-03-09", epsilon=Fraction(3, 10))
    _walk(agg, 4, _at(cfg, 9, 10), ["entrance", "coffee"])
    assert _drain(agg, _at(cfg, 9, 20)) == []
    assert (agg.windows_withheld, agg.windows_closed) == (1, 1)
    (last,) = [_parse(w) for w in _drain(agg, _at(cfg, 14, 20))]
    assert isinstance(last, PeriodMessage) and last.days == ["2027-03-08", "2027-03-09"]
    assert (agg.windows_withheld, agg.windows_closed) == (1, 2)
    assert last.cells_suppressed > 0
    assert agg.cells_suppressed_total == out[0].cells_suppressed + last.cells_suppressed
    assert agg.forget(_tok(4)) == 0  # gone with the folded day


def test_day_and_period_close_routes_each_release_and_close_all_gives_both() -> None:
    cfg = _cfg()
    k = cfg.privacy.k
    agg = DayAndPeriod(cfg, ledger=_ledger(cfg), noise=lambda s: _Zero(1), started=0.0)
    assert not agg.due(_at(cfg, 8, 10)) and agg.close(_at(cfg, 8, 10)) is None
    for i in range(k):
        _walk(agg, i, _at(cfg, 8, 10) + i, ["entrance", "coffee"])
    assert not agg.due(_at(cfg, 8, 19))
    assert agg.close(_at(cfg, 8, 19)) is None  # nothing due yet: the period has nothing
    assert agg.contributions_held() == 2 * k
    assert agg.forget(_tok(0)) == 2 and agg.contributions_held() == 2 * k - 2
    stop = _at(cfg, 8, 19.5)
    out = [_parse(w) for w in agg.close_all(stop)]
    assert [m.release for m in out] == ["day", "period"]
    assert all(m.partial and m.period_end == int(stop) for m in out)
    assert out[1].stats["footfall"].values["coffee"]["visitors"] == k
    assert agg.contributions_held() == 0 and not agg.due(_at(cfg, 30, 20))


@pytest.mark.parametrize("drawn", [2, -1])
def test_suppression_is_decided_on_the_noisy_sum(drawn: int) -> None:
    cfg = _cfg()
    k = cfg.privacy.k
    agg = PeriodAggregator(cfg, ledger=_ledger(cfg), noise=lambda s: FixedNoise(drawn), started=0.0)
    for i in range(k - drawn):  # noisy: exactly k
        _walk(agg, i, _at(cfg, 8, 10) + i, ["entrance", "coffee"])
    for i in range(k - drawn - 1):  # noisy: k − 1
        _walk(agg, 100 + i, _at(cfg, 9, 10) + i, ["entrance", "dairy"])
    (window,) = agg.close_all(_at(cfg, 9, 21))
    foot = _parse(window).stats["footfall"].values
    assert foot["coffee"]["visitors"] == k and foot["dairy"]["visitors"] is None


def test_a_smaller_daily_budget_and_a_partial_period_state_their_epsilon_exactly() -> None:
    cfg = _cfg(epsilon_per_day=0.5)
    agg = _period(cfg, _ledger(cfg), TWO, started=0.0)
    start = _at(cfg, 8, 13)  # Monday from 13:00: 7 of 12 hours
    late = _period(cfg, _ledger(cfg), TWO, started=start)
    for a in (agg, late):
        _walk(a, 1, _at(cfg, 8, 14), ["entrance", "coffee"])
    (full,) = agg.close_all(_at(cfg, 8, 21))
    (part,) = late.close_all(_at(cfg, 8, 21))
    msg = _parse(full)
    assert isinstance(msg, PeriodMessage)
    assert msg.privacy.epsilon == 0.45 and msg.privacy.epsilon_per_day == 0.45
    foot_full = msg.stats["footfall"]
    assert foot_full.epsilon == 0.35 and foot_full.epsilon_per_day == 0.35
    b = late.budget
    n = b.tokens(7 * 3600)
    short = _parse(part)
    assert isinstance(short, PeriodMessage)
    foot = short.stats["footfall"]
    eps = Fraction(7, 20) * n / 74
    assert round(float(eps), 10) != round(float(eps), 9)  # not a short decimal: rounding shows
    assert foot.epsilon == round(float(eps), 9)
    assert short.privacy.epsilon == round(float(Fraction(9, 20) * n / 74), 9)
    assert foot.noise_scale == round(float(Fraction(74 * 4) / Fraction(7, 20)), 6)
    assert foot.sensitivity == n * 4 and short.privacy.tokens_per_person == n


def test_the_period_counts_from_the_opening_up_to_but_not_at_the_close() -> None:
    cfg = _cfg()
    k = cfg.privacy.k
    agg = _period(cfg, _ledger(cfg))
    t_open, close = _at(cfg, 8, 8), _at(cfg, 8, 20)
    for i in range(k):  # an arrival at the opening exactly, then the first stays
        _walk(agg, i, t_open, ["entrance", "coffee"])
    agg.touch(close)
    for i in range(100, 110):
        _walk(agg, i, close - 120, ["entrance", "coffee"])  # its leave falls on the close
    (window,) = agg.close_all(_at(cfg, 9, 1))
    foot = _parse(window).stats["footfall"].values
    assert foot["coffee"]["visitors"] == k
    assert foot["entrance"]["visitors"] == k + 10


def test_a_day_of_the_period_ends_on_the_monotonic_clock_too() -> None:
    cfg = _cfg()
    mono = [0.0]
    agg = _period(cfg, _ledger(cfg), monotonic=lambda: mono[0])
    _walk(agg, 1, _at(cfg, 8, 9), ["entrance", "coffee"])  # opened at 09:00: 11 h left
    stuck = _at(cfg, 8, 9.5)
    mono[0] = 11 * 3600 - 1
    assert not agg.due(stuck)
    mono[0] = 11 * 3600
    assert agg.due(stuck)
    assert agg.close(stuck) is None  # folded: the day ends at its close, not at the clock
    (window,) = agg.close_all(_at(cfg, 9, 1))
    assert _parse(window).period_end == int(_at(cfg, 8, 20))


def test_finished_periods_are_messages_with_their_own_fields_and_counters_add_up() -> None:
    cfg = _cfg()
    agg = _period(cfg, _ledger(cfg))
    _walk(agg, 1, _at(cfg, 8, 10), ["entrance", "coffee"])
    _drain(agg, _at(cfg, 8, 20))
    _walk(agg, 2, _at(cfg, 15, 10), ["entrance", "coffee"])
    out = agg.close_all(_at(cfg, 15, 12))
    assert [(w.id, w.site, w.device) for w in out] == [("p-1", cfg.site, cfg.device)] * 2
    assert [(w.start, w.end) for w in out] == [
        (int(_at(cfg, 8, 8)), int(_at(cfg, 8, 20))),
        (int(_at(cfg, 15, 8)), int(_at(cfg, 15, 12))),
    ]
    assert agg.windows_closed == 2
    assert agg.cells_suppressed_total == sum(w.payload["cells_suppressed"] for w in out) > 11


def test_day_and_period_close_with_partial_routes_to_the_open_release() -> None:
    cfg = _cfg()
    k = cfg.privacy.k
    agg = DayAndPeriod(cfg, ledger=_ledger(cfg), noise=lambda s: _Zero(1), started=0.0)
    coupon = cfg.campaigns[0].id
    for i in range(k):
        _walk(agg, i, _at(cfg, 8, 10) + i, ["entrance", "coffee"])
        agg.offer(_tok(i), coupon, _at(cfg, 8, 11))
        agg.holdout(_tok(i), _at(cfg, 8, 11))
    stop = _at(cfg, 8, 12)
    day = agg.close(stop, partial=True)  # the day segment is open: it goes first
    assert day is not None and day.payload["release"] == "day" and day.payload["partial"]
    stats = day.payload["stats"]
    assert stats["offers"]["values"]["*"][coupon] == k
    assert stats["holdout"]["values"]["*"]["tokens"] == k
    assert day.end == int(stop)
    period = agg.close(stop, partial=True)  # then the period so far
    assert period is not None and period.payload["release"] == "period"
    assert period.payload["partial"] is True and period.end == int(stop)
    assert agg.close(stop, partial=True) is None


def test_day_and_period_pass_every_setting_to_both_releases() -> None:
    cfg = _cfg()
    k = cfg.privacy.k
    mono = [1000.0]
    agg = DayAndPeriod(
        cfg,
        period_design=TWO,
        ledger=_ledger(cfg),
        noise=lambda s: FixedNoise(2),
        new_id=lambda: "x",
        monotonic=lambda: mono[0],
        started=_at(cfg, 8, 14),
    )
    for i in range(10):  # before the start: neither release counts them
        _walk(agg, 500 + i, _at(cfg, 8, 10) + i, ["entrance", "coffee"])
    assert agg.contributions_held() == 0
    for i in range(k - 2):  # noisy: k in each release
        _walk(agg, i, _at(cfg, 8, 15) + i, ["entrance", "coffee"])
    mono[0] = 1010.0
    assert agg.period.held(mono[0]) == Holding(k - 2, 10.0, agg.budget.hold_s)
    out = [_parse(w) for w in agg.close_all(_at(cfg, 8, 21))]
    assert [(m.release, m.id, m.period_start) for m in out] == [
        ("day", "x", int(_at(cfg, 8, 14))),
        ("period", "x", int(_at(cfg, 8, 14))),
    ]
    day, period = out
    assert day.stats["transitions"].values["entrance"]["coffee"] == k
    assert set(day.stats) == {"dwell", "transitions", "offers", "holdout"}
    assert set(period.stats) == {"footfall", "arrivals"}
    assert period.stats["footfall"].values["coffee"]["visitors"] == k


def test_epsilon_per_day_is_stated_to_nine_places() -> None:
    cfg = _cfg(epsilon_per_day=0.123456789)
    agg = _period(cfg, _ledger(cfg), TWO)
    _walk(agg, 1, _at(cfg, 8, 10), ["entrance", "coffee"])
    (window,) = agg.close_all(_at(cfg, 8, 21))
    msg = _parse(window)
    assert isinstance(msg, PeriodMessage)
    eps = Fraction("0.123456789")
    assert msg.stats["footfall"].epsilon_per_day == round(float(eps * Fraction(7, 10)), 9)
    assert msg.privacy.epsilon_per_day == round(float(eps * Fraction(9, 10)), 9)
    assert round(float(eps * Fraction(9, 10)), 10) != msg.privacy.epsilon_per_day
    assert round(float(eps * Fraction(7, 10)), 10) != msg.stats["footfall"].epsilon_per_day
