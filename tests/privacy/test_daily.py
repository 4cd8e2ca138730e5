"""The day release: counts at k and k-1 without noise, per-token caps, the token bound and
the noise scale, segments at a stop, the ledger, and the bookkeeping as a raw holder."""

from __future__ import annotations

import datetime as dt
import itertools
import math
from fractions import Fraction
from zoneinfo import ZoneInfo

import pytest

from edge.config.models import AppConfig
from edge.contract.aggregate import DayMessage, cells, parse
from edge.events import PresenceEvent, PresenceKind
from edge.privacy.budget import Budget
from edge.privacy.daily import (
    DEFAULT_DESIGN,
    VISIT_MIN_S,
    DayAggregator,
    DayBudget,
    DayDesign,
)
from edge.privacy.holders import RawHolder
from edge.privacy.ledger import EpsilonLedger
from edge.privacy.noise import DiscreteLaplace
from tests.asyncapi_schemas import check
from tests.helpers import demo_config


class _Zero(DiscreteLaplace):
    def sample(self) -> int:
        return 0


def _cfg() -> AppConfig:
    cfg = demo_config()
    return cfg.model_copy(
        update={"privacy": cfg.privacy.model_copy(update={"release": "day", "day_hours": (8, 20)})}
    )


def _open(cfg: AppConfig) -> float:
    tz = ZoneInfo(cfg.timezone)
    return dt.datetime(2027, 3, 10, 8, 0, tzinfo=tz).timestamp()


def _agg(cfg: AppConfig, *, noise: bool = False, mono: list[float] | None = None) -> DayAggregator:
    clock = mono if mono is not None else [0.0]
    return DayAggregator(
        cfg,
        ledger=EpsilonLedger(None, Budget.from_config(cfg)),
        noise=DiscreteLaplace if noise else (lambda s: _Zero(1)),
        started=0.0,
        monotonic=lambda: clock[0],
    )


def _ev(kind: PresenceKind, token: int, zone: str, ts: float, prev: str | None = None,
        dwell: float = 0.0, prev_dwell: float = 0.0) -> PresenceEvent:  # fmt: skip
    return PresenceEvent(kind, token.to_bytes(16, "big"), 1, zone, prev, dwell, 0.0, ts, prev_dwell)


def _walk(agg: DayAggregator, token: int, ts: float, zones: list[str]) -> None:
    """A token first seen in ``zones[0]`` that walks through the rest (45 s each), then goes."""
    agg.presence(_ev(PresenceKind.ENTER, token, zones[0], ts))
    for i, (a, b) in enumerate(itertools.pairwise(zones)):
        agg.presence(_ev(PresenceKind.ENTER, token, b, ts + 60 * (i + 1), a, 0.0, 45.0))
    agg.presence(_ev(PresenceKind.LEAVE, token, zones[-1], ts + 60 * len(zones), dwell=45.0))


def _message(agg: DayAggregator, ts: float, partial: bool = False) -> DayMessage:
    window = agg.close(ts, partial=partial)
    assert window is not None
    check("Aggregate", dict(window.payload))
    msg = parse(dict(window.payload))
    assert isinstance(msg, DayMessage)
    return msg


def test_counts_exactly_at_k_are_published_and_k_minus_1_suppressed() -> None:
    cfg = _cfg()
    k = cfg.privacy.k
    t0 = _open(cfg) + 3600
    agg = _agg(cfg)
    for tok in range(k):  # k tokens walk entrance → coffee
        _walk(agg, tok, t0 + tok, ["entrance", "coffee"])
    for tok in range(100, 100 + k - 1):  # k-1 tokens walk entrance → dairy
        _walk(agg, tok, t0 + tok, ["entrance", "dairy"])
    msg = _message(agg, t0 + 12 * 3600)
    foot = msg.stats["footfall"].values
    assert foot["coffee"]["visitors"] == k
    assert foot["dairy"]["visitors"] is None  # k-1: suppressed
    assert foot["produce"]["visitors"] is None  # 0
    trans = msg.stats["transitions"].values
    assert trans["entrance"]["coffee"] == k and trans["entrance"]["dairy"] is None
    # arrivals: tokens first seen at the entrance zone, in the hour of that first sighting
    assert (
        msg.stats["arrivals"].values["*"][
            f"{dt.datetime.fromtimestamp(t0, ZoneInfo(cfg.timezone)).hour:02d}"
        ]
        == 2 * k - 1
    )
    assert msg.cells_suppressed == sum(1 for c in cells(msg) if c.suppressed)


def test_footfall_counts_entered_stays_of_at_least_the_visit_length() -> None:
    cfg = _cfg()
    t0 = _open(cfg) + 3600
    agg = _agg(cfg)
    short = VISIT_MIN_S - 1
    for tok in range(6):  # arrival: the entrance counts; a short stay in produce does not
        agg.presence(_ev(PresenceKind.ENTER, tok, "entrance", t0))
        agg.presence(_ev(PresenceKind.ENTER, tok, "produce", t0 + 40, "entrance", 0, 40.0))
        agg.presence(_ev(PresenceKind.ENTER, tok, "bakery", t0 + 60, "produce", 0, short))
        agg.presence(_ev(PresenceKind.LEAVE, tok, "bakery", t0 + 200, dwell=VISIT_MIN_S))
    for tok in range(100, 106):  # first seen mid-store (a rotation successor): coffee does
        agg.presence(_ev(PresenceKind.ENTER, tok, "coffee", t0))  # not count, dairy does
        agg.presence(_ev(PresenceKind.ENTER, tok, "dairy", t0 + 300, "coffee", 0, 300.0))
        agg.presence(_ev(PresenceKind.LEAVE, tok, "dairy", t0 + 400, dwell=100.0))
    foot = _message(agg, t0 + 12 * 3600).stats["footfall"].values
    assert foot["entrance"]["visitors"] == 6 and foot["bakery"]["visitors"] == 6
    assert foot["dairy"]["visitors"] == 6
    assert foot["produce"]["visitors"] is None and foot["coffee"]["visitors"] is None


def test_a_token_counts_at_most_its_caps_whatever_it_does() -> None:
    cfg = _cfg()
    t0 = _open(cfg) + 600
    agg = _agg(cfg)
    zones = ["entrance", "produce", "bakery", "checkout", "beverages", "snacks", "coffee", "dairy"]
    for tok in range(10):
        for rep in range(5):  # leave and return, many zones, many moves
            _walk(agg, tok, t0 + rep * 500, zones)
            agg.presence(_ev(PresenceKind.LEAVE, tok, "dairy", t0 + rep * 500 + 490, dwell=30))
    msg = _message(agg, t0 + 12 * 3600)
    caps = agg.budget.caps
    total = {s: sum(c.value or 0 for c in cells(msg) if c.stat == s) for s in msg.stats}
    assert total["footfall"] == 10 * caps["footfall"]
    assert total["transitions"] == 10 * caps["transitions"]
    assert total["dwell"] == 10 * caps["dwell"]


def test_only_the_counting_hours_count() -> None:
    cfg = _cfg()
    t_open = _open(cfg)
    agg = _agg(cfg)
    for tok in range(20):
        _walk(agg, tok, t_open - 3600 + tok, ["entrance", "coffee"])  # 07:00: not counted
    assert agg.due(t_open + 12 * 3600) is False  # nothing opened a segment
    for tok in range(20, 30):
        _walk(agg, tok, t_open + tok, ["entrance", "coffee"])
    msg = _message(agg, t_open + 12 * 3600)
    assert msg.stats["footfall"].values["coffee"]["visitors"] == 10
    assert msg.period_end - msg.period_start == 12 * 3600


def test_token_bound_and_noise_scale_are_exact() -> None:
    cfg = _cfg()
    b = DayBudget.from_config(cfg)
    p = cfg.privacy
    slack = Fraction(str(p.raw_retention_s)) + 5
    n = math.ceil((12 * 3600 + slack) / p.token_rotation_s) + 1
    assert b.tokens_per_day == n == 74  # 12 h, 10-min rotation, 35 s slack
    eps = Fraction(str(p.epsilon_per_day))
    for stat in DEFAULT_DESIGN.published():
        scale = b.noise_scale(stat, 12 * 3600, eps)
        assert scale == Fraction(n * b.caps[stat]) / (DEFAULT_DESIGN.shares[stat] * eps)
    # one person's worst case over every statistic is the day's ε (shares sum to 1)
    assert (
        sum(
            Fraction(n * b.caps[s]) / b.noise_scale(s, 12 * 3600, eps)
            for s in DEFAULT_DESIGN.published()
        )
        == eps
        == b.worst_case_per_day
    )


def test_a_full_day_spends_exactly_the_budget_and_state_agrees() -> None:
    cfg = _cfg()
    agg = _agg(cfg, noise=True)
    t0 = _open(cfg)
    _walk(agg, 1, t0 + 10, ["entrance", "coffee"])
    msg = _message(agg, t0 + 12 * 3600)
    f = agg.privacy_figures(t0 + 12 * 3600 - 1)
    assert f.spent_today == f.epsilon_worst_case_per_day == cfg.privacy.epsilon_per_day
    assert msg.privacy.epsilon == pytest.approx(f.spent_today)
    assert f.remaining_today == 0


def test_a_stop_publishes_a_partial_segment_and_the_rest_of_the_day_fits() -> None:
    cfg = _cfg()
    ledger = EpsilonLedger(None, Budget.from_config(cfg))
    t0 = _open(cfg)
    first = DayAggregator(cfg, ledger=ledger, noise=lambda s: _Zero(1), started=0.0)
    _walk(first, 1, t0 + 10, ["entrance", "coffee"])
    stop = t0 + 4 * 3600
    part = _message(first, stop, partial=True)
    assert part.partial and part.period_end == stop
    b = first.budget
    eps = Fraction(1) * b.tokens(4 * 3600) / (b.tokens(4 * 3600) + b.tokens(8 * 3600))
    assert ledger.spent_exact(part.day) == eps
    # the restarted device counts from its start on and spends what is left, never more
    second = DayAggregator(cfg, ledger=ledger, noise=lambda s: _Zero(1), started=stop + 60)
    _walk(second, 2, stop + 30, ["entrance", "coffee"])  # before its start: not counted
    _walk(second, 3, stop + 120, ["entrance", "dairy"])
    rest = _message(second, t0 + 12 * 3600)
    assert rest.period_start == int(stop + 60)
    assert ledger.spent_exact(rest.day) == 1
    assert (
        rest.stats["footfall"].sensitivity
        == b.tokens(rest.period_end - (stop + 60)) * b.caps["footfall"]
    )
    # a third segment the same day finds nothing left and is withheld
    third = DayAggregator(cfg, ledger=ledger, noise=lambda s: _Zero(1), started=stop + 7200)
    _walk(third, 4, stop + 7300, ["entrance", "dairy"])
    assert third.close(t0 + 12 * 3600) is None and third.windows_withheld == 1


def test_bookkeeping_is_a_raw_holder_purged_after_one_token_lifetime() -> None:
    cfg = _cfg()
    mono = [1000.0]
    agg = _agg(cfg, mono=mono)
    assert isinstance(agg, RawHolder)
    t0 = _open(cfg) + 60
    _walk(agg, 7, t0, ["entrance", "coffee"])
    held = agg.held(mono[0])
    assert held.records == 1 and held.limit_s == agg.budget.hold_s
    assert (7).to_bytes(16, "big") not in repr(vars(agg)).encode()  # keyed by a salted digest
    mono[0] += agg.budget.hold_s - 1
    agg.purge(mono[0])
    assert agg.held(mono[0]).records == 1
    mono[0] += 2
    agg.purge(mono[0])
    assert agg.held(mono[0]).records == 0
    _walk(agg, 8, t0 + 5, ["entrance", "coffee"])
    assert agg.forget((8).to_bytes(16, "big")) == 1 and agg.held(mono[0]).records == 0


def test_design_shares_are_checked() -> None:
    with pytest.raises(ValueError, match="sum to at most 1"):
        DayDesign(shares={"footfall": Fraction(3, 4), "arrivals": Fraction(1, 2)}, caps={})
    with pytest.raises(ValueError, match="unknown"):
        DayDesign(shares={"paths": Fraction(1, 2)}, caps={})
