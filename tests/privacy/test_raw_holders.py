"""Raw holders: each one empties on time (monotonic clock), on ``forget`` and on purge.

The clocks here are injected so the test controls time; every structure under test is the
real one the daemon uses.
"""

from __future__ import annotations

import datetime as dt
import json
from zoneinfo import ZoneInfo

from edge.events import PresenceEvent, Sighting, SightingSource
from edge.presence.tracker import PresenceTracker
from edge.privacy.holders import RawHolder, RawRegistry
from edge.radio import DayKeys, Ingest, token_tag
from tests.helpers import demo_config

KEY = bytes(range(32))


class Mono:
    """A monotonic reading the test advances."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _frame(rpi: bytes, tier: int = 2) -> bytes:
    header = (1 << 4) | tier
    return bytes((header,)) + rpi + token_tag(KEY, header, rpi)


def test_tag_cache_is_empty_retention_plus_one_second_after_last_sighting() -> None:
    cfg = demo_config()
    tz = ZoneInfo(cfg.timezone)
    noon = dt.datetime(2026, 11, 24, 12, 0, tzinfo=tz)
    mono = Mono()
    retention = cfg.privacy.raw_retention_s
    keys = DayKeys({noon.date(): KEY}, retention_s=retention, monotonic=mono)
    ingest = Ingest(cfg, keys)
    beacon = next(b for b in cfg.store.beacons if b.identity.kind == "ibeacon")
    ident = beacon.identity
    seen: list[Sighting] = []
    rpis = [bytes([i]) * 16 for i in range(50)]
    for i, rpi in enumerate(rpis):
        msg = {
            "frame": _frame(rpi).hex(),
            "beacon": {
                "kind": "ibeacon",
                "uuid": str(ident.uuid),  # type: ignore[union-attr]
                "major": ident.major,  # type: ignore[union-attr]
                "minor": ident.minor,  # type: ignore[union-attr]
            },
            "rssi": -60,
            "ts": noon.timestamp() + i * 0.1,
        }
        ingest.app_payload(json.dumps(msg).encode(), seen.append, now=noon.timestamp() + i * 0.1)
        mono.t += 0.1
    assert len(seen) == 50
    assert keys.held(mono.t).records == 50
    mono.t += retention - 1.0
    keys.purge(mono.t)
    assert keys.held(mono.t).records > 0  # still inside the retention
    mono.t += 2.0  # retention + 1 s after the last sighting
    keys.purge(mono.t)
    assert keys.held(mono.t).records == 0
    # and no cached entry carries any of the tokens
    assert not any(rpi in k for k in keys._verified for rpi in rpis)


def test_wall_clock_step_backwards_does_not_extend_retention() -> None:
    cfg = demo_config()
    mono = Mono()
    events: list[PresenceEvent] = []
    tracker = PresenceTracker(cfg, events.append, monotonic=mono)
    anchor = next(iter(tracker.layout.anchors))
    wall = 1_800_000_000.0
    token = b"\x07" * 16
    tracker.sighting(Sighting(token, 2, anchor, -60, wall, SightingSource.BLE))
    assert tracker.held(mono.t).records > 0
    # The wall clock steps back an hour (NTP on a Pi without RTC); monotonic time moves on.
    wall -= 3600.0
    mono.t += cfg.privacy.raw_retention_s + 1.0
    tracker.tick(wall)  # the wall-clock TTL check alone would keep the token
    assert tracker.is_live(token)
    tracker.purge(mono.t)
    assert not tracker.is_live(token)
    assert tracker.held(mono.t).records == 0
    assert events[-1].kind.value == "leave"


def test_registry_sums_purges_and_forgets_every_holder() -> None:
    cfg = demo_config()
    mono = Mono()
    tracker = PresenceTracker(cfg, lambda ev: None, monotonic=mono)
    keys = DayKeys({}, retention_s=cfg.privacy.raw_retention_s, monotonic=mono)
    registry = RawRegistry()
    for holder in (tracker, keys):
        assert isinstance(holder, RawHolder)
        registry.register(holder)
    anchor = next(iter(tracker.layout.anchors))
    a, b = b"\x01" * 16, b"\x02" * 16
    for token in (a, b):
        tracker.sighting(Sighting(token, 1, anchor, -60, 1e9, SightingSource.BLE))
    assert registry.total(mono.t) == 4  # two tokens, one anchor sample each
    assert registry.forget(a) == {"presence.tracker": 2, "radio.tag_cache": 0}
    assert registry.total(mono.t) == 2
    holdings = registry.holdings(mono.t + 5)
    assert holdings["presence.tracker"].oldest_age_s == 5.0
    registry.purge(mono.t + cfg.privacy.raw_retention_s + 1)
    assert registry.total(mono.t) == 0


def test_beacon_stats_are_a_registered_holder_purged_after_their_window() -> None:
    from edge.presence.calibration import WINDOW_S, BeaconStats

    mono = Mono()
    stats = BeaconStats(demo_config(), monotonic=mono)
    assert isinstance(stats, RawHolder)
    stats.add("b-coffee", "rx-coffee", -70, 1e9)
    assert stats.held(mono.t).records == 1 and stats.held(mono.t).limit_s == WINDOW_S
    mono.t += WINDOW_S - 1
    stats.purge(mono.t)
    assert stats.held(mono.t).records == 1
    mono.t += 2
    stats.purge(mono.t)
    assert stats.held(mono.t).records == 0
