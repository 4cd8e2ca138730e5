"""The period release: sums over days at k and k-1 without noise, per-token caps per day, the
token bound and noise scale, the ε reserved per day in the ledger (restart-safe, never above
ε_day with the day release), the partial period at a stop, and the device state's figures."""

from __future__ import annotations

import datetime as dt
from fractions import Fraction
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from edge.config.models import AppConfig
from edge.contract.aggregate import DayMessage, PeriodMessage, cells, parse
from edge.events import AggregateWindow
from edge.privacy.budget import Budget
from edge.privacy.daily import DEFAULT_DESIGN, DayAggregator
from edge.privacy.holders import RawHolder
from edge.privacy.ledger import EpsilonLedger
from edge.privacy.period import (
    PERIOD_DESIGN,
    DayAndPeriod,
    PeriodAggregator,
    day_design_beside,
)
from edge.privacy.release import close_all, make_aggregator
from tests.asyncapi_schemas import check
from tests.helpers import demo_config
from tests.privacy.test_daily import _walk, _Zero

ZONES = ["entrance", "produce", "bakery", "checkout", "beverages", "snacks", "coffee", "dairy"]


def _cfg(**privacy: object) -> AppConfig:
    cfg = demo_config()
    update = {"release": "day", "day_hours": (8, 20), "period_days": 7, **privacy}
    return cfg.model_copy(update={"privacy": cfg.privacy.model_copy(update=update)})


def _at(cfg: AppConfig, day: int, hour: float) -> float:
    """March 2027, site-local; 2027-03-08 is a Monday (the first day of a 7-day period)."""
    tz = ZoneInfo(cfg.timezone)
    return dt.datetime(2027, 3, day, 0, tzinfo=tz).timestamp() + hour * 3600


def _ledger(cfg: AppConfig) -> EpsilonLedger:
    return EpsilonLedger(None, Budget.from_config(cfg))


def _period(cfg: AppConfig, ledger: EpsilonLedger, *, started: float = 0.0) -> PeriodAggregator:
    return PeriodAggregator(cfg, ledger=ledger, noise=lambda s: _Zero(1), started=started)


def _drain(agg: DayAggregator, now: float) -> list[AggregateWindow]:
    """What the app's tick does: close while due (a release that stays due fails, not hangs)."""
    out = []
    for _ in range(1000):
        if not agg.due(now):
            return out
        window = agg.close(now)
        if window is not None:
            out.append(window)
    raise AssertionError(f"still due at {now} after 1000 closes")


def _parse(window: AggregateWindow) -> PeriodMessage | DayMessage:
    check("Aggregate", dict(window.payload))
    msg = parse(dict(window.payload))
    assert isinstance(msg, PeriodMessage | DayMessage)
    return msg


def test_sums_over_days_at_k_are_published_and_at_k_minus_1_suppressed() -> None:
    cfg = _cfg()
    k = cfg.privacy.k
    ledger = _ledger(cfg)
    agg = _period(cfg, ledger)
    split = [(8, 2), (9, k - 2)]  # k visits to coffee over two days, k-1 to dairy
    for day, n in split:
        for tok in range(n):
            _walk(agg, 100 * day + tok, _at(cfg, day, 10) + tok, ["entrance", "coffee"])
        for tok in range(n - (day == 9)):
            _walk(agg, 5000 + 100 * day + tok, _at(cfg, day, 11) + tok, ["entrance", "dairy"])
        assert _drain(agg, _at(cfg, day, 21)) == []  # a day ends: folded, nothing published
    (window,) = _drain(agg, _at(cfg, 14, 20))  # Sunday's closing: the period ends
    msg = _parse(window)
    assert isinstance(msg, PeriodMessage)
    foot = msg.stats["footfall"].values
    assert foot["coffee"]["visitors"] == k
    assert foot["dairy"]["visitors"] is None  # k-1 over the period: suppressed
    assert foot["entrance"]["visitors"] == 2 * k - 1  # every arrival stayed 45 s there
    assert foot["produce"]["visitors"] is None  # 0
    assert (msg.first_day, msg.last_day, msg.days) == ("2027-03-08", "2027-03-14",
                                                        ["2027-03-08", "2027-03-09"])  # fmt: skip
    assert not msg.partial
    assert msg.period_start == int(_at(cfg, 8, 8)) and msg.period_end == int(_at(cfg, 9, 20))
    assert msg.cells_suppressed == sum(c.suppressed for c in cells(msg))
    assert set(msg.stats) == {"footfall"}


def test_a_token_counts_at_most_its_cap_per_day_and_days_add_up() -> None:
    cfg = _cfg()
    agg = _period(cfg, _ledger(cfg))
    cap = agg.budget.caps["footfall"]
    for day in (8, 9, 10):
        for tok in range(10):  # the same tokens every day: bookkeeping is per day
            for rep in range(3):
                _walk(agg, tok, _at(cfg, day, 9) + rep * 900, ZONES)
        _drain(agg, _at(cfg, day, 20))
    (window,) = close_all(agg, _at(cfg, 11, 7))
    msg = _parse(window)
    total = sum(c.value or 0 for c in cells(msg))
    assert total == 3 * 10 * cap


def test_only_the_counting_hours_count_and_a_period_ends_without_events() -> None:
    cfg = _cfg()
    agg = _period(cfg, _ledger(cfg))
    for tok in range(20):
        _walk(agg, tok, _at(cfg, 8, 7) + tok, ["entrance", "coffee"])  # 07:00: not counted
        _walk(agg, 100 + tok, _at(cfg, 8, 20) + tok, ["entrance", "coffee"])  # 20:00: closed
    assert not agg.due(_at(cfg, 15, 0))  # nothing counted: no period opened
    for tok in range(10):
        _walk(agg, 200 + tok, _at(cfg, 12, 9) + tok, ["entrance", "coffee"])  # Friday
    assert not agg.due(_at(cfg, 12, 19))
    assert _drain(agg, _at(cfg, 12, 20)) == []  # Friday folded
    assert not agg.due(_at(cfg, 14, 19))  # the period runs to Sunday's closing
    (window,) = _drain(agg, _at(cfg, 14, 20))  # no events on the weekend: still published
    msg = _parse(window)
    assert isinstance(msg, PeriodMessage) and msg.days == ["2027-03-12"]
    assert msg.stats["footfall"].values["coffee"]["visitors"] == 10


def test_token_bound_noise_scale_and_epsilon_are_exact() -> None:
    cfg = _cfg()
    ledger = _ledger(cfg)
    start = _at(cfg, 8, 14)  # the device starts Monday 14:00: 6 of 12 hours that day
    agg = _period(cfg, ledger, started=start)
    b = agg.budget
    n_day = b.tokens_per_day
    assert n_day == 74
    eps, share, cap = Fraction(1), PERIOD_DESIGN.shares["footfall"], b.caps["footfall"]
    for day in (8, 9, 10):
        _walk(agg, day, _at(cfg, day, 15), ["entrance", "coffee"])
        _drain(agg, _at(cfg, day, 20))
    first = b.tokens(6 * 3600)
    # reserved per day: share·ε·N(L_d)/N_day; Monday counts from 14:00 only
    assert ledger.spent_exact("2027-03-08") == share * eps * first / n_day
    assert ledger.spent_exact("2027-03-09") == share * eps == agg.epsilon_per_full_day
    (window,) = close_all(agg, _at(cfg, 11, 7))
    msg = _parse(window)
    assert isinstance(msg, PeriodMessage)
    foot = msg.stats["footfall"]
    scale = Fraction(n_day * cap) / (share * eps)  # the one-day scale, for the whole period
    assert foot.noise_scale == pytest.approx(float(scale))
    assert foot.sensitivity == (first + 2 * n_day) * cap
    assert msg.privacy.tokens_per_person == first + 2 * n_day
    spent = sum(ledger.spent_exact(d) for d in msg.days)
    assert foot.epsilon == pytest.approx(float(spent)) == pytest.approx(msg.privacy.epsilon)
    assert foot.epsilon == pytest.approx(float(Fraction(foot.sensitivity) / scale))
    # what one day of one person costs: N(L_d)·cap / b ≤ the day's reservation
    assert Fraction(n_day * cap) / scale == share * eps
    assert foot.epsilon_per_day == pytest.approx(float(share * eps))


def test_each_day_spends_exactly_the_budget_across_both_releases_and_state_agrees() -> None:
    cfg = _cfg()
    ledger = _ledger(cfg)
    agg = DayAndPeriod(cfg, ledger=ledger, noise=lambda s: _Zero(1), started=0.0)
    eps_day = Fraction(str(cfg.privacy.epsilon_per_day))
    for day in range(8, 15):
        for tok in range(6):
            _walk(agg, 1000 * day + tok, _at(cfg, day, 9) + tok, ["entrance", "coffee", "dairy"])
        out = [_parse(w) for w in _drain(agg, _at(cfg, day, 20))]
        day_msg = next(m for m in out if isinstance(m, DayMessage))
        assert "footfall" not in day_msg.stats  # footfall is the period's
        f = agg.privacy_figures(_at(cfg, day, 19))
        # the state's figures: spent today = the day's release + the period's reservation
        assert f.spent_today == f.epsilon_worst_case_per_day == float(eps_day)
        assert f.remaining_today == 0
        assert f.epsilon_per_window == pytest.approx(day_msg.privacy.epsilon)  # 0.3
        assert ledger.spent_exact(day_msg.day) == eps_day
        assert day_msg.privacy.epsilon + agg.period.epsilon_per_full_day == pytest.approx(
            f.spent_today
        )
    (period,) = [m for m in out if isinstance(m, PeriodMessage)]
    assert len(period.days) == 7
    assert period.privacy.epsilon_per_day == pytest.approx(float(agg.period.epsilon_per_full_day))
    assert period.privacy.epsilon == pytest.approx(7 * period.privacy.epsilon_per_day)
    # the other statistics keep their absolute ε per day of the default design
    for stat, block in day_msg.stats.items():
        assert block.epsilon == pytest.approx(float(DEFAULT_DESIGN.shares[stat] * eps_day))
    assert period.stats["footfall"].values["coffee"]["visitors"] == 7 * 6
    assert agg.windows_closed == 8


def test_a_stop_publishes_the_period_so_far_and_the_restart_skips_that_day() -> None:
    cfg = _cfg()
    ledger = _ledger(cfg)
    eps_day = Fraction(str(cfg.privacy.epsilon_per_day))
    first = DayAndPeriod(cfg, ledger=ledger, noise=lambda s: _Zero(1), started=0.0)
    for tok in range(8):
        _walk(first, tok, _at(cfg, 8, 9) + tok, ["entrance", "coffee"])
    _drain(first, _at(cfg, 8, 20))
    for tok in range(8):
        _walk(first, 100 + tok, _at(cfg, 9, 9) + tok, ["entrance", "coffee"])
    stop = _at(cfg, 9, 12)
    out = [_parse(w) for w in close_all(first, stop)]
    (part,) = [m for m in out if isinstance(m, PeriodMessage)]
    assert part.partial and part.days == ["2027-03-08", "2027-03-09"]
    assert part.period_end == int(stop)
    assert part.stats["footfall"].values["coffee"]["visitors"] == 16
    assert first.held(0.0).records == 0  # nothing kept after the stop
    # the restarted device: Tuesday's period share was claimed already, so the period
    # skips the rest of Tuesday; the day release takes what is left, never more
    second = DayAndPeriod(cfg, ledger=ledger, noise=lambda s: _Zero(1), started=stop + 60)
    for tok in range(8):
        _walk(second, 200 + tok, stop + 120 + tok, ["entrance", "coffee"])
        _walk(second, 300 + tok, _at(cfg, 10, 9) + tok, ["entrance", "coffee"])
        assert ledger.spent_exact("2027-03-09") <= eps_day
    _drain(second, _at(cfg, 9, 20))
    assert ledger.spent_exact("2027-03-09") == eps_day
    _drain(second, _at(cfg, 10, 20))
    (rest,) = [_parse(w) for w in close_all(second, _at(cfg, 10, 21))]  # no day open: period
    assert isinstance(rest, PeriodMessage) and rest.days == ["2027-03-10"]
    assert rest.stats["footfall"].values["coffee"]["visitors"] == 8


def test_restarts_never_take_a_day_past_its_budget() -> None:
    cfg = _cfg()
    ledger = _ledger(cfg)
    eps_day = Fraction(str(cfg.privacy.epsilon_per_day))
    t = _at(cfg, 8, 8.5)
    tok = 0
    for stop_h in (9.0, 9.5, 13.0, 13.01, 18.0, 21.0):  # six runs in one day, stopped at each
        agg = make_aggregator(cfg, ledger=ledger, local_day=lambda ts: "", started=t)
        assert isinstance(agg, DayAndPeriod)
        while t < min(_at(cfg, 8, stop_h), _at(cfg, 8, 19.9)):
            _walk(agg, tok, t, ["entrance", "coffee"])
            tok, t = tok + 1, t + 300
        _drain(agg, _at(cfg, 8, stop_h))
        for window in close_all(agg, _at(cfg, 8, stop_h)):
            _parse(window)
        assert ledger.spent_exact("2027-03-08") <= eps_day
        t = _at(cfg, 8, stop_h) + 60
    assert ledger.spent_exact("2027-03-08") == eps_day


def test_the_bookkeeping_is_one_raw_holder_for_both_releases() -> None:
    cfg = _cfg()
    mono = [1000.0]
    agg = DayAndPeriod(cfg, ledger=_ledger(cfg), started=0.0, monotonic=lambda: mono[0])
    assert isinstance(agg, RawHolder) and agg.holder_name == "privacy.aggregator"
    _walk(agg, 7, _at(cfg, 8, 10), ["entrance", "coffee"])
    assert agg.held(mono[0]).records == 2 == agg.contributions_held()  # one per release
    assert (7).to_bytes(16, "big") not in repr(vars(agg.period)).encode()
    mono[0] += agg.budget.hold_s + 1
    agg.purge(mono[0])
    assert agg.held(mono[0]).records == 0
    _walk(agg, 8, _at(cfg, 8, 11), ["entrance", "coffee"])
    assert agg.forget((8).to_bytes(16, "big")) == 2 and agg.held(mono[0]).records == 0


def test_period_days_config_and_the_release_chosen() -> None:
    with pytest.raises(ValidationError, match="period_days"):
        _cfg(period_days=1).model_validate(_cfg(period_days=1).model_dump())
    off = _cfg(period_days=0)
    agg = make_aggregator(off, ledger=_ledger(off), local_day=lambda ts: "", started=0.0)
    assert type(agg) is DayAggregator and "footfall" in agg.budget.design.published()
    on = make_aggregator(_cfg(), ledger=_ledger(_cfg()), local_day=lambda ts: "", started=0.0)
    assert isinstance(on, DayAndPeriod) and "footfall" not in on.budget.design.published()
    beside = day_design_beside(PERIOD_DESIGN)
    assert sum(beside.shares.values()) == 1
    for stat, share in beside.shares.items():  # same ε per day as in the default design
        assert share * (1 - PERIOD_DESIGN.shares["footfall"]) == DEFAULT_DESIGN.shares[stat]
    with pytest.raises(ValueError, match="cannot sum"):
        PeriodAggregator(_cfg(), design=DEFAULT_DESIGN, ledger=_ledger(_cfg()))


def test_events_of_the_next_period_before_a_tick_publish_the_last_one_first() -> None:
    cfg = _cfg()
    agg = _period(cfg, _ledger(cfg))
    for tok in range(6):
        _walk(agg, tok, _at(cfg, 12, 12) + tok, ["entrance", "coffee"])  # Friday
    _drain(agg, _at(cfg, 12, 20))  # Friday folded; no tick after (the clock jumped)
    for tok in range(6):
        _walk(agg, 100 + tok, _at(cfg, 15, 9) + tok, ["entrance", "coffee"])  # next Monday
    (done,) = _drain(agg, _at(cfg, 15, 10))
    last = _parse(done)
    assert isinstance(last, PeriodMessage) and last.days == ["2027-03-12"]
    (nxt,) = close_all(agg, _at(cfg, 15, 11))
    msg = _parse(nxt)
    assert isinstance(msg, PeriodMessage) and msg.days == ["2027-03-15"]
    assert msg.first_day == "2027-03-15" and msg.stats["footfall"].values["coffee"]["visitors"] == 6
