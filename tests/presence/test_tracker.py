"""Presence tracker: zones with hysteresis, dwell and leave events, retention and TTL."""

from __future__ import annotations

import math

from edge.events import PresenceEvent, PresenceKind, Sighting, SightingSource
from edge.presence import PresenceTracker
from tests.helpers import demo_config

TOKEN = bytes(range(16))


def _sight(anchor: str, rssi: int, ts: float, token: bytes = TOKEN, tier: int = 2) -> Sighting:
    return Sighting(token, tier, anchor, rssi, ts, SightingSource.APP)


def _tracker() -> tuple[PresenceTracker, list[PresenceEvent]]:
    events: list[PresenceEvent] = []
    return PresenceTracker(demo_config(), events.append), events


def test_strongest_anchor_sets_zone_and_enter_event() -> None:
    tr, events = _tracker()
    tr.sighting(_sight("b-coffee", -62, 0.0))
    tr.sighting(_sight("b-snacks", -80, 0.5))
    assert tr.zone_of(TOKEN) == "coffee"
    assert [e.kind for e in events] == [PresenceKind.ENTER]
    assert events[0].zone == "coffee" and events[0].previous_zone is None


def test_hysteresis_prevents_flapping_on_small_differences() -> None:
    tr, events = _tracker()
    tr.sighting(_sight("b-coffee", -70, 0.0))
    for i in range(1, 20):
        # The neighbour is only 1-2 dB stronger now and then: below the 4 dB hysteresis.
        tr.sighting(_sight("b-snacks", -69 + (i % 2), i * 0.5))
        tr.sighting(_sight("b-coffee", -70, i * 0.5 + 0.1))
    assert tr.zone_of(TOKEN) == "coffee"
    settled = [e for e in events if e.kind is PresenceKind.ENTER and e.ts >= 5.0]
    assert settled == []  # no zone change once settled, fade or not


def test_clear_move_changes_zone_with_previous_dwell() -> None:
    tr, events = _tracker()
    for i in range(10):
        tr.sighting(_sight("b-coffee", -60, float(i)))
    for i in range(10, 20):
        tr.sighting(_sight("b-coffee", -85, float(i)))
        tr.sighting(_sight("b-snacks", -60, float(i) + 0.2))
    assert tr.zone_of(TOKEN) == "snacks"
    enter = [e for e in events if e.kind is PresenceKind.ENTER][-1]
    assert enter.previous_zone == "coffee"
    # the move (a jump: no walk between the zones) is followed within seconds, once the new
    # zone is presence.switch_ratio (12 in the demo store) times likelier (bench_presence.py)
    assert 9.0 <= enter.previous_dwell_s <= 19.0


def test_dwell_events_are_periodic() -> None:
    tr, events = _tracker()
    for i in range(61):
        tr.sighting(_sight("b-dairy", -60, float(i)))
        tr.tick(float(i))  # the daemon ticks every second: the filter steps there
    enter = next(e for e in events if e.kind is PresenceKind.ENTER)
    assert enter.ts == 0.0 and enter.zone == "dairy"  # one anchor: its zone at once
    dwell = [e for e in events if e.kind is PresenceKind.DWELL]
    assert [e.ts - enter.ts for e in dwell] == [10.0 * k for k in range(1, len(dwell) + 1)]
    assert len(dwell) == int((60.0 - enter.ts) // 10.0)  # every dwell_update_s = 10 s


def test_retention_purges_samples_and_ttl_evicts_with_leave() -> None:
    cfg = demo_config()
    tr, events = _tracker()
    tr.sighting(_sight("b-dairy", -60, 0.0))
    tr.sighting(_sight("b-coffee", -90, 0.0))
    for i in range(1, 25):
        tr.sighting(_sight("b-dairy", -60, float(i)))
    tr.tick(31.0)  # b-coffee sample is 31 s old: purged; token still live
    r = tr.retention(31.0)
    assert r.tokens == 1 and r.samples == 1
    assert r.oldest_sample_age_s <= cfg.privacy.raw_retention_s
    tr.tick(24.0 + cfg.presence.token_ttl_s + 0.1)
    assert tr.retention(100.0).tokens == 0
    assert events[-1].kind is PresenceKind.LEAVE


def test_unknown_anchor_is_dropped_and_capacity_bounded() -> None:
    cfg = demo_config()
    cfg = cfg.model_copy(update={"presence": cfg.presence.model_copy(update={"max_tokens": 10})})
    events: list[PresenceEvent] = []
    tr = PresenceTracker(cfg, events.append)
    tr.sighting(_sight("nope", -60, 0.0))
    assert tr.dropped_unknown_anchor == 1
    for i in range(15):
        tr.sighting(_sight("b-dairy", -60, 0.0, token=i.to_bytes(16, "big")))
    assert tr.retention(0.0).tokens == 10
    assert tr.dropped_capacity == 5


def test_forget_drops_everything_without_leave() -> None:
    tr, events = _tracker()
    tr.sighting(_sight("b-dairy", -60, 0.0))
    n = len(events)
    assert tr.forget(TOKEN)
    assert tr.retention(1.0).tokens == 0
    assert len(events) == n


def test_a_beacon_listed_in_no_zone_still_places_the_phone() -> None:
    """Beacon-only stores: anchors come from positions, not from the zones' beacon lists."""
    cfg = demo_config()
    zones = [z.model_copy(update={"beacons": []}) for z in cfg.store.zones]
    store = cfg.store.model_copy(update={"zones": zones, "receivers": []})
    cfg = cfg.model_copy(update={"store": store})
    events: list[PresenceEvent] = []
    tr = PresenceTracker(cfg, events.append)
    assert tr.layout.anchors["b-frozen"].zone == "frozen"  # the zone containing its position
    # Standing next to b-frozen (25, 17): the path-loss levels of all beacons from there.
    for i in range(10):
        for b in cfg.store.beacons:
            d = max(0.5, ((b.position[0] - 25.0) ** 2 + (b.position[1] - 16.0) ** 2) ** 0.5)
            rssi = round(b.rssi_at_1m - 10 * b.path_loss_exponent * math.log10(d))
            tr.sighting(_sight(b.id, rssi, float(i)))
    assert tr.zone_of(TOKEN) == "frozen"


def test_a_phone_with_a_gain_offset_is_placed_by_the_shape_of_its_levels() -> None:
    """Phones differ by several dB: the filter fits a common offset per phone."""
    cfg = demo_config()
    tr, _ = _tracker()
    here = (18.5, 3.0)  # bakery
    for i in range(10):
        for b in cfg.store.beacons:
            d = max(0.5, math.dist(b.position, here))
            rssi = round(b.rssi_at_1m - 10 * b.path_loss_exponent * math.log10(d)) - 8
            tr.sighting(_sight(b.id, rssi, float(i)))
    assert tr.zone_of(TOKEN) == "bakery"


def test_the_forward_filter_rides_out_a_deep_fade() -> None:
    """One anchor's 25 dB fade for a few packets does not move a settled phone."""
    cfg = demo_config()
    tr, events = _tracker()
    here = (11.0, 10.0)  # coffee, at its beacon
    for i in range(30):
        for b in cfg.store.beacons:
            d = max(0.5, math.dist(b.position, here))
            rssi = round(b.rssi_at_1m - 10 * b.path_loss_exponent * math.log10(d))
            if b.id == "b-coffee" and 15 <= i < 18:
                rssi -= 25
            tr.sighting(_sight(b.id, rssi, float(i)))
    assert tr.zone_of(TOKEN) == "coffee"
    settled = [e for e in events if e.kind is PresenceKind.ENTER and e.ts >= 5.0]
    assert settled == []  # no zone change once settled, fade or not


def test_levels_of_one_second_are_weighed_together_at_the_tick() -> None:
    """Sightings only accumulate; the filter steps once per second (on tick or the next second)."""
    cfg = demo_config()
    tr, events = _tracker()
    here = (26.0, 10.0)  # beverages, at its beacon

    def second(t: float) -> None:
        for b in cfg.store.beacons:
            d = max(0.5, math.dist(b.position, here))
            tr.sighting(_sight(b.id, round(b.rssi_at_1m - 22 * math.log10(d)), t))

    second(0.0)
    # Before any step the phone is in the zone of the first anchor heard (b-entrance).
    assert tr.zone_of(TOKEN) == "entrance"
    tr.tick(0.0)
    assert tr.zone_of(TOKEN) == "beverages"
    assert [e.zone for e in events if e.kind is PresenceKind.ENTER] == ["entrance", "beverages"]


def test_a_long_dwell_is_not_undone_by_seconds_of_correlated_shadowing() -> None:
    """Consecutive levels are not independent evidence: a 5-second shadowing dip of the
    near anchors (AR(1), τ ≈ 5 s) after a minute of dwell does not move a settled phone."""
    cfg = demo_config()
    tr, events = _tracker()
    here = (11.0, 9.0)  # coffee, 1 m from its beacon, 3 m from the dairy boundary
    for i in range(70):
        for b in cfg.store.beacons:
            d = max(0.5, math.dist(b.position, here))
            rssi = b.rssi_at_1m - 22 * math.log10(d)
            if 60 <= i < 65 and b.id in ("b-coffee", "b-produce"):
                rssi -= 6.0  # one σ of shadowing on the anchors that place the phone
            tr.sighting(_sight(b.id, round(rssi), float(i)))
        tr.tick(float(i))
    assert tr.zone_of(TOKEN) == "coffee"
    assert [e.zone for e in events if e.kind is PresenceKind.ENTER and e.ts >= 5.0] == []
