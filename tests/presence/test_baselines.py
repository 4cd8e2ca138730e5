"""The anchor systems' zone methods (edge/presence/baselines.py) on hand-built sightings.

Two receivers of the demo store, ``rx-produce`` (zone produce, called A) and ``rx-bakery``
(zone bakery, called B), both -59 dBm at 1 m with path-loss exponent 2.2, so a distance
``d`` is ``-59 - 22·log10(d)`` dBm: every 1 dB is a factor 10^(1/22) ≈ 1.11 in distance.
The RSSI values below were chosen so that each documented rule (window median, absolute
hysteresis, 30 %/15 % margins, timeouts) lands on different sides of its threshold, with the
distances stated next to them.
"""

from __future__ import annotations

import math

import pytest

from edge.events import Sighting, SightingSource
from edge.presence.baselines import (
    BASELINES,
    BermudaZones,
    ESPresenseZones,
    RoomAssistantZones,
    distance_m,
)
from edge.presence.layout import Anchor
from edge.privacy.holders import Holding, RawHolder
from tests.helpers import demo_config

CFG = demo_config()
A, B = "rx-produce", "rx-bakery"
ZA, ZB = "produce", "bakery"
RETENTION = CFG.privacy.raw_retention_s
CFG_ANCHORS = ESPresenseZones(CFG).layout.anchors


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _feed(method: object, token: bytes, sightings: list[tuple[float, str, int]]) -> str | None:
    """Feed ``(ts, anchor, rssi)`` in order; return the zone after the last one."""
    assert isinstance(method, ESPresenseZones | BermudaZones | RoomAssistantZones)
    for ts, anchor, rssi in sightings:
        method.sighting(Sighting(token, 0, anchor, rssi, ts, SightingSource.BLE))
    return method.zone_of(token)


def _d(rssi: int) -> float:
    """Distance for A or B (-59 dBm at 1 m, n = 2.2), as the documented formula gives it."""
    return float(10 ** ((-59 - rssi) / 22))


def test_distance_is_the_log_distance_formula_with_the_receive_offset() -> None:
    # d = 10^((rssi@1m - (rssi + offset)) / (10·n)): 22 dB below the 1 m level is 10 m at n 2.2.
    anchor = Anchor("x", "z", rssi_at_1m=-59, offset_db=0.0, exponent=2.2)
    assert distance_m(anchor, -59) == pytest.approx(1.0)
    assert distance_m(anchor, -81) == pytest.approx(10.0)
    shifted = Anchor("x", "z", rssi_at_1m=-59, offset_db=3.0, exponent=2.2)
    assert distance_m(shifted, -84) == pytest.approx(10.0)  # a receiver 3 dB deaf
    steep = Anchor("x", "z", rssi_at_1m=-60, offset_db=0.0, exponent=3.0)
    assert distance_m(steep, -90) == pytest.approx(10.0)
    assert _d(-74) == pytest.approx(distance_m(CFG_ANCHORS[B], -74))


# -- ESPresense ------------------------------------------------------------------------------------


def test_espresense_uses_the_median_of_its_window() -> None:
    m = ESPresenseZones(CFG)
    assert _feed(m, b"t", [(0.0, B, -74)]) == ZB  # B at 4.81 m
    # A: -100 then -59: median -79.5 dBm = 8.5 m, still farther than B, although the last
    # reading (1 m) is far nearer.
    assert _feed(m, b"t", [(1.0, A, -100), (2.0, A, -59)]) == ZB
    # A: -100, -59, -59: median -59 = 1 m, nearer than B by 3.8 m (> 1 m): switch. The mean
    # (-72.7 dBm = 4.2 m) would not be nearer by the hysteresis.
    assert _feed(m, b"t", [(3.0, A, -59)]) == ZA
    assert _d(-59) < _d(-74) - 1.0 < 10 ** ((72.67 - 59) / 22)


def test_espresense_window_forgets_readings_older_than_15_s() -> None:
    m = ESPresenseZones(CFG)
    bs = [(float(t), B, -74) for t in range(0, 21)]  # B keeps reporting 4.81 m
    far = [(float(t) + 0.5, A, -100) for t in range(5)]  # A far, t = 0.5 … 4.5
    assert _feed(m, b"t", sorted(bs[:13] + far + [(12.5, A, -59)])) == ZB
    # At 12.5 the window still holds the five far readings: median far. At 20.5 only the
    # readings of 12.5 and 20.5 are in the last 15 s: median 1 m.
    assert _feed(m, b"t", [*bs[13:], (20.5, A, -59)]) == ZA
    longer = ESPresenseZones(CFG)
    longer.WINDOW_S = 30.0  # the same sightings with a 30 s window keep the far readings
    _feed(longer, b"t", sorted([*bs, *far, (12.5, A, -59), (20.5, A, -59)]))
    assert longer.zone_of(b"t") == ZB


@pytest.mark.parametrize(
    ("incumbent", "challenger", "zone"),
    [
        (-74, -72, ZB),  # 4.81 m vs 3.90 m: 0.91 m nearer, less than 1 m: stay
        (-74, -71, ZA),  # 4.81 m vs 3.51 m: 1.30 m nearer: switch
        (-59, -40, ZB),  # 1 m vs 0.14 m: 7x nearer but only 0.86 m: the margin is absolute
        (-84, -83, ZA),  # 13.6 m vs 12.3 m: only 9.5 % nearer, but 1.3 m: switch
    ],
)
def test_espresense_switches_only_when_nearer_by_the_absolute_hysteresis(
    incumbent: int, challenger: int, zone: str
) -> None:
    m = ESPresenseZones(CFG)
    assert _feed(m, b"t", [(0.0, B, incumbent)]) == ZB
    got = _feed(m, b"t", [(1.0, A, challenger), (2.0, A, challenger), (3.0, A, challenger)])
    assert got == zone
    assert (_d(challenger) < _d(incumbent) - ESPresenseZones.HYSTERESIS_M) == (zone == ZA)


def test_espresense_ignores_an_incumbent_whose_report_is_older_than_5_s() -> None:
    m = ESPresenseZones(CFG)
    assert _feed(m, b"t", [(0.0, B, -74), (4.0, A, -72)]) == ZB  # within 1 m: stay
    m = ESPresenseZones(CFG)
    assert _feed(m, b"t", [(0.0, B, -74), (6.0, A, -72)]) == ZA  # B's report is stale


# -- Bermuda ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("readings", "zone"),
    [
        # 30 % rule. A first reads far (9.0 m), so the 15 % rule's "worst of the last 5 beats
        # the incumbent's best" cannot hold; only the 30 % margin can switch.
        ([-80, -70], ZA),  # 3.16 m / 4.81 m = 0.66: more than 30 % closer
        ([-80, -71], ZB),  # 3.51 / 4.81 = 0.73: 27 % closer, not enough
        # 15 % rule: A's readings all beat B's best.
        ([-72, -72], ZA),  # 3.90 / 4.81 = 0.81: 19 % closer, and every reading nearer
        ([-73, -73], ZB),  # 4.33 / 4.81 = 0.90: only 10 % closer
        ([-80, -72], ZB),  # 19 % closer, but A's worst recent reading (9.0 m) is farther
    ],
)
def test_bermuda_switches_area_by_the_30_and_15_percent_hysteresis(
    readings: list[int], zone: str
) -> None:
    m = BermudaZones(CFG)
    assert _feed(m, b"t", [(0.0, B, -74)]) == ZB
    assert _feed(m, b"t", [(1.0 + i, A, r) for i, r in enumerate(readings)]) == zone


def test_bermuda_limits_how_fast_a_distance_may_recede() -> None:
    m = BermudaZones(CFG)
    assert _feed(m, b"t", [(0.0, A, -59), (0.1, B, -74)]) == ZA
    # A reads -100 (73 m) half a second later: at most 3 m/s of retreat, so 2.5 m, averaged
    # with 1 m: 1.75 m, still nearer than B. Unlimited, A would average 37 m and B win.
    assert _feed(m, b"t", [(0.5, A, -100)]) == ZA
    free = BermudaZones(CFG)
    free.MAX_RETREAT_MPS = 1e9
    assert _feed(free, b"t", [(0.0, A, -59), (0.1, B, -74), (0.5, A, -100)]) == ZB


def test_bermuda_takes_a_closer_reading_at_once() -> None:
    m = BermudaZones(CFG)
    # A averaged 9.0 m over five readings; one reading of 1 m counts at once (not averaged
    # to 7.7 m), which is more than 30 % closer than B's 4.81 m.
    far = [(float(i), A, -80) for i in range(5)]
    assert _feed(m, b"t", [(0.0, B, -74), *far]) == ZB
    assert _feed(m, b"t", [(5.0, B, -74), (5.5, A, -59)]) == ZA


def test_bermuda_treats_a_scanner_silent_for_30_s_as_unknown() -> None:
    m = BermudaZones(CFG)
    assert _feed(m, b"t", [(0.0, A, -59), (29.0, B, -74)]) == ZA  # A (1 m) still counts
    m = BermudaZones(CFG)
    assert _feed(m, b"t", [(0.0, A, -59), (31.0, B, -74)]) == ZB  # A unheard for 31 s


# -- room-assistant --------------------------------------------------------------------------------


def test_room_assistant_takes_the_strongest_receiver_without_hysteresis() -> None:
    m = RoomAssistantZones(CFG)
    assert _feed(m, b"t", [(0.0, B, -74)]) == ZB
    # 1 dB stronger (4.33 m vs 4.81 m): neither ESPresense's 1 m nor Bermuda's 15 % margin
    # would switch; room-assistant does.
    assert _feed(m, b"t", [(1.0, A, -73)]) == ZA
    assert _feed(m, b"t", [(2.0, B, -71)]) == ZB


def test_room_assistant_stops_counting_a_receiver_unheard_for_the_timeout() -> None:
    m = RoomAssistantZones(CFG)
    assert _feed(m, b"t", [(0.0, A, -60), (10.0, B, -74)]) == ZA
    assert _feed(m, b"t", [(59.5, B, -74)]) == ZA  # A heard 59.5 s ago: still counts
    assert _feed(m, b"t", [(61.0, B, -74)]) == ZB  # 61 s > 60 s: A no longer counts


def test_room_assistant_filters_rssi_with_its_kalman_filter() -> None:
    m = RoomAssistantZones(CFG)
    steady = [(float(t) + dt, a, r) for t in range(30) for dt, a, r in ((0, A, -72), (0.5, B, -74))]
    assert _feed(m, b"t", steady) == ZA
    # One strong reading of B (-60) moves B's filtered RSSI by ~gain·14 dB with a gain of a
    # few %, not past A's -72: the raw strongest would be B.
    assert _feed(m, b"t", [(30.0, B, -60)]) == ZA
    # Kept up, B's filtered value converges: B wins.
    assert _feed(m, b"t", [(31.0 + t, B, -60) for t in range(30)]) == ZB


# -- the raw-holder methods ------------------------------------------------------------------------


METHODS = [ESPresenseZones, BermudaZones, RoomAssistantZones]


def test_every_anchor_method_is_listed_once() -> None:
    assert sorted(BASELINES) == ["Bermuda", "ESPresense", "room-assistant"]
    assert {c.__name__ for c in BASELINES.values()} == {c.__name__ for c in METHODS}


@pytest.mark.parametrize("cls", METHODS)
def test_each_method_is_a_raw_holder_with_its_own_name(cls: type[ESPresenseZones]) -> None:
    m = cls(CFG)
    assert isinstance(m, RawHolder)
    assert m.holder_name.startswith("presence.baseline.")
    assert len({c.holder_name for c in METHODS}) == len(METHODS)


@pytest.mark.parametrize("cls", METHODS)
def test_purge_drops_tokens_past_the_retention(cls: type[ESPresenseZones]) -> None:
    clock = Clock()
    m = cls(CFG, monotonic=clock)
    clock.now = 100.0
    _feed(m, b"old", [(0.0, A, -60), (0.2, B, -70)])
    clock.now = 110.0
    _feed(m, b"new", [(10.0, A, -65)])
    assert m.held(115.0) == Holding(3 + 2, 15.0)  # token + 2 anchors, token + 1 anchor
    m.purge(100.0 + RETENTION - 0.5)
    assert m.zone_of(b"old") == ZA  # not yet past the retention
    m.purge(100.0 + RETENTION + 0.5)
    assert m.zone_of(b"old") is None
    assert m.zone_of(b"new") == ZA
    assert m.held(100.0 + RETENTION + 0.5) == Holding(2, RETENTION - 9.5)
    m.purge(110.0 + RETENTION + 0.5)
    assert m.held(200.0) == Holding(0, 0.0)


@pytest.mark.parametrize("cls", METHODS)
def test_a_new_sighting_renews_the_tokens_age(cls: type[ESPresenseZones]) -> None:
    clock = Clock()
    m = cls(CFG, monotonic=clock)
    _feed(m, b"t", [(0.0, A, -60)])
    clock.now = 100.0 + RETENTION - 1.0
    _feed(m, b"t", [(RETENTION - 1.0, A, -60)])
    m.purge(100.0 + RETENTION + 1.0)
    assert m.zone_of(b"t") == ZA


@pytest.mark.parametrize("cls", METHODS)
def test_forget_drops_one_token_at_once(cls: type[ESPresenseZones]) -> None:
    m = cls(CFG, monotonic=Clock())
    _feed(m, b"a", [(0.0, A, -60), (0.2, B, -70)])
    _feed(m, b"b", [(0.5, B, -60)])
    assert m.forget(b"a") == 3  # the token and its two anchors' states
    assert m.zone_of(b"a") is None
    assert m.forget(b"a") == 0
    assert m.zone_of(b"b") == ZB
    assert m.held(100.0).records == 2


@pytest.mark.parametrize("cls", METHODS)
def test_tick_forgets_tokens_unheard_for_the_raw_retention(cls: type[ESPresenseZones]) -> None:
    # forget_after_s (150 s, ESPresense's) is capped by the raw retention (30 s).
    m = cls(CFG, monotonic=Clock())
    _feed(m, b"a", [(0.0, A, -60)])
    _feed(m, b"b", [(20.0, B, -60)])
    m.tick(RETENTION - 1.0)
    assert m.zone_of(b"a") == ZA
    m.tick(RETENTION + 1.0)
    assert m.zone_of(b"a") is None
    assert m.zone_of(b"b") == ZB


@pytest.mark.parametrize("cls", METHODS)
def test_an_unknown_anchor_is_ignored_and_holds_nothing(cls: type[ESPresenseZones]) -> None:
    m = cls(CFG, monotonic=Clock())
    assert _feed(m, b"t", [(0.0, "no-such-anchor", -50)]) is None
    assert m.held(100.0) == Holding(0, 0.0)
    assert math.isfinite(m.held(100.0).oldest_age_s)
