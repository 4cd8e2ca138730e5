"""Presence tracker: zones with hysteresis, dwell and leave events, retention and TTL."""

from __future__ import annotations

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
    assert sum(e.kind is PresenceKind.ENTER for e in events) == 1


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
    assert 9.0 <= enter.previous_dwell_s <= 13.0


def test_dwell_events_are_periodic() -> None:
    tr, events = _tracker()
    for i in range(61):
        tr.sighting(_sight("b-dairy", -60, float(i)))
    dwell = [e for e in events if e.kind is PresenceKind.DWELL]
    assert len(dwell) == 6  # every dwell_update_s = 10 s
    assert dwell[-1].dwell_s == 60.0


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
