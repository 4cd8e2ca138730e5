"""Ingest gate: verified tokens pass, everything else is dropped and counted."""

from __future__ import annotations

import datetime as dt
import json
import struct
from pathlib import Path
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from edge.events import Advertisement, BeaconSighting, Sighting, SightingSource
from edge.privacy.holders import RawHolder
from edge.radio import DayKeys, Ingest, token_tag
from edge.radio.frames import uuid16_key
from tests.helpers import demo_config

KEY_TODAY = bytes(range(32))
KEY_YESTERDAY = bytes(range(1, 33))
RPI = bytes.fromhex("00112233445566778899aabbccddeeff")


def _frame(tier: int, key: bytes, rpi: bytes = RPI) -> bytes:
    header = (1 << 4) | tier
    return bytes((header,)) + rpi + token_tag(key, header, rpi)


def _ingest(tz: str = "Europe/Berlin") -> tuple[Ingest, float]:
    cfg = demo_config(timezone=tz)
    noon = dt.datetime(2026, 11, 23, 12, 0, tzinfo=ZoneInfo(tz))
    keys = DayKeys({noon.date(): KEY_TODAY, noon.date() - dt.timedelta(days=1): KEY_YESTERDAY})
    return Ingest(cfg, keys), noon.timestamp()


def _adv(ts: float, **kw: object) -> Advertisement:
    return Advertisement(address="aa:bb:cc:dd:ee:ff", rssi=-60, ts=ts, receiver="rx-coffee", **kw)  # type: ignore[arg-type]


def test_token_service_data_verifies_with_today_or_yesterday() -> None:
    ing, now = _ingest()
    for key in (KEY_TODAY, KEY_YESTERDAY):
        s = ing.advertisement(_adv(now, service_data={uuid16_key(0xFFF4): _frame(2, key)}))
        assert isinstance(s, Sighting)
        assert (s.token, s.tier, s.anchor, s.source) == (RPI, 2, "rx-coffee", SightingSource.BLE)
    bad = ing.advertisement(_adv(now, service_data={uuid16_key(0xFFF4): _frame(2, b"x" * 32)}))
    assert bad is None and ing.counters.dropped_unverified == 1


def test_token_manufacturer_data_and_malformed() -> None:
    ing, now = _ingest()
    assert isinstance(
        ing.advertisement(_adv(now, manufacturer_data={0xFFFF: _frame(1, KEY_TODAY)})), Sighting
    )
    assert ing.advertisement(_adv(now, service_data={uuid16_key(0xFFF4): b"\x12\x00"})) is None
    assert ing.counters.dropped_malformed == 1
    assert ing.advertisement(_adv(now, manufacturer_data={0x0006: b"\x01\x09"})) is None
    assert ing.counters.dropped_not_ours == 1


def test_reference_beacon_becomes_beacon_sighting() -> None:
    ing, now = _ingest()
    uuid = bytes.fromhex("5a4bcfce174e4bac a814092e77f6b7e5".replace(" ", ""))
    payload = b"\x02\x15" + uuid + (100).to_bytes(2, "big") + (3).to_bytes(2, "big") + b"\xc5"
    s = ing.advertisement(_adv(now, manufacturer_data={0x004C: payload}))
    assert isinstance(s, BeaconSighting) and s.beacon == "b-bakery"


def test_app_batch_valid_and_invalid() -> None:
    ing, now = _ingest()
    beacon = {
        "kind": "eddystone_uid",
        "namespace": "8b0ca750e7a74e14bd99",
        "instance": "000000000006",
    }
    good = {"frame": _frame(2, KEY_TODAY).hex(), "beacon": beacon, "rssi": -70, "ts": now}
    out: list[Sighting] = []
    assert ing.app_payload(json.dumps([good, good]).encode(), out.append) == 2
    assert out[0].anchor == "b-coffee" and out[0].source is SightingSource.APP
    assert ing.app_payload(b"{not json", out.append) == 0
    assert ing.app_payload(json.dumps({**good, "extra": 1}).encode(), out.append) == 0
    assert ing.counters.app_invalid == 2


def test_app_sightings_outside_the_retention_window_are_dropped() -> None:
    ing, now = _ingest()
    beacon = {
        "kind": "ibeacon",
        "uuid": "5a4bcfce-174e-4bac-a814-092e77f6b7e5",
        "major": 100,
        "minor": 1,
    }
    out: list[Sighting] = []

    def msg(ts: float) -> bytes:
        frame = _frame(1, KEY_TODAY).hex()
        return json.dumps({"frame": frame, "beacon": beacon, "rssi": -70, "ts": ts}).encode()

    assert ing.app_payload(msg(now - 1), out.append, now=now) == 1
    assert ing.app_payload(msg(now + 3600), out.append, now=now) == 0  # phone clock ahead
    assert ing.app_payload(msg(now - 31), out.append, now=now) == 0  # older than retention
    assert ing.counters.dropped_stale == 2


def test_local_date_follows_exact_midnight_in_half_hour_zone() -> None:
    ing, _ = _ingest("Asia/Kolkata")
    tz = ZoneInfo("Asia/Kolkata")
    before = dt.datetime(2026, 11, 23, 23, 59, 59, tzinfo=tz).timestamp()
    assert ing.local_date(before) == dt.date(2026, 11, 23)
    assert ing.local_date(before + 2) == dt.date(2026, 11, 24)
    assert ing.local_date(before) == dt.date(2026, 11, 23)


_FUZZ_INGEST, _FUZZ_NOW = _ingest()


@settings(max_examples=300, deadline=None)
@given(
    sd=st.dictionaries(
        st.sampled_from([uuid16_key(0xFFF4), uuid16_key(0xFEAA), uuid16_key(0x1234)]),
        st.binary(max_size=40),
        max_size=3,
    ),
    md=st.dictionaries(
        st.sampled_from([0xFFFF, 0x004C, 0x0118, 0x1234]), st.binary(max_size=40), max_size=3
    ),
)
def test_arbitrary_advertisement_bytes_never_raise(
    sd: dict[str, bytes], md: dict[int, bytes]
) -> None:
    result = _FUZZ_INGEST.advertisement(_adv(_FUZZ_NOW, service_data=sd, manufacturer_data=md))
    assert result is None or isinstance(result, Sighting | BeaconSighting)


@settings(max_examples=300, deadline=None)
@given(payload=st.one_of(st.binary(max_size=300), st.text(max_size=300).map(str.encode)))
def test_arbitrary_app_payload_never_raises(payload: bytes) -> None:
    out: list[Sighting] = []
    assert _FUZZ_INGEST.app_payload(payload, out.append) == len(out)


def _app_msg(**over: object) -> dict[str, object]:
    cfg = demo_config()
    ib = next(b for b in cfg.store.beacons if b.identity.kind == "ibeacon").identity
    msg: dict[str, object] = {
        "frame": _frame(2, KEY_TODAY).hex(),
        "beacon": {"kind": "ibeacon", "uuid": str(ib.uuid), "major": ib.major, "minor": ib.minor},  # type: ignore[union-attr]
        "rssi": -70,
        "ts": 0.0,
    }
    msg.update(over)
    return msg


def test_app_sightings_are_strictly_typed() -> None:
    ing, now = _ingest()
    sink: list[Sighting] = []
    assert ing.app_payload(json.dumps(_app_msg(ts=now)), sink.append, now=now) == 1
    assert ing.app_payload(json.dumps(_app_msg(ts=int(now))), sink.append, now=now) == 1
    for bad in (
        {"rssi": "-70"},
        {"rssi": True},
        {"rssi": -70.0},
        {"ts": str(now)},
        {"ts": True},
        {"frame": 12345},
    ):
        before = ing.counters.app_invalid
        assert ing.app_payload(json.dumps(_app_msg(ts=now) | bad), sink.append, now=now) == 0
        assert ing.counters.app_invalid == before + 1, bad
    beacon = dict(_app_msg()["beacon"])  # type: ignore[call-overload]
    beacon["major"] = str(beacon["major"])
    assert ing.app_payload(json.dumps(_app_msg(ts=now, beacon=beacon)), sink.append, now=now) == 0
    assert len(sink) == 2


def test_app_sighting_with_a_duplicate_key_is_rejected() -> None:
    ing, now = _ingest()
    sink: list[Sighting] = []
    body = json.dumps(_app_msg(ts=now))
    dup = body[:-1] + ', "rssi": -20}'  # the same key twice: which one was meant?
    assert json.loads(dup)["rssi"] == -20  # plain JSON parsers would silently take the last
    assert ing.app_payload(dup, sink.append, now=now) == 0
    assert ing.counters.app_invalid == 1 and sink == []


# -- Eddystone TLM / EID / URL: reference beacon health -------------------------------------------

_NS = "8b0ca750e7a74e14bd99"


def _uid(instance: str) -> bytes:  # Eddystone-UID as the spec lays it out, RFU included
    return b"\x00\xec" + bytes.fromhex(_NS + instance) + b"\x00\x00"


def _tlm(battery_mv: int, temp_raw: int, adv: int, deciseconds: int) -> bytes:
    return b"\x20\x00" + struct.pack(">HHII", battery_mv, temp_raw, adv, deciseconds)


class _Mono:
    def __init__(self) -> None:
        self.t = 500.0

    def __call__(self) -> float:
        return self.t


def _tlm_ingest() -> tuple[Ingest, float, _Mono]:
    cfg = demo_config()
    noon = dt.datetime(2026, 11, 23, 12, 0, tzinfo=ZoneInfo(cfg.timezone))
    mono = _Mono()
    return Ingest(cfg, DayKeys(), monotonic=mono), noon.timestamp(), mono


def _eddy(ts: float, payload: bytes, address: str) -> Advertisement:
    return Advertisement(address, -70, ts, "rx-coffee", {}, {uuid16_key(0xFEAA): payload})


def test_tlm_of_a_reference_beacon_goes_to_its_health() -> None:
    ing, now, mono = _tlm_ingest()
    coffee = "C0:00:00:00:00:06"
    # TLM first (it names no beacon): it waits for the same address's identifying frame.
    assert ing.advertisement(_eddy(now, _tlm(2950, 0x1780, 4242, 36_000), coffee)) is None
    assert ing.counters.eddystone_tlm == 1 and ing.counters.beacon_telemetry == {}
    assert ing.pending_tlm.held(mono.t).records == 1
    mono.t += 1.0
    s = ing.advertisement(_eddy(now + 1, _uid("000000000006"), coffee))
    assert isinstance(s, BeaconSighting) and s.beacon == "b-coffee"
    assert ing.counters.beacon_telemetry == {
        "b-coffee": {
            "battery_mv": 2950,
            "temperature_c": 23.5,
            "adv_count": 4242,
            "uptime_s": 3600.0,
            "ts": now,
        }
    }
    assert ing.pending_tlm.held(mono.t).records == 0
    # "not supported" values stay None; the latest TLM replaces the figures
    ing.advertisement(_eddy(now + 2, _tlm(0, 0x8000, 4300, 36_010), coffee))
    ing.advertisement(_eddy(now + 2, _uid("000000000006"), coffee))
    tele = ing.counters.as_dict()["beacon_telemetry"]["b-coffee"]
    assert (tele["battery_mv"], tele["temperature_c"], tele["adv_count"]) == (None, None, 4300)
    # as_dict hands out copies: status cannot change the live figures
    tele["battery_mv"] = 1
    assert ing.counters.beacon_telemetry["b-coffee"]["battery_mv"] is None


def test_tlm_needs_the_same_address_and_a_configured_beacon() -> None:
    ing, now, mono = _tlm_ingest()
    ing.advertisement(_eddy(now, _tlm(3000, 0x1400, 1, 1), "C0:00:00:00:00:AA"))
    # another address's UID does not claim it; an unknown beacon at that address neither
    ing.advertisement(_eddy(now, _uid("000000000006"), "C0:00:00:00:00:06"))
    ing.advertisement(_eddy(now, _uid("0000000000ff"), "C0:00:00:00:00:AA"))
    assert ing.counters.beacon_telemetry == {}
    assert ing.counters.dropped_unknown_beacon == 1
    # claimed too late (past the raw retention) it is counted, not filed
    mono.t += 31.0
    ing.advertisement(_eddy(now + 31, _uid("000000000005"), "C0:00:00:00:00:AA"))
    assert ing.counters.beacon_telemetry == {} and ing.counters.tlm_unattributed == 1


def test_pending_tlm_is_a_bounded_raw_holder_purged_after_the_retention() -> None:
    ing, now, mono = _tlm_ingest()
    holder = ing.pending_tlm
    assert isinstance(holder, RawHolder) and holder.holder_name == "radio.pending_tlm"
    for i in range(holder.max_entries + 10):
        ing.advertisement(
            _eddy(now, _tlm(3000, 0x1400, i, i), f"C0:00:00:00:{i >> 8:02X}:{i & 255:02X}")
        )
    assert holder.held(mono.t).records == holder.max_entries
    assert ing.counters.tlm_unattributed == 10  # the oldest were pushed out, and counted
    assert holder.forget(RPI) == 0
    mono.t += ing.pending_tlm.retention_s - 1
    holder.purge(mono.t)
    assert holder.held(mono.t).records == holder.max_entries
    assert holder.held(mono.t).oldest_age_s == ing.pending_tlm.retention_s - 1
    mono.t += 2
    holder.purge(mono.t)
    assert holder.held(mono.t).records == 0
    assert ing.counters.tlm_unattributed == holder.max_entries + 10


def test_eid_and_url_are_counted_and_malformed_eddystone_dropped() -> None:
    ing, now, _ = _tlm_ingest()
    addr = "C0:00:00:00:00:01"
    assert ing.advertisement(_eddy(now, b"\x30\xf0" + bytes(8), addr)) is None
    assert ing.advertisement(_eddy(now, b"\x30\xf0" + bytes(8), addr)) is None
    assert ing.advertisement(_eddy(now, b"\x10\xeb\x03shop\x07", addr)) is None
    c = ing.counters
    assert (c.eddystone_eid, c.eddystone_url, c.dropped_malformed) == (2, 1, 0)
    for bad in (b"\x30\xf0" + bytes(7), b"\x20\x01" + bytes(16), b"\x40", b"\x10\xeb\x09"):
        assert ing.advertisement(_eddy(now, bad, addr)) is None
    assert c.dropped_malformed == 4 and c.eddystone_eid == 2


def test_several_company_ids_in_one_advert_resolve_the_beacon() -> None:
    ing, now = _ingest()
    bid = bytes.fromhex("2f234454cf6d4a0fadf2f4911ba9ffa600080001")
    md = {
        0x004C: b"\x10\x05\x01\x02\x03\x04\x05",  # Apple Continuity
        0x0006: b"\x01\x09\x20\x02",  # Microsoft
        0x0118: b"\xbe\xac" + bid + b"\xc4\x00",
    }
    s = ing.advertisement(_adv(now, manufacturer_data=md))
    assert isinstance(s, BeaconSighting) and s.beacon == "b-beverages"


def test_the_daemon_registers_the_pending_tlm_holder_and_shows_telemetry(tmp_path: Path) -> None:
    from edge.daemon.app import Application
    from edge.daemon.clock import SimClock

    cfg = demo_config(state_dir=tmp_path / "state")
    clock = SimClock(1_795_000_000.0)
    app = Application(cfg, clock=clock)
    try:
        assert "radio.pending_tlm" in app.registry.names()
        addr = "C0:00:00:00:00:07"
        ts = clock.now()
        app.on_advertisement(_eddy(ts, _tlm(3100, 0x1600, 10, 100), addr))
        assert app.registry.holdings(clock.monotonic())["radio.pending_tlm"].records == 1
        app.on_advertisement(_eddy(ts, _uid("000000000007"), addr))
        tele = app._local_counters()["ingest"]["beacon_telemetry"]
        assert tele["b-snacks"]["battery_mv"] == 3100 and tele["b-snacks"]["temperature_c"] == 22.0
    finally:
        app.ledger.close()
