"""Window release edges, with the noise switched off: every cell kind exactly at k and k − 1,
the exact payload, the per-token caps at their boundary, dwell buckets at their edges, the
bookkeeping's purge boundary, the counters, and the ε figures from the ledger."""

from __future__ import annotations

import time
import uuid
from fractions import Fraction

import pytest

from edge.config.models import AppConfig
from edge.events import PresenceKind
from edge.privacy import Budget, WindowAggregator
from edge.privacy.aggregates import DWELL_BUCKETS_S, DWELL_LABELS, dwell_bucket
from edge.privacy.holders import Holding
from edge.privacy.ledger import EpsilonLedger
from tests.helpers import demo_config
from tests.privacy.fixed_noise import FixedNoise
from tests.privacy.test_aggregates import _ev, _Mono, _NoNoise

T0 = 1_800_000_000 - (1_800_000_000 % 900)  # a window start (aligned to the epoch)
DAY = "2027-01-15"


def _agg(cfg: AppConfig | None = None, **kw: object) -> WindowAggregator:
    cfg = cfg or demo_config()
    kw.setdefault("noise", _NoNoise())
    kw.setdefault("new_id", lambda: "w-1")
    return WindowAggregator(cfg, **kw)  # type: ignore[arg-type]


def _tok(i: int) -> bytes:
    return i.to_bytes(16, "big")


def test_dwell_buckets_at_their_edges() -> None:
    for i, lo in enumerate(DWELL_BUCKETS_S):
        assert dwell_bucket(lo) == i  # a bucket includes its lower edge
        if i:
            assert dwell_bucket(lo - 0.001) == i - 1  # and excludes the upper one
    assert dwell_bucket(10**6) == len(DWELL_LABELS) - 1
    assert dwell_bucket(-1.0) == 0  # a stay stamped across a clock step: the first bucket
    assert DWELL_LABELS == ("0-30", "30-60", "60-120", "120-300", "300-600", "600+")


def test_every_cell_kind_is_published_at_k_and_suppressed_at_k_minus_1() -> None:
    cfg = demo_config()
    k = cfg.privacy.k
    coupons = [c.id for c in cfg.campaigns]
    agg = _agg(cfg)
    t = T0 + 450.0  # mid-window: the window still starts at T0
    for i in range(k):  # k tokens: enter coffee, stay 30 s exactly, leave; an offer; holdout
        agg.presence(_ev(PresenceKind.ENTER, i, "coffee", t))
        agg.presence(_ev(PresenceKind.LEAVE, i, "coffee", t + 30, dwell_s=30.0))
        agg.offer(_tok(i), coupons[0], t)
    for i in range(100, 100 + k - 1):  # k − 1 tokens: the same in dairy, another coupon
        agg.presence(_ev(PresenceKind.ENTER, i, "dairy", t))
        agg.presence(_ev(PresenceKind.LEAVE, i, "dairy", t + 30, dwell_s=30.0))
        agg.offer(_tok(i), coupons[1], t)
        agg.holdout(_tok(i), t)
    window = agg.close(T0 + 900)
    assert window is not None
    assert (window.start, window.end, window.id) == (T0, T0 + 900, "w-1")
    assert (window.site, window.device) == (cfg.site, cfg.device)
    b = Budget.from_config(cfg)
    zones = len(cfg.store.zones)
    cells = zones * (1 + len(DWELL_LABELS)) + len(coupons) + 1
    assert dict(window.payload) == {
        "release": "window",
        "id": "w-1",
        "site": cfg.site,
        "device": cfg.device,
        "window_start": T0,
        "window_end": T0 + 900,
        "partial": False,
        "zones": {"coffee": {"visitors": k, "dwell_s": {"30-60": k}}},
        "offers": {coupons[0]: k},
        "holdout": None,  # k − 1
        "cells": cells,
        "cells_suppressed": cells - 3,
        "privacy": {
            "k": k,
            "epsilon_window": round(float(b.epsilon_per_window), 6),
            "noise": "discrete_laplace",
            "noise_scale": float(b.noise_scale),
            "sensitivity": b.sensitivity,
            "tokens_per_window": b.tokens_per_window,
        },
    }
    assert agg.cells_suppressed_total == cells - 3
    assert (agg.windows_closed, agg.windows_withheld) == (1, 0)
    # the holdout at k in the next window, and the suppressed total keeps adding up
    for i in range(k):
        agg.holdout(_tok(i), T0 + 901)
    nxt = agg.close(T0 + 1800)
    assert nxt is not None and nxt.payload["holdout"] == k
    assert nxt.payload["zones"] == {} and nxt.payload["offers"] == {}
    assert agg.cells_suppressed_total == 2 * (cells - 3) + 2
    assert agg.windows_closed == 2


def test_a_zone_with_only_dwell_above_k_is_published_without_visitors() -> None:
    cfg = demo_config()
    k = cfg.privacy.k
    agg = _agg(cfg)
    for i in range(k):  # k dwell ends in coffee from k tokens first seen elsewhere
        agg.presence(_ev(PresenceKind.ENTER, i, "dairy", T0 + 1.0))
        agg.presence(_ev(PresenceKind.ENTER, i, "snacks", T0 + 130.0, previous_zone="coffee",
                         previous_dwell_s=130.0))  # fmt: skip
    window = agg.close(T0 + 900)
    assert window is not None
    assert window.payload["zones"]["coffee"] == {"visitors": None, "dwell_s": {"120-300": k}}


def test_the_window_starts_on_its_aligned_slot_whatever_the_first_event() -> None:
    agg = _agg()
    assert agg.window_start(T0 + 899.9) == T0 and agg.window_start(T0 + 900) == T0 + 900
    agg.presence(_ev(PresenceKind.ENTER, 1, "coffee", T0 + 899.5))
    assert not agg.due(T0 + 899.9)
    assert agg.due(T0 + 900)
    window = agg.close(T0 + 900)
    assert window is not None and (window.start, window.end) == (T0, T0 + 900)


def test_dwell_counts_in_at_most_m_zones_and_once_per_zone() -> None:
    cfg = demo_config()
    k, m = cfg.privacy.k, cfg.privacy.max_zones_per_window
    zones = ["coffee", "dairy", "bakery", "snacks", "frozen"]
    assert m == 3
    agg = _agg(cfg)
    for i in range(k):
        agg.presence(_ev(PresenceKind.ENTER, i, zones[0], T0))
        for j in range(1, len(zones)):  # each move ends a 40 s stay in the previous zone
            agg.presence(_ev(PresenceKind.ENTER, i, zones[j], T0 + 40 * j,
                             previous_zone=zones[j - 1], previous_dwell_s=40.0))  # fmt: skip
        # a second stay in coffee ends: already counted for this token
        agg.presence(_ev(PresenceKind.LEAVE, i, "coffee", T0 + 300, dwell_s=400.0))
    window = agg.close(T0 + 900)
    assert window is not None
    out = window.payload["zones"]
    assert {z: out[z]["dwell_s"] for z in zones[:m]} == {z: {"30-60": k} for z in zones[:m]}
    assert set(out) == set(zones[:m])  # snacks and frozen: neither visitors nor dwell


def test_only_enter_ends_the_previous_stay_and_unknown_zones_are_ignored() -> None:
    cfg = demo_config()
    k = cfg.privacy.k
    agg = _agg(cfg)
    for i in range(k):
        agg.presence(_ev(PresenceKind.ENTER, i, "no-such-zone", T0))  # removed at a reload
        agg.presence(_ev(PresenceKind.LEAVE, i, "no-such-zone", T0 + 1, dwell_s=50.0))
        # a dwell update that names a previous zone does not end a stay there
        agg.presence(_ev(PresenceKind.DWELL, i, "no-such-zone", T0 + 2, previous_zone="coffee",
                         previous_dwell_s=50.0))  # fmt: skip
        agg.offer(_tok(i), "no-such-coupon", T0 + 3)
        # the unknown zone used none of the token's m zones
        for zone in ("produce", "bakery", "checkout"):
            agg.presence(_ev(PresenceKind.ENTER, i, zone, T0 + 4))
            agg.presence(_ev(PresenceKind.LEAVE, i, zone, T0 + 5, dwell_s=61.0))
    window = agg.close(T0 + 900)
    assert window is not None
    assert window.payload["zones"] == {
        z: {"visitors": k, "dwell_s": {"60-120": k}} for z in ("produce", "bakery", "checkout")
    }
    assert window.payload["offers"] == {}


def test_a_leave_counts_the_dwell_of_the_stay_it_ends() -> None:
    cfg = demo_config()
    k = cfg.privacy.k
    agg = _agg(cfg)
    for i in range(k):
        agg.presence(_ev(PresenceKind.ENTER, i, "coffee", T0, dwell_s=1.0))
        agg.presence(_ev(PresenceKind.LEAVE, i, "coffee", T0 + 600, dwell_s=600.0,
                         previous_dwell_s=5.0))  # fmt: skip
    window = agg.close(T0 + 900)
    assert window is not None
    assert window.payload["zones"]["coffee"] == {"visitors": k, "dwell_s": {"600+": k}}


def test_offers_and_holdout_are_bounded_per_token_and_not_counted_once_sealed() -> None:
    cfg = demo_config()
    k, cap = cfg.privacy.k, cfg.policy.max_offers_per_visit
    coupon = cfg.campaigns[0].id
    mono = _Mono()
    agg = _agg(cfg, monotonic=mono)
    for i in range(k):
        for _ in range(cap + 1):
            agg.offer(_tok(i), coupon, T0)
        agg.holdout(_tok(i), T0)
        agg.holdout(_tok(i), T0 + 1)
    mono.t += 901
    agg.purge(mono.t)  # the bookkeeping outlived the window: sealed
    for i in range(50, 60):
        agg.offer(_tok(i), coupon, T0 + 2)
        agg.holdout(_tok(i), T0 + 2)
        agg.presence(_ev(PresenceKind.ENTER, i, "coffee", T0 + 2))
    assert agg.held(mono.t).records == 0  # nothing new kept while sealed
    window = agg.close(T0 + 900)
    assert window is not None
    assert window.payload["offers"] == {coupon: k * cap}
    assert window.payload["holdout"] == k
    assert window.payload["zones"] == {}
    for i in range(k):  # the next window counts again
        agg.offer(_tok(i), coupon, T0 + 901)
    nxt = agg.close(T0 + 1800)
    assert nxt is not None and nxt.payload["offers"] == {coupon: k}


def test_the_purge_boundary_is_exactly_one_window_and_a_purge_of_nothing_does_not_seal() -> None:
    cfg = demo_config()
    k = cfg.privacy.k
    mono = _Mono()
    agg = _agg(cfg, monotonic=mono)
    agg.presence(_ev(PresenceKind.ENTER, 1, "coffee", T0))
    created = mono.t
    mono.t = created + 900
    agg.purge(mono.t)  # exactly one window old: kept
    assert agg.held(mono.t) == Holding(1, 900.0, 900.0)
    for i in range(2, k + 1):  # not sealed: the others still count
        agg.presence(_ev(PresenceKind.ENTER, i, "coffee", T0 + 1))
    agg.purge(created + 900.5)
    assert agg.held(created + 900.5).records == k - 1  # only the oldest went
    agg.presence(_ev(PresenceKind.ENTER, 99, "coffee", T0 + 2))  # sealed now
    window = agg.close(T0 + 900)
    assert window is not None and window.payload["zones"]["coffee"]["visitors"] == k


def test_held_reports_the_oldest_entry_and_is_empty_after_a_close() -> None:
    mono = _Mono()
    agg = _agg(monotonic=mono)
    assert agg.held(mono.t) == Holding(0, 0.0, 900.0)
    agg.holdout(_tok(1), T0)
    mono.t += 30
    agg.holdout(_tok(2), T0)
    assert agg.held(mono.t + 10) == Holding(2, 40.0, 900.0)
    assert agg.held(mono.t - 100) == Holding(2, 0.0, 900.0)  # never a negative age
    assert agg.contributions_held() == 2
    agg.close(T0 + 900)
    assert agg.held(mono.t) == Holding(0, 0.0, 900.0) and agg.contributions_held() == 0


def test_no_events_means_no_window_and_no_ledger_slot() -> None:
    cfg = demo_config()
    ledger = EpsilonLedger(None, Budget.from_config(cfg))
    agg = _agg(cfg, ledger=ledger, local_day=lambda ts: DAY)
    assert not agg.due(T0 + 10**6)
    assert agg.close(T0 + 10**6) is None and agg.close(T0, partial=True) is None
    assert ledger.published(DAY) == 0
    assert (agg.windows_closed, agg.windows_withheld) == (0, 0)


def test_a_partial_close_ends_at_the_stop_and_the_next_window_opens_afresh() -> None:
    cfg = demo_config()
    k = cfg.privacy.k
    mono = _Mono()
    agg = _agg(cfg, monotonic=mono)
    for i in range(k):
        agg.presence(_ev(PresenceKind.ENTER, i, "coffee", T0 + 10))
    stop = agg.close(T0 + 300.7, partial=True)
    assert stop is not None
    assert (stop.start, stop.end) == (T0, T0 + 300)
    assert stop.payload["partial"] is True and stop.payload["window_end"] == T0 + 300
    assert stop.payload["zones"]["coffee"]["visitors"] == k
    mono.t += 5000  # a partial close leaves no window open, on either clock
    assert not agg.due(T0 + 5000)
    late = agg.close(T0 + 10**6, partial=True)  # a stop long after the slot: capped at its end
    assert late is None
    for i in range(k):
        agg.presence(_ev(PresenceKind.ENTER, i, "coffee", T0 + 2000))
    assert not agg.due(T0 + 2000)
    window = agg.close(T0 + 10**6, partial=True)
    assert window is not None and (window.start, window.end) == (T0 + 1800, T0 + 2700)


def test_after_a_forced_close_the_next_window_is_also_bounded_by_the_monotonic_clock() -> None:
    mono = _Mono()
    agg = _agg(monotonic=mono)
    agg.presence(_ev(PresenceKind.ENTER, 1, "coffee", T0 + 10))
    mono.t += 900
    back = T0 - 3600  # the wall clock stepped back an hour and stays there
    assert agg.due(back)
    first = agg.close(back)
    assert first is not None and (first.start, first.end) == (T0, T0 + 900)
    assert not agg.due(back)  # the next slot just opened
    mono.t += 899
    assert not agg.due(back)
    mono.t += 1
    assert agg.due(back)  # its window_s of collecting are over, without any event
    second = agg.close(back)
    assert second is not None and second.start == T0 + 900


def test_withheld_windows_are_counted_and_the_ledger_sees_each_slot_once() -> None:
    cfg = demo_config()
    budget = Budget.from_config(cfg)
    ledger = EpsilonLedger(None, budget)
    assert ledger.claim(T0, DAY) and ledger.claim(T0 + 900, DAY)  # published before a restart
    agg = _agg(cfg, ledger=ledger, local_day=lambda ts: DAY)
    for slot in range(3):
        agg.holdout(_tok(1), T0 + 900 * slot + 1)
        out = agg.close(T0 + 900 * (slot + 1))
        assert (out is None) == (slot < 2)
    assert (agg.windows_withheld, agg.windows_closed) == (2, 1)
    assert ledger.published(DAY) == 3


def test_privacy_figures_come_from_the_ledger_of_the_local_day() -> None:
    cfg = demo_config()
    budget = Budget.from_config(cfg)
    ledger = EpsilonLedger(None, budget)
    agg = _agg(cfg, ledger=ledger, local_day=lambda ts: DAY if ts < T0 + 1800 else "next")
    for slot in range(2):
        agg.holdout(_tok(1), T0 + 900 * slot)
        assert agg.close(T0 + 900 * (slot + 1)) is not None
    f = agg.privacy_figures(T0 + 1799)
    w = Fraction(1, budget.max_windows_per_day)
    assert (f.k, f.window_s, f.windows_today) == (cfg.privacy.k, 900, 2)
    assert (f.epsilon_per_day, f.epsilon_per_window, f.epsilon_worst_case_per_day) == (
        1.0,
        float(w),
        1.0,
    )
    assert f.spent_today == float(2 * w) and f.remaining_today == float(1 - 2 * w)
    other = agg.privacy_figures(T0 + 1800)  # another local day: nothing spent yet
    assert (other.spent_today, other.remaining_today, other.windows_today) == (0.0, 1.0, 0)


def test_the_default_local_day_is_the_utc_date_and_ids_are_fresh_uuids() -> None:
    cfg = demo_config()
    agg = WindowAggregator(cfg, noise=_NoNoise())  # default ledger, local day and ids
    ids = []
    for slot in range(2):
        agg.holdout(_tok(1), T0 + 900 * slot)
        window = agg.close(T0 + 900 * (slot + 1))
        assert window is not None
        ids.append(uuid.UUID(window.payload["id"]))
    assert ids[0] != ids[1]
    day = time.strftime("%Y-%m-%d", time.gmtime(T0))
    assert agg.ledger.published(day) == 2
    assert agg.privacy_figures(T0 + 1).windows_today == 2


@pytest.mark.parametrize("before", [True, False])
def test_campaigns_set_at_runtime_keep_known_counts(before: bool) -> None:
    cfg = demo_config()
    k = cfg.privacy.k
    known = cfg.campaigns[0].id
    agg = _agg(cfg)
    if before:  # counted before the change: kept
        for i in range(k):
            agg.offer(_tok(i), known, T0)
    agg.set_campaigns([known, "fresh", known])
    for i in range(k - 1):
        agg.offer(_tok(100 + i), "fresh", T0 + 1)
    window = agg.close(T0 + 900)
    assert window is not None
    assert window.payload["offers"] == ({known: k} if before else {})
    assert window.payload["cells"] == len(cfg.store.zones) * 7 + len(cfg.campaigns) + 1 + 1
    agg.holdout(_tok(1), T0 + 901)
    nxt = agg.close(T0 + 1800)
    assert nxt is not None and nxt.payload["cells"] == len(cfg.store.zones) * 7 + 2 + 1


@pytest.mark.parametrize("drawn", [3, -2])
def test_suppression_is_decided_on_the_noisy_count(drawn: int) -> None:
    cfg = demo_config()
    k = cfg.privacy.k
    agg = _agg(cfg, noise=FixedNoise(drawn))
    for i in range(k - drawn):  # noisy: exactly k, published as k
        agg.presence(_ev(PresenceKind.ENTER, i, "coffee", T0))
    for i in range(100, 100 + k - drawn - 1):  # noisy: k − 1, suppressed
        agg.presence(_ev(PresenceKind.ENTER, i, "dairy", T0))
    window = agg.close(T0 + 900)
    assert window is not None
    zones = window.payload["zones"]
    assert zones["coffee"] == {"visitors": k, "dwell_s": {}}
    assert "dairy" not in zones
    assert window.payload["holdout"] is None  # 0 + drawn < k


def test_privacy_metadata_is_rounded_to_six_places() -> None:
    cfg = demo_config()
    cfg = cfg.model_copy(
        update={"privacy": cfg.privacy.model_copy(update={"epsilon_per_day": 0.7})}
    )
    agg = _agg(cfg)
    agg.holdout(_tok(1), T0)
    window = agg.close(T0 + 900)
    assert window is not None
    assert Budget.from_config(cfg).noise_scale == Fraction(27 * 96 * 10, 7)
    assert window.payload["privacy"]["epsilon_window"] == 0.007292  # 0.7 / 96
    assert window.payload["privacy"]["noise_scale"] == 3702.857143  # 27 / (0.7 / 96)
