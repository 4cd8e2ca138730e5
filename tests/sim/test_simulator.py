"""Store simulator: determinism, ordering, what the ingest gate makes of it, ground truth."""

from __future__ import annotations

import datetime as dt
import itertools
import math
import random
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter

from edge.events import Advertisement, BeaconSighting, Sighting, SightingSource
from edge.radio import AppSighting, DayKeys, Ingest, token_tag
from edge.radio import frames as fr
from edge.sim import AppReport, Platform, StoreSimulator
from edge.sim import advertise as air
from edge.sim.geometry import ZoneMap
from tests.helpers import demo_config

TEN_MIN = 600.0
CFG = demo_config()
QUIET = CFG.model_copy(update={"simulator": CFG.simulator.model_copy(update={"junk_per_s": 0.0})})
TOKEN_KEY = fr.uuid16_key(CFG.radio.token_service_uuid)


def _run(sim: StoreSimulator, seconds: float, step: float = 1.0) -> list[Advertisement | AppReport]:
    items: list[Advertisement | AppReport] = []
    t, end = sim.now, sim.now + seconds
    while t < end:
        t = min(t + step, end)
        items.extend(sim.advance(t))
    return items


def _fingerprint(item: Advertisement | AppReport) -> tuple[object, ...]:
    if isinstance(item, AppReport):
        return ("app", item.ts, item.payload)
    return (
        item.address,
        item.rssi,
        item.ts,
        item.receiver,
        sorted(item.manufacturer_data.items()),
        sorted(item.service_data.items()),
        item.local_name,
    )


@dataclass
class IngestRun:
    """Ten simulated minutes of the demo store fed through the real ingest gate."""

    sim: StoreSimulator
    ingest: Ingest
    items: list[Advertisement | AppReport]
    ble: list[Sighting] = field(default_factory=list)
    app: list[Sighting] = field(default_factory=list)
    beacons: list[BeaconSighting] = field(default_factory=list)
    dropped: int = 0


@pytest.fixture(scope="module")
def ten_minutes() -> IngestRun:
    sim = StoreSimulator(CFG, seed=11)
    run = IngestRun(sim, Ingest(CFG, DayKeys.from_hex(sim.day_keys())), _run(sim, TEN_MIN))
    for item in run.items:
        if isinstance(item, AppReport):
            run.ingest.app_payload(item.payload, run.app.append)
            continue
        out = run.ingest.advertisement(item)
        if isinstance(out, Sighting):
            run.ble.append(out)
        elif isinstance(out, BeaconSighting):
            run.beacons.append(out)
        else:
            run.dropped += 1
    return run


# -- determinism and ordering ----------------------------------------------------------------------


def test_same_seed_gives_the_same_stream_however_it_is_stepped() -> None:
    a = [_fingerprint(i) for i in _run(StoreSimulator(CFG, seed=5), 180.0, step=1.0)]
    b = [_fingerprint(i) for i in _run(StoreSimulator(CFG, seed=5), 180.0, step=37.5)]
    c = [_fingerprint(i) for i in _run(StoreSimulator(CFG, seed=6), 180.0, step=1.0)]
    assert len(a) > 10_000
    assert a == b
    assert a != c


def test_abandoned_advance_loses_nothing() -> None:
    whole = [_fingerprint(i) for i in _run(StoreSimulator(CFG, seed=2), 20.0, step=20.0)]
    sim = StoreSimulator(CFG, seed=2)
    got = []
    gen = sim.advance(sim.start_ts + 20.0)
    for _ in range(7):
        got.append(_fingerprint(next(gen)))
    del gen  # the caller stopped early; the rest must come with the next call
    got.extend(_fingerprint(i) for i in sim.advance(sim.start_ts + 20.0))
    assert got == whole


def test_items_are_time_ordered_and_within_each_step(ten_minutes: IngestRun) -> None:
    sim = StoreSimulator(CFG, seed=3)
    previous_until, last = sim.start_ts, -math.inf
    for k in range(1, 121):
        until = sim.start_ts + 0.5 * k
        for item in sim.advance(until):
            assert previous_until < item.ts <= until or item.ts == previous_until == sim.start_ts
            assert item.ts >= last
            last = item.ts
        previous_until = until
    tss = [i.ts for i in ten_minutes.items]
    assert tss == sorted(tss)


def test_default_start_is_config_start_in_site_time_zone() -> None:
    sim = StoreSimulator(CFG)
    assert sim.start_ts == dt.datetime(2026, 11, 23, 8, 0, tzinfo=dt.UTC).timestamp()
    assert StoreSimulator(CFG, start_ts=1_800_000_000.0).start_ts == 1_800_000_000.0


def test_day_keys_cover_the_days_around_the_start_and_depend_on_the_seed() -> None:
    keys = StoreSimulator(CFG, seed=1).day_keys()
    assert sorted(keys) == ["2026-11-22", "2026-11-23", "2026-11-24", "2026-11-25"]
    assert all(len(k) == 64 and int(k, 16) >= 0 for k in keys.values())
    assert keys == StoreSimulator(CFG, seed=1).day_keys()
    assert keys["2026-11-23"] != StoreSimulator(CFG, seed=2).day_keys()["2026-11-23"]


def test_tokens_verify_across_local_midnight() -> None:
    midnight = dt.datetime(2026, 11, 24, tzinfo=ZoneInfo(CFG.timezone)).timestamp()
    sim = StoreSimulator(QUIET, seed=12, start_ts=midnight - 300.0)
    ingest = Ingest(QUIET, DayKeys.from_hex(sim.day_keys()))
    adverts = [i for i in _run(sim, 600.0, step=60.0) if isinstance(i, Advertisement)]
    assert any(a.ts < midnight for a in adverts) and any(a.ts > midnight for a in adverts)
    tokens = sum(isinstance(ingest.advertisement(a), Sighting) for a in adverts)
    assert tokens == sim.stats.token_adverts > 0


# -- through the ingest gate -----------------------------------------------------------------------


def test_ingest_keeps_ours_and_drops_all_else(ten_minutes: IngestRun) -> None:
    run, stats, c = ten_minutes, ten_minutes.sim.stats, ten_minutes.ingest.counters
    assert c.tokens > 0 and c.beacons > 0
    assert c.dropped_not_ours > 0 and c.dropped_malformed > 0 and c.dropped_unverified > 0
    assert stats.junk_emitted > 0 and stats.non_opted_in_adverts > 0
    # Every token advert verifies, every beacon advert resolves, nothing else gets through.
    assert len(run.ble) == stats.token_adverts > 0
    assert len(run.beacons) == stats.beacon_adverts > 0
    assert run.dropped == stats.junk_emitted + stats.non_opted_in_adverts
    assert len(run.app) == stats.app_sightings_emitted > 0
    assert c.app_invalid == 0
    assert stats.adverts_emitted == sum(isinstance(i, Advertisement) for i in run.items)
    assert stats.app_reports_emitted == sum(isinstance(i, AppReport) for i in run.items)


def test_android_phones_advertise_and_ios_phones_report(ten_minutes: IngestRun) -> None:
    sim = ten_minutes.sim
    for sightings, platform, source in (
        (ten_minutes.ble, Platform.ANDROID, SightingSource.BLE),
        (ten_minutes.app, Platform.IOS, SightingSource.APP),
    ):
        owners = set()
        for s in sightings:
            shopper = sim.shopper(s.token)
            assert shopper is not None
            assert shopper.platform is platform and s.source is source
            assert s.tier == shopper.tier
            owners.add(shopper.id)
        assert len(owners) >= 2
    stats = sim.stats
    assert stats.ios + stats.android == stats.opted_in
    assert sum(stats.opted_in_by_tier.values()) == stats.opted_in
    assert stats.opted_in_by_tier[3] == 0  # demo tier weights give tier 3 no weight
    assert 0 < stats.opted_in < stats.shoppers
    assert sim.live_shoppers() > 0


def test_app_reports_follow_the_app_schema(ten_minutes: IngestRun) -> None:
    batch = TypeAdapter(list[AppSighting])
    reports = [i for i in ten_minutes.items if isinstance(i, AppReport)]
    assert reports
    for report in reports[:200]:
        sightings = batch.validate_json(report.payload)
        assert sightings
        for s in sightings:
            assert abs(s.ts - report.ts) < 0.001
            assert fr.parse_token(bytes.fromhex(s.frame)).version == 1
            assert -100 <= s.rssi <= 0


def test_manufacturer_data_tokens_when_the_config_accepts_only_those() -> None:
    cfg = CFG.model_copy(
        update={"radio": CFG.radio.model_copy(update={"accept": "manufacturer_data"})}
    )
    sim = StoreSimulator(cfg, seed=4)
    ingest = Ingest(cfg, DayKeys.from_hex(sim.day_keys()))
    tokens = [
        i
        for i in _run(sim, 30.0)
        if isinstance(i, Advertisement) and cfg.radio.token_company_id in i.manufacturer_data
    ]
    results = [ingest.advertisement(a) for a in tokens]
    assert sum(isinstance(r, Sighting) for r in results) == sim.stats.token_adverts > 0


# -- rotation --------------------------------------------------------------------------------------


def test_rpis_and_addresses_rotate_at_ten_minute_boundaries() -> None:
    cfg = CFG.model_copy(update={"simulator": CFG.simulator.model_copy(update={"junk_per_s": 0.0})})
    sim = StoreSimulator(cfg, seed=8)
    seen: dict[int, list[tuple[float, bytes, str]]] = defaultdict(list)
    for item in _run(sim, 2 * TEN_MIN + 90.0, step=30.0):
        if isinstance(item, Advertisement) and TOKEN_KEY in item.service_data:
            rpi = fr.parse_token(item.service_data[TOKEN_KEY]).rpi
            owner = sim.shopper_of(rpi)
            assert owner is not None
            seen[owner].append((item.ts, rpi, item.address))
    crossing = 0
    all_rpis: set[bytes] = set()
    for adverts in seen.values():
        by_interval: dict[int, set[tuple[bytes, str]]] = defaultdict(set)
        for ts, rpi, address in adverts:
            by_interval[int(ts // TEN_MIN)].add((rpi, address))
        assert all(len(ids) == 1 for ids in by_interval.values())  # one RPI+address each
        rpis = [next(iter(ids))[0] for _, ids in sorted(by_interval.items())]
        addresses = [next(iter(ids))[1] for _, ids in sorted(by_interval.items())]
        assert len(set(rpis)) == len(rpis) and len(set(addresses)) == len(addresses)
        assert all(int(a[:2], 16) >> 6 == 0b01 for a in addresses)  # resolvable private
        all_rpis.update(rpis)
        crossing += len(by_interval) > 1
    assert crossing >= 2
    assert len(all_rpis) == sum(len({r for _, r, _ in a}) for a in seen.values())


# -- ground truth ----------------------------------------------------------------------------------


def test_true_zone_agrees_with_positions_inside_zone_rects(ten_minutes: IngestRun) -> None:
    sim = ten_minutes.sim
    checked = 0
    for s in ten_minutes.ble[::500] + ten_minutes.app[::200]:
        shopper = sim.shopper(s.token)
        assert shopper is not None
        path = shopper.path
        for start, end, zone in path.dwells():
            for f in (0.1, 0.5, 0.9):
                t = start + f * (end - start)
                x, y = path.position(t) or (math.nan, math.nan)
                assert CFG.zone(zone).contains(x, y)
                assert sim.true_zone(s.token, t) == zone
                checked += 1
        assert sim.true_zone(s.token, path.start - 1.0) is None
        assert sim.true_zone(s.token, path.end + 1.0) is None
        assert shopper.zones[-1] == "checkout"
        assert (path.xs[0], path.ys[0]) == (path.xs[-1], path.ys[-1]) == CFG.store.entrance
    assert checked > 50
    assert sim.true_zone(bytes(16), sim.now) is None and sim.shopper_of(bytes(16)) is None


def test_aisle_positions_take_the_nearest_zone_centre() -> None:
    zones = ZoneMap.from_store(CFG.store)
    x, y = 10.0, 6.6  # the aisle between produce and coffee
    assert zones.containing(x, y) is None
    nearest = min(CFG.store.zones, key=lambda z: math.dist((x, y), z.centre))
    assert zones.zone_at(x, y) == nearest.id


def test_sightings_happen_where_the_truth_says(ten_minutes: IngestRun) -> None:
    sim = ten_minutes.sim
    for s in ten_minutes.ble[::97]:
        shopper = sim.shopper(s.token)
        assert shopper is not None and shopper.path.start <= s.ts <= shopper.path.end
        assert sim.true_zone(s.token, s.ts) in {z.id for z in CFG.store.zones}


def test_ground_truth_memory_is_bounded() -> None:
    sim = StoreSimulator(QUIET, seed=9)
    early = {
        fr.parse_token(i.service_data[TOKEN_KEY]).rpi
        for i in _run(sim, 60.0)
        if isinstance(i, Advertisement) and TOKEN_KEY in i.service_data
    }
    assert early and all(sim.shopper_of(r) is not None for r in early)
    for _ in sim.advance(sim.now + 75 * 60.0):
        pass
    assert all(sim.shopper_of(r) is None for r in early)  # left > 30 min ago: forgotten
    assert 0 < sim.known_rpis() <= 4 * (sim.live_shoppers() + sim.stats.opted_in)


# -- radio model -----------------------------------------------------------------------------------


def test_rssi_falls_with_distance_on_average(ten_minutes: IngestRun) -> None:
    receivers = {r.id: r.position for r in CFG.store.receivers}
    by_bin: dict[int, list[int]] = defaultdict(list)
    sim = ten_minutes.sim
    for s in ten_minutes.ble:
        shopper = sim.shopper(s.token)
        assert shopper is not None
        pos = shopper.path.position(s.ts)
        assert pos is not None
        by_bin[min(int(math.dist(pos, receivers[s.anchor]) // 4), 5)].append(s.rssi)
    means = [sum(v) / len(v) for _, v in sorted(by_bin.items())]
    assert len(means) >= 4
    assert all(a > b for a, b in itertools.pairwise(means))
    beacons = {b.id: b.position for b in CFG.store.beacons}
    near = [
        b.rssi
        for b in ten_minutes.beacons
        if math.dist(beacons[b.beacon], receivers[b.receiver]) < 5
    ]
    far = [
        b.rssi
        for b in ten_minutes.beacons
        if math.dist(beacons[b.beacon], receivers[b.receiver]) > 15
    ]
    assert sum(near) / len(near) > sum(far) / len(far) + 10


# -- encoders vs the parser ------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(
    tier=st.integers(0, 3),
    rpi=st.binary(min_size=16, max_size=16),
    key=st.binary(min_size=32, max_size=32),
)
def test_token_frames_decode_and_verify(tier: int, rpi: bytes, key: bytes) -> None:
    frame = air.token_frame(tier, rpi, key)
    parsed = fr.parse_token(frame)
    assert (parsed.version, parsed.tier, parsed.rpi) == (1, tier, rpi)
    assert parsed.tag == token_tag(key, parsed.header, rpi)
    day = dt.date(2026, 11, 23)
    assert DayKeys({day: key}).verify(parsed, day)
    assert not DayKeys({day: bytes(32) if key != bytes(32) else b"\x01" * 32}).verify(parsed, day)


@settings(max_examples=150, deadline=None)
@given(
    u=st.uuids(),
    major=st.integers(0, 0xFFFF),
    minor=st.integers(0, 0xFFFF),
    tx=st.integers(-128, 127),
)
def test_ibeacon_round_trip(u: uuid.UUID, major: int, minor: int, tx: int) -> None:
    parsed = fr.parse_ibeacon(air.ibeacon(str(u), major, minor, tx))
    assert parsed == fr.IBeacon(str(u), major, minor, tx)


@settings(max_examples=150, deadline=None)
@given(
    ns=st.binary(min_size=10, max_size=10),
    inst=st.binary(min_size=6, max_size=6),
    tx=st.integers(-128, 127),
)
def test_eddystone_uid_round_trip(ns: bytes, inst: bytes, tx: int) -> None:
    parsed = fr.parse_eddystone_uid(air.eddystone_uid(ns.hex(), inst.hex(), tx))
    assert parsed == fr.EddystoneUid(ns.hex(), inst.hex(), tx)


@settings(max_examples=150, deadline=None)
@given(
    bid=st.binary(min_size=20, max_size=20), ref=st.integers(-128, 127), mfg=st.integers(0, 0xFFFF)
)
def test_altbeacon_round_trip(bid: bytes, ref: int, mfg: int) -> None:
    parsed = fr.parse_altbeacon(mfg, air.altbeacon(bid.hex(), ref))
    assert parsed == fr.AltBeacon(bid.hex(), mfg, ref)


def test_configured_beacons_resolve_to_their_ids() -> None:
    ingest = Ingest(CFG, DayKeys())
    for beacon in CFG.store.beacons:
        a = air.beacon_air(beacon, "C0:00:00:00:00:01")
        adv = Advertisement(a.address, -60, 0.0, "rx-coffee", a.manufacturer_data, a.service_data)
        out = ingest.advertisement(adv)
        assert isinstance(out, BeaconSighting) and out.beacon == beacon.id


@settings(max_examples=300, deadline=None)
@given(seed=st.integers(0, 2**32))
def test_junk_and_other_phones_are_always_dropped(seed: int) -> None:
    rng = random.Random(seed)
    keys = DayKeys(
        {dt.date(2026, 11, 23): rng.randbytes(32), dt.date(2026, 11, 22): rng.randbytes(32)}
    )
    ingest = Ingest(CFG, keys)
    j = air.junk(rng, CFG.radio.token_service_uuid, CFG.radio.token_company_id)
    for md, sd, name in (
        (j.manufacturer_data, j.service_data, j.local_name),
        (air.continuity(rng), {}, None),
        ({}, air.fast_pair(rng), None),
    ):
        adv = Advertisement(
            air.random_address(rng), -70, 1_795_420_800.0, "rx-coffee", md, sd, name
        )
        assert ingest.advertisement(adv) is None


# -- speed -----------------------------------------------------------------------------------------


@pytest.mark.benchmark
def test_generation_rate_for_an_hour_of_the_demo_store() -> None:
    import time

    sim = StoreSimulator(CFG, seed=0)
    t0 = time.process_time()
    n = len(_run(sim, 3600.0))
    rate = n / (time.process_time() - t0)
    assert rate > 100_000, f"{rate:.0f} items/s"
