"""The BLE scanner against real bleak, a real dbus-daemon and bluezoo as BlueZ.

Peripherals are bluezoo adapters with a registered ``LEAdvertisement1``; bluezoo reports them
as ``Device1`` objects on the scanning adapters, and bleak's callbacks feed the real ingest.
bluezoo cannot do everything BlueZ does, and the tests say where they stand in for it:

- no ``AdvertisementMonitorManager1``: bleak's passive scan raises, which is exactly the
  fallback under test;
- RSSI is always 0 and an unchanged advert is announced once: the test emits
  ``Device1.RSSI`` ``PropertiesChanged`` on the private bus, as BlueZ does per advert with
  duplicate data on;
- devices never expire: the fixture removes them between tests.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Callable
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from bleak import BleakScanner
from bleak.args.bluez import BlueZScannerArgs
from bleak.exc import BleakError

from edge.config import AppConfig, parse_config
from edge.config.models import Radio, RadioAdapter
from edge.daemon.app import Application, Features
from edge.daemon.supervisor import RunState, Supervisor
from edge.errors import ConfigError
from edge.events import Advertisement, BeaconSighting, Sighting, SightingSource
from edge.radio import DayKeys, Ingest, token_tag
from edge.radio.frames import uuid16_key
from edge.radio.scanner import AdapterScanner, ScanTimings, or_patterns
from tests.radio.bluez_env import BluezControl, adapter_address

FAST = ScanTimings(
    check_s=0.3,
    retry_base_s=0.2,
    retry_cap_s=1.0,
    power_off_s=0.2,
    adapter_back_s=5.0,
    start_timeout_s=5.0,
)
WAIT_S = 20.0
KEY = bytes(range(32))
RPI = bytes.fromhex("00112233445566778899aabbccddeeff")
# b-frozen in the demo store: iBeacon 5a4bcfce-174e-4bac-a814-092e77f6b7e5 / 100 / 11
IBEACON_MD = {
    0x004C: bytes.fromhex("02155a4bcfce174e4bac a814092e77f6b7e5".replace(" ", ""))
    + (100).to_bytes(2, "big")
    + (11).to_bytes(2, "big")
    + b"\xc5"
}
PERIPHERAL_ADDRESSES = (adapter_address(1), adapter_address(2))
STORE_YAML = """\
site: test-site
device: test-device
timezone: Europe/Berlin
store:
  name: Scanner test store
  size: [20, 10]
  zones:
    - {id: coffee, name: Coffee, rect: [0, 0, 10, 10], beacons: [b-frozen]}
    - {id: snacks, name: Snacks, rect: [10, 0, 10, 10]}
  beacons:
    - id: b-frozen
      identity: {kind: ibeacon, uuid: 5a4bcfce-174e-4bac-a814-092e77f6b7e5, major: 100, minor: 11}
      position: [5, 5]
  receivers:
    - {id: rx-coffee, zone: coffee, position: [5, 9]}
    - {id: rx-snacks, zone: snacks, position: [15, 9]}
display:
  enabled: false
"""
RECEIVERS = ("rx-coffee", "rx-snacks")
RADIO_YAML = "radio:\n  enabled: true\n  adapter: hci0\n  receiver: rx-coffee\n"


def _token_sd(tier: int = 2) -> dict[str, bytes]:
    header = (1 << 4) | tier
    return {uuid16_key(0xFFF4): bytes((header,)) + RPI + token_tag(KEY, header, RPI)}


def _cfg(*adapters: tuple[str, str], silence_s: float = 60.0, beacons: bool = True) -> AppConfig:
    cfg = parse_config(STORE_YAML + RADIO_YAML, "scanner-test.yaml")
    radio = Radio(
        enabled=True,
        adapters=[RadioAdapter(adapter=a, receiver=r) for a, r in adapters],
        silence_s=silence_s,
    )
    zones = [z.model_copy(update={"beacons": []}) for z in cfg.store.zones]
    store = cfg.store if beacons else cfg.store.model_copy(update={"beacons": [], "zones": zones})
    return cfg.model_copy(update={"radio": radio, "store": store})


class Collector:
    """The real ingest as the scanner's sink; keeps what it emitted."""

    def __init__(self, cfg: AppConfig) -> None:
        today = dt.datetime.now(ZoneInfo(cfg.timezone)).date()
        keys = DayKeys({today: KEY, today - dt.timedelta(days=1): KEY})
        self.ingest = Ingest(cfg, keys)
        self.out: list[Sighting | BeaconSighting] = []

    def __call__(self, adv: Advertisement) -> None:
        item = self.ingest.advertisement(adv)
        if item is not None:
            self.out.append(item)

    def beacons(self, receiver: str, rssi: int | None = None) -> list[BeaconSighting]:
        return [
            s
            for s in self.out
            if isinstance(s, BeaconSighting)
            and s.receiver == receiver
            and (rssi is None or s.rssi == rssi)
        ]

    def tokens(self, anchor: str) -> list[Sighting]:
        return [s for s in self.out if isinstance(s, Sighting) and s.anchor == anchor]


async def _until(cond: Callable[[], object], what: str, why: Callable[[], object]) -> None:
    deadline = time.monotonic() + WAIT_S
    while not cond():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen within {WAIT_S} s; {why()}")
        await asyncio.sleep(0.05)


def _warnings(caplog: pytest.LogCaptureFixture, text: str) -> int:
    return sum(
        1
        for r in caplog.records
        if r.name == "edge.radio.scanner" and r.levelno >= logging.INFO and text in r.getMessage()
    )


def _no_raw_in_logs(caplog: pytest.LogCaptureFixture) -> None:
    for r in caplog.records:
        msg = r.getMessage()
        assert not any(a in msg for a in PERIPHERAL_ADDRESSES), msg
        assert RPI.hex() not in msg


async def test_adverts_with_manufacturer_and_service_data_reach_ingest(
    bluez: BluezControl, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    cfg = _cfg(("hci0", "rx-coffee"), ("hci3", "rx-snacks"))
    sink = Collector(cfg)
    await bluez.advertise("hci1", manufacturer_data=IBEACON_MD)  # a reference beacon
    await bluez.advertise("hci2", service_data=_token_sd())  # an opted-in phone
    sup = Supervisor()
    scanners = [AdapterScanner(cfg, ad, sink, timings=FAST) for ad in cfg.radio.scan_adapters()]
    for s in scanners:
        sup.add(s)
    try:
        for rx in ("rx-coffee", "rx-snacks"):
            await _until(
                lambda rx=rx: sink.beacons(rx) and sink.tokens(rx),  # type: ignore[misc]
                f"iBeacon and token sightings on {rx}",
                lambda: (sink.ingest.counters.as_dict(), [s.health().detail for s in scanners]),
            )
        beacon = sink.beacons("rx-coffee")[0]
        assert beacon.beacon == "b-frozen"
        token = sink.tokens("rx-snacks")[0]
        assert (token.token, token.tier, token.source) == (RPI, 2, SightingSource.BLE)
        # RSSI per advert (BlueZ with duplicate data): the value reaches the sighting, and only
        # on the adapter that heard it.
        for rssi in (-63, -64, -63):
            await bluez.emit_rssi("hci0", 1, rssi)
        await _until(
            lambda: len(sink.beacons("rx-coffee", -63)) == 2 and sink.beacons("rx-coffee", -64),
            "RSSI updates",
            lambda: [(s.receiver, s.rssi) for s in sink.beacons("rx-coffee")],
        )
        assert not sink.beacons("rx-snacks", -63)
        # bleak's per-device map is a raw holder: counted, forgettable by token, purged.
        mono = time.monotonic()
        rx0, rx3 = scanners
        assert rx0.held(mono).records == 2
        assert rx0.forget(RPI) == 1 and rx0.held(mono).records == 1
        rx3.purge(mono)
        assert rx3.held(mono).records == 0
        for s in scanners:
            detail = s.health().detail
            assert s.health().ok and detail["state"] == "scanning", detail
            assert detail["ladder"] == [] and detail["recoveries"] == 0
    finally:
        await sup.stop()
    _no_raw_in_logs(caplog)


async def test_passive_scan_falls_back_to_active(
    bluez: BluezControl, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    cfg = _cfg(("hci0", "rx-coffee"))
    # The premise, checked on the real stack: bluezoo has no advertisement monitor, so
    # bleak's passive scan raises BleakError.
    passive = BleakScanner(
        None,
        scanning_mode="passive",
        bluez=BlueZScannerArgs(adapter="hci0", or_patterns=or_patterns(cfg)),
    )
    with pytest.raises(BleakError):
        await passive.start()
    sink = Collector(cfg)
    await bluez.advertise("hci1", manufacturer_data=IBEACON_MD)
    scanner = AdapterScanner(cfg, cfg.radio.scan_adapters()[0], sink, timings=FAST)
    sup = Supervisor()
    sup.add(scanner)
    try:
        await _until(
            lambda: sink.beacons("rx-coffee"), "an advert", lambda: scanner.health().detail
        )
        detail = scanner.health().detail
        assert (detail["mode"], detail["passive_supported"]) == ("active", False)
        assert (await bluez.adapters())["hci0"]["Discovering"] is True
        assert _warnings(caplog, "scanning actively") == 1
        assert detail["ladder"] == []  # a fallback is not a recovery step
    finally:
        await sup.stop()
    assert (await bluez.adapters())["hci0"]["Discovering"] is False


async def test_adapter_removed_and_added_back_recovers_without_restart(
    bluez: BluezControl, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    cfg = _cfg(("hci0", "rx-coffee"))
    sink = Collector(cfg)
    await bluez.advertise("hci1", manufacturer_data=IBEACON_MD)
    scanner = AdapterScanner(cfg, cfg.radio.scan_adapters()[0], sink, timings=FAST)
    sup = Supervisor()
    sup.add(scanner)

    def why() -> object:
        return scanner.health().detail

    try:
        await _until(lambda: sink.beacons("rx-coffee"), "first advert", why)
        await bluez.remove_adapter(0)
        await _until(lambda: scanner.state == "waiting_adapter", "waiting for the adapter", why)
        detail = scanner.health().detail
        assert not scanner.health().ok
        assert detail["ladder"][:2] == ["adapter_lost", "waiting_adapter"], detail
        assert detail["adapter_presence"] == "missing"
        before = len(sink.beacons("rx-coffee"))
        await _until(lambda: scanner.adapter_waits >= 3, "retries while missing", why)
        await bluez.add_adapter(0)
        await _until(lambda: len(sink.beacons("rx-coffee")) > before, "advert after re-add", why)
        detail = scanner.health().detail
        assert scanner.health().ok and detail["state"] == "scanning"
        assert detail["ladder"] == ["adapter_lost", "waiting_adapter", "adapter_back"], detail
        assert (detail["recoveries"], detail["recovering"]) == (1, False)
        (status,) = sup.statuses()
        assert (status.state, status.restarts, status.last_error) == (RunState.RUNNING, 0, None)
        # each step logged once, however many retries it took
        assert detail["adapter_waits"] >= 3
        assert _warnings(caplog, "adapter went away") == 1
        assert _warnings(caplog, "adapter not available") == 1
        assert _warnings(caplog, "adapter is back") == 1
        assert _warnings(caplog, "adverts arriving again") == 1
    finally:
        await sup.stop()
    _no_raw_in_logs(caplog)


async def test_silence_restarts_the_scan_then_power_cycles_the_adapter(
    bluez: BluezControl, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    cfg = _cfg(("hci0", "rx-coffee"), silence_s=1.5)
    sink = Collector(cfg)
    await bluez.advertise("hci1", manufacturer_data=IBEACON_MD)
    scanner = AdapterScanner(cfg, cfg.radio.scan_adapters()[0], sink, timings=FAST)
    sup = Supervisor()
    sup.add(scanner)

    def why() -> object:
        return scanner.health().detail

    try:
        await _until(lambda: sink.beacons("rx-coffee"), "first advert", why)
        # The beacon keeps advertising (an RSSI update per advert): no watchdog step.
        for _ in range(12):
            await bluez.emit_rssi("hci0", 1, -70)
            await asyncio.sleep(0.25)
        assert scanner.scan_restarts == 0 and scanner.health().detail["ladder"] == []
        # Then it falls silent: restart first, then a power cycle seen on the bus.
        await _until(lambda: scanner.scan_restarts == 1, "a scan restart", why)
        assert bluez.powered.get("hci0", []) == []
        assert scanner.health().detail["ladder"] == ["restart_scan"]
        await _until(lambda: scanner.power_cycles == 1, "a power cycle", why)
        await _until(lambda: bluez.powered.get("hci0") == [False, True], "Powered off/on", why)
        await _until(lambda: scanner.state == "scanning", "scanning after the power cycle", why)
        detail = scanner.health().detail
        assert detail["ladder"] == ["restart_scan", "power_cycle", "adapter_back"], detail
        # Still silent: the ladder goes round again, counted but not logged again.
        await _until(lambda: scanner.scan_restarts == 2, "a second restart", why)
        assert _warnings(caplog, "restarting the scan") == 1
        assert _warnings(caplog, "power-cycling the adapter") == 1
        # The beacon is heard again: the episode closes.
        # It advertises on (an RSSI update every 0.25 s): one update alone can fall into a
        # moment when the ladder has the scan stopped, as on a loaded machine.
        heard = len(sink.beacons("rx-coffee"))
        for i in range(80):
            await bluez.emit_rssi("hci0", 1, -71 - i % 5)
            await asyncio.sleep(0.25)
            if len(sink.beacons("rx-coffee")) > heard:
                break
        await _until(lambda: len(sink.beacons("rx-coffee")) > heard, "advert after recovery", why)
        detail = scanner.health().detail
        assert (detail["recovering"], detail["recoveries"]) == (False, 1)
        assert _warnings(caplog, "adverts arriving again") == 1
        (status,) = sup.statuses()
        assert status.restarts == 0
    finally:
        await sup.stop()


async def test_startup_with_a_missing_adapter_waits_and_picks_it_up(
    bluez: BluezControl, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    cfg = _cfg(("hci5", "rx-coffee"))  # not plugged in yet
    sink = Collector(cfg)
    await bluez.advertise("hci1", manufacturer_data=IBEACON_MD)
    scanner = AdapterScanner(cfg, cfg.radio.scan_adapters()[0], sink, timings=FAST)
    sup = Supervisor()
    sup.add(scanner)  # returns at once: nothing here waits for the adapter

    def why() -> object:
        return scanner.health().detail

    try:
        await _until(lambda: scanner.adapter_waits >= 3, "retries with backoff", why)
        (status,) = sup.statuses()
        assert status.state is RunState.RUNNING  # progress beats while it waits
        assert scanner.health().detail["adapter_presence"] == "missing"
        assert _warnings(caplog, "adapter not available") == 1
        await bluez.add_adapter(5)
        await _until(lambda: sink.beacons("rx-coffee"), "an advert on the new adapter", why)
        assert scanner.health().ok
    finally:
        await sup.stop()
        await bluez.remove_adapter(5)


async def test_no_system_bus_is_waited_for(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", f"unix:path={tmp_path}/no-such-socket")
    cfg = _cfg(("hci0", "rx-coffee"))
    scanner = AdapterScanner(cfg, cfg.radio.scan_adapters()[0], lambda adv: None, timings=FAST)
    sup = Supervisor()
    sup.add(scanner)
    try:
        await _until(lambda: scanner.adapter_waits >= 2, "retries", lambda: scanner.health().detail)
        detail = scanner.health().detail
        assert (detail["state"], detail["adapter_presence"]) == ("waiting_adapter", "no_bus")
        (status,) = sup.statuses()
        assert (status.state, status.restarts) == (RunState.RUNNING, 0)
    finally:
        await sup.stop()


async def test_daemon_runs_one_scanner_per_adapter(
    bluez: BluezControl, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    cfg = _cfg(*zip(("hci0", "hci3"), RECEIVERS, strict=True)).model_copy(
        update={"state_dir": tmp_path / "state"}
    )
    await bluez.advertise("hci1", manufacturer_data=IBEACON_MD)
    off = Features(display=False, mqtt=False, model=False, autotick=False, control=False)
    app = Application(cfg, features=off)
    await app.start()
    try:
        assert {"radio-hci0", "radio-hci3"} <= set(app.supervisor.names())
        assert {"radio.scanner.hci0", "radio.scanner.hci3"} <= set(app.registry.names())
        await _until(
            lambda: {s.receiver for s in app.beacon_stats.samples(60)} == set(RECEIVERS),
            "beacon sightings from both receivers",
            lambda: app.ingest.counters.as_dict(),
        )
        assert "b-frozen" in app.beacons_seen
        held = app.registry.holdings(time.monotonic())
        assert held["radio.scanner.hci0"].records == 1
        status = {s.name: s.as_dict() for s in app.supervisor.statuses()}
        assert status["radio-hci3"]["detail"]["receiver"] == "rx-snacks"
    finally:
        await app.stop()
    assert app.raw_total() == 0
    _no_raw_in_logs(caplog)


@pytest.mark.parametrize(
    ("radio_yaml", "field", "message"),
    [
        (
            "radio:\n  enabled: true\n  adapters:\n    - {adapter: hci0, receiver: rx-nowhere}\n",
            "radio.adapters.0.receiver",
            "unknown receiver 'rx-nowhere'",
        ),
        (
            "radio:\n  adapters:\n    - {adapter: hci0, receiver: rx-coffee}\n"
            "    - {adapter: hci0, receiver: rx-snacks}\n",
            "radio.adapters.1.adapter",
            "adapter 'hci0' twice",
        ),
        (
            "radio:\n  adapters:\n    - {adapter: hci0, receiver: rx-coffee}\n"
            "    - {adapter: hci1, receiver: rx-coffee}\n",
            "radio.adapters.1.receiver",
            "receiver 'rx-coffee' twice",
        ),
        (
            "radio:\n  receiver: rx-coffee\n  adapters:\n"
            "    - {adapter: hci1, receiver: rx-snacks}\n",
            "radio.receiver",
            "not both",
        ),
        ("radio:\n  enabled: true\n", "radio.enabled", "needs radio.receiver"),
        (
            "radio:\n  adapters:\n    - {adapter: wlan0, receiver: rx-coffee}\n",
            "radio.adapters.0.adapter",
            "^hci[0-9]{1,3}$",
        ),
        ("radio:\n  silence_s: 0\n", "radio.silence_s", "greater than or equal to 1"),
    ],
)
def test_radio_adapter_config_errors_name_the_field(
    radio_yaml: str, field: str, message: str
) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(STORE_YAML + radio_yaml, "store.yaml")
    found = [(p.field, p.message) for p in err.value.problems]
    assert any(f == field and message in m for f, m in found), found


def test_single_adapter_shorthand_is_one_receiver() -> None:
    cfg = parse_config(STORE_YAML + RADIO_YAML, "store.yaml")
    assert cfg.radio.scan_adapters() == [RadioAdapter(adapter="hci0", receiver="rx-coffee")]
    two = Radio(
        adapters=[
            RadioAdapter(adapter="hci0", receiver="rx-coffee"),
            RadioAdapter(adapter="hci1", receiver="rx-snacks"),
        ]
    )
    assert [a.receiver for a in two.scan_adapters()] == ["rx-coffee", "rx-snacks"]
    assert Radio().scan_adapters() == []


def test_apply_config_takes_silence_and_beacons_live_and_asks_restart_for_adapters() -> None:
    cfg = _cfg(("hci0", "rx-coffee"))
    scanner = AdapterScanner(cfg, cfg.radio.scan_adapters()[0], lambda adv: None, timings=FAST)
    quieter = _cfg(("hci0", "rx-coffee"), silence_s=5.0, beacons=False)
    assert scanner.apply_config(quieter) is False
    assert (scanner._silence_s, scanner._beacons_configured) == (5.0, False)
    moved = _cfg(("hci1", "rx-coffee"))
    assert scanner.apply_config(moved) is True
