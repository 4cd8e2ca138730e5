"""The BLE scanner: one supervised bleak scanner per adapter, feeding ingest on the loop.

Each configured adapter (``radio.adapters``, or ``radio.adapter`` as ``radio.receiver``) gets
one ``AdapterScanner`` component; every advertisement it hears becomes an
``edge.events.Advertisement`` stamped with that adapter's receiver id and goes straight to the
sink (``Application.on_advertisement``) on the event loop thread, inside bleak's callback.

Scanning is passive where BlueZ supports it (an advertisement monitor with or-patterns for
token frames and beacon formats) and active with duplicate data on otherwise: bleak raises
``BleakError`` when BlueZ has no ``AdvertisementMonitorManager1`` (no ``--experimental``),
and the scanner falls back to active for the rest of its run.

Recovery follows habluetooth's scanner (read, not copied): a watchdog checks the adapter every
``check_s``. When the adapter is gone (removed, powered off, BlueZ or the bus down) the scan
is dropped and the scanner waits for it with capped backoff. When the adapter is there but no
advert came for ``radio.silence_s`` while reference beacons are configured, the ladder is:
restart the scan; if still silent, power-cycle the adapter through ``Adapter1.Powered``; wait
for it to come back powered; scan again. Each step is logged once per episode (then counted)
and shows in ``health()``; the first advert afterwards closes the episode. Startup never
blocks: ``run`` beats progress while it retries, and the supervisor restarts it only for
bugs.

Raw data: the scanner itself keeps no address, RSSI or payload. bleak's scanner keeps the
last advert of every device it saw (``seen_devices``); that map is a registered raw holder
here, emptied on every purge tick.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from bleak import BleakScanner
from bleak.args.bluez import BlueZScannerArgs, OrPattern
from bleak.assigned_numbers import AdvertisementDataType
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from bleak.exc import BleakDBusError, BleakError

from edge.config.models import AppConfig, RadioAdapter
from edge.events import Advertisement
from edge.lifecycle import ComponentHealth, Progress
from edge.privacy.holders import EMPTY, Holding
from edge.radio.bluez_adapter import AdapterControl, AdapterControlError, Presence
from edge.radio.frames import APPLE_COMPANY_ID, EDDYSTONE_UUID16

_LOGGER = logging.getLogger(__name__)

Sink = Callable[[Advertisement], None]
ScanMode = Literal["passive", "active"]
LADDER_KEEP = 12  # steps of the current (or last) recovery episode shown in health
BEAT_S = 1.0

# D-Bus errors that say "this BlueZ cannot do passive scanning", not "the adapter is gone".
_PASSIVE_UNSUPPORTED = {
    "org.freedesktop.DBus.Error.UnknownMethod",
    "org.freedesktop.DBus.Error.UnknownInterface",
    "org.bluez.Error.NotSupported",
    "org.bluez.Error.Failed",
}


@dataclass(frozen=True, slots=True)
class ScanTimings:
    """How often the watchdog looks and how the retries back off (tests shorten these)."""

    check_s: float = 5.0  # watchdog period: adapter probe and silence check
    retry_base_s: float = 1.0  # first wait for a missing adapter or a failed start
    retry_cap_s: float = 30.0  # longest wait between tries
    power_off_s: float = 1.0  # time the adapter stays off in a power cycle
    adapter_back_s: float = 30.0  # how long to wait for it to come back powered
    start_timeout_s: float = 15.0  # one scanner start (habluetooth uses 15 s too)


class ScanState(enum.StrEnum):
    """Where one adapter's scanner is."""

    STARTING = "starting"
    SCANNING = "scanning"
    WAITING_ADAPTER = "waiting_adapter"
    RESTARTING_SCAN = "restarting_scan"
    POWER_CYCLING = "power_cycling"
    STOPPED = "stopped"


class Step(enum.StrEnum):
    """Recovery steps (each logged once per episode, all counted)."""

    START_FAILED = "start_failed"
    ADAPTER_LOST = "adapter_lost"
    WAITING_ADAPTER = "waiting_adapter"
    POWER_ON = "power_on"
    ADAPTER_BACK = "adapter_back"
    RESTART_SCAN = "restart_scan"
    POWER_CYCLE = "power_cycle"
    PASSIVE_FALLBACK = "passive_fallback"


def or_patterns(cfg: AppConfig) -> list[OrPattern]:
    """Advertisement-monitor patterns: token frames and every reference-beacon format."""
    radio = cfg.radio
    msd = AdvertisementDataType.MANUFACTURER_SPECIFIC_DATA
    sd16 = AdvertisementDataType.SERVICE_DATA_UUID16
    out: list[OrPattern] = []
    if radio.accept in ("both", "service_data"):
        out.append(OrPattern(0, sd16, radio.token_service_uuid.to_bytes(2, "little")))
    if radio.accept in ("both", "manufacturer_data"):
        out.append(OrPattern(0, msd, radio.token_company_id.to_bytes(2, "little")))
    out.append(OrPattern(0, msd, APPLE_COMPANY_ID.to_bytes(2, "little") + b"\x02\x15"))
    out.append(OrPattern(0, sd16, EDDYSTONE_UUID16.to_bytes(2, "little")))
    out.append(OrPattern(2, msd, b"\xbe\xac"))  # AltBeacon code after any company id
    return out


def quiet_bleak() -> None:
    """Keep bleak's logger at INFO or above: its DEBUG lines carry addresses and payloads."""
    log = logging.getLogger("bleak")
    if log.getEffectiveLevel() < logging.INFO:
        log.setLevel(logging.INFO)


def _passive_unsupported(exc: BaseException) -> bool:
    if isinstance(exc, BleakDBusError):
        return exc.dbus_error in _PASSIVE_UNSUPPORTED
    # bleak raises a plain BleakError when RegisterMonitor is an unknown method.
    return isinstance(exc, BleakError) and "passive" in str(exc)


class AdapterScanner:
    """One adapter's supervised scanner (a ``Component`` and a ``RawHolder``)."""

    essential = False

    def __init__(
        self,
        cfg: AppConfig,
        adapter: RadioAdapter,
        sink: Sink,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        timings: ScanTimings = ScanTimings(),
    ) -> None:
        self.adapter = adapter.adapter
        self.receiver = adapter.receiver
        self.name = f"radio-{adapter.adapter}"
        self.holder_name = f"radio.scanner.{adapter.adapter}"
        self._sink = sink
        self._clock = clock
        self._mono = monotonic
        self._t = timings
        self._radio = cfg.radio
        self._silence_s = cfg.radio.silence_s
        self._beacons_configured = bool(cfg.store.beacons)
        self._patterns = or_patterns(cfg)
        self._ctl = AdapterControl(adapter.adapter)
        quiet_bleak()
        self._scanner: BleakScanner | None = None
        self._seen_since = 0.0
        self.state = ScanState.STOPPED
        self.mode: ScanMode | None = None
        self.passive_supported: bool | None = None
        self.presence: Presence | None = None
        # counters (health)
        self.adverts = 0
        self.sink_errors = 0
        self.start_failures = 0
        self.scan_restarts = 0
        self.power_cycles = 0
        self.adapter_waits = 0
        self.recoveries = 0
        self.last_error: str | None = None
        self._last_advert: float | None = None
        self._silence_ref = 0.0  # silence is counted from max(last advert, this)
        self._episode: list[str] = []  # steps of the current recovery episode
        self._episode_open = False
        self._logged: set[str] = set()
        self._beat: Progress = lambda: None

    # -- the bleak callback (event loop thread) ---------------------------------------------

    def _on_advert(self, device: BLEDevice, data: AdvertisementData) -> None:
        self.adverts += 1
        self._last_advert = self._mono()
        if self._episode_open:
            self._close_episode()
        adv = Advertisement(
            device.address,
            data.rssi,
            self._clock(),
            self.receiver,
            data.manufacturer_data,
            data.service_data,
            data.local_name,
            data.tx_power,
        )
        try:
            self._sink(adv)
        except Exception as exc:  # a bug downstream must not break bleak's D-Bus handler
            self.sink_errors += 1
            if "sink" not in self._logged:
                self._logged.add("sink")
                # The class only: the message could carry a payload.
                _LOGGER.error("%s: ingest raised %s on an advert", self.name, type(exc).__name__)

    # -- Component ----------------------------------------------------------------------------

    async def run(self, progress: Progress) -> None:
        """Scan until cancelled: wait for the adapter, start, watch, recover."""
        self._beat = progress
        try:
            while True:
                await self._bring_up()
                await self._watch()
        finally:
            await self._stop_scan()
            await self._ctl.close()
            self.state = ScanState.STOPPED
            self.mode = None

    def health(self) -> ComponentHealth:
        """State, mode, counters and the recovery ladder (never an address or RSSI)."""
        age = None if self._last_advert is None else round(self._mono() - self._last_advert, 1)
        return ComponentHealth(
            self.state is ScanState.SCANNING,
            {
                "adapter": self.adapter,
                "receiver": self.receiver,
                "state": self.state.value,
                "mode": self.mode,
                "passive_supported": self.passive_supported,
                "adapter_presence": None if self.presence is None else self.presence.value,
                "adverts": self.adverts,
                "last_advert_age_s": age,
                "start_failures": self.start_failures,
                "scan_restarts": self.scan_restarts,
                "power_cycles": self.power_cycles,
                "adapter_waits": self.adapter_waits,
                "recoveries": self.recoveries,
                "sink_errors": self.sink_errors,
                "ladder": list(self._episode),
                "recovering": self._episode_open,
                "last_error": self.last_error,
            },
        )

    def apply_config(self, cfg: AppConfig) -> bool:
        """Beacons and the silence bound apply live; anything else in ``radio`` restarts."""
        self._beacons_configured = bool(cfg.store.beacons)
        self._silence_s = cfg.radio.silence_s
        old = self._radio.model_copy(update={"silence_s": cfg.radio.silence_s})
        return old != cfg.radio

    # -- RawHolder: bleak's per-device map ---------------------------------------------------

    def _seen(self) -> dict[str, tuple[BLEDevice, AdvertisementData]]:
        if self._scanner is None:
            return {}
        return self._scanner._backend.seen_devices

    def purge(self, mono_now: float) -> None:
        """Empty bleak's last-advert-per-device map (we never read it)."""
        seen = self._seen()
        if seen:
            seen.clear()
        self._seen_since = mono_now

    def forget(self, token: bytes) -> int:
        """Drop every remembered advert whose payload carries the token."""
        seen = self._seen()
        drop = [
            k
            for k, (_, d) in seen.items()
            if any(token in v for v in (*d.manufacturer_data.values(), *d.service_data.values()))
        ]
        for k in drop:
            del seen[k]
        return len(drop)

    def held(self, mono_now: float) -> Holding:
        """Devices in bleak's map; their age is at most the time since the last purge."""
        n = len(self._seen())
        return Holding(n, max(0.0, mono_now - self._seen_since)) if n else EMPTY

    # -- bring-up: wait for the adapter, start the scan --------------------------------------

    async def _bring_up(self) -> None:
        """Return once scanning; wait (with capped backoff) while the adapter is unusable."""
        self.state = ScanState.STARTING
        delay = self._t.retry_base_s
        failures = 0
        while True:
            self._beat()
            presence = await self._probe()
            if presence is Presence.ON:
                waited = {Step.ADAPTER_LOST.value, Step.WAITING_ADAPTER.value, Step.POWER_ON.value}
                if self._episode_open and self._episode[-1] in waited:
                    self._step(
                        Step.ADAPTER_BACK, "%s: adapter is back", self.name, level=logging.INFO
                    )
                try:
                    await self._start_scan()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # any start failure is retried; health shows its class
                    failures += 1
                    self.start_failures += 1
                    self.last_error = type(exc).__name__
                    self._step(
                        Step.START_FAILED,
                        "%s: scan did not start (%s); retrying in %.0f s",
                        self.name,
                        self.last_error,
                        delay,
                    )
                    if failures == 2:  # habluetooth resets the adapter on the 2nd failed start
                        await self._power_cycle()
                else:
                    return
            elif presence is Presence.OFF:
                self._step(Step.POWER_ON, "%s: adapter is off; powering it on", self.name)
                with contextlib.suppress(AdapterControlError):
                    await self._ctl.set_powered(True)
            else:
                self.state = ScanState.WAITING_ADAPTER
                self.adapter_waits += 1
                self._step(
                    Step.WAITING_ADAPTER,
                    "%s: adapter not available (%s); retrying with backoff up to %.0f s",
                    self.name,
                    presence.value,
                    self._t.retry_cap_s,
                )
            await self._sleep(delay)
            delay = min(self._t.retry_cap_s, delay * 2)

    async def _probe(self) -> Presence:
        self.presence = await self._ctl.probe()
        if self.presence is not Presence.ON and self._ctl.last_error is not None:
            self.last_error = self._ctl.last_error
        return self.presence

    async def _start_scan(self) -> None:
        """Passive where BlueZ can, else active with duplicate data; raise if neither starts."""
        if self.passive_supported is not False:
            scanner = BleakScanner(
                self._on_advert,
                scanning_mode="passive",
                bluez=BlueZScannerArgs(adapter=self.adapter, or_patterns=list(self._patterns)),
            )
            try:
                await asyncio.wait_for(scanner.start(), self._t.start_timeout_s)
            except BleakError as exc:
                if not _passive_unsupported(exc):
                    raise
                self.passive_supported = False
                self._step(
                    Step.PASSIVE_FALLBACK,
                    "%s: BlueZ cannot scan passively here (no advertisement monitor; needs "
                    "bluetoothd --experimental); scanning actively",
                    self.name,
                    episode=False,
                )
            else:
                self.passive_supported = True
                self._started(scanner, "passive")
                return
        scanner = BleakScanner(
            self._on_advert,
            scanning_mode="active",
            bluez=BlueZScannerArgs(adapter=self.adapter, filters={"DuplicateData": True}),
        )
        await asyncio.wait_for(scanner.start(), self._t.start_timeout_s)
        self._started(scanner, "active")

    def _started(self, scanner: BleakScanner, mode: ScanMode) -> None:
        self._scanner = scanner
        self._seen_since = self._mono()
        self.mode = mode
        self.state = ScanState.SCANNING
        self._silence_ref = self._mono()
        if "started" not in self._logged:
            self._logged.add("started")
            _LOGGER.info("%s: scanning (%s) as receiver %s", self.name, mode, self.receiver)

    async def _stop_scan(self) -> None:
        """Stop bleak's scan; errors are expected here (the adapter may be gone)."""
        scanner, self._scanner = self._scanner, None
        if scanner is None:
            return
        try:
            await asyncio.wait_for(scanner.stop(), self._t.start_timeout_s)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # UnknownObject after removal, ServiceUnknown, timeouts
            _LOGGER.debug("%s: stopping the scan failed (%s)", self.name, type(exc).__name__)

    # -- the watchdog --------------------------------------------------------------------------

    async def _watch(self) -> None:
        """Return when the adapter is gone; climb the ladder while it is silent."""
        rung = 0
        while True:
            await self._sleep(self._t.check_s)
            presence = await self._probe()
            if presence is not Presence.ON:
                self._step(
                    Step.ADAPTER_LOST,
                    "%s: adapter went away while scanning (%s); waiting for it",
                    self.name,
                    presence.value,
                )
                await self._stop_scan()
                return
            if not self._beacons_configured:
                continue
            ref = self._silence_ref
            if self._last_advert is not None and self._last_advert > ref:
                ref = self._last_advert
                rung = 0
            silent_s = self._mono() - ref
            if silent_s < self._silence_s:
                continue
            if rung == 0:
                rung = 1
                await self._restart_scan(silent_s)
            else:
                rung = 0
                if self.mode == "passive":  # passive heard nothing through a restart
                    self.passive_supported = False
                    self._step(
                        Step.PASSIVE_FALLBACK,
                        "%s: passive scan stayed silent; scanning actively from now on",
                        self.name,
                        episode=False,
                    )
                await self._power_cycle()
                await self._stop_scan()
                return  # bring-up waits for the adapter and starts a fresh scan

    async def _restart_scan(self, silent_s: float) -> None:
        self.state = ScanState.RESTARTING_SCAN
        self.scan_restarts += 1
        self._step(
            Step.RESTART_SCAN,
            "%s: no advert for %.0f s while beacons are configured; restarting the scan",
            self.name,
            silent_s,
        )
        await self._stop_scan()
        try:
            await self._start_scan()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the next watchdog turn sees the adapter state
            self.last_error = type(exc).__name__
            self.start_failures += 1
            self.state = ScanState.STARTING
            self._silence_ref = self._mono()

    async def _power_cycle(self) -> None:
        """Adapter1.Powered off, then on; then wait for it to report powered again."""
        self.state = ScanState.POWER_CYCLING
        self.power_cycles += 1
        self._step(Step.POWER_CYCLE, "%s: still silent; power-cycling the adapter", self.name)
        await self._stop_scan()
        try:
            await self._ctl.set_powered(False)
            await self._sleep(self._t.power_off_s)
            await self._ctl.set_powered(True)
        except AdapterControlError as exc:
            self.last_error = str(exc)
            _LOGGER.debug("%s: power cycle refused (%s)", self.name, exc)
            return
        deadline = self._mono() + self._t.adapter_back_s
        while self._mono() < deadline:
            if await self._probe() is Presence.ON:
                self._step(
                    Step.ADAPTER_BACK,
                    "%s: adapter is back after the power cycle",
                    self.name,
                    level=logging.INFO,
                )
                return
            await self._sleep(min(1.0, self._t.check_s))

    # -- bookkeeping ---------------------------------------------------------------------------

    def _step(
        self,
        step: Step,
        msg: str,
        *args: object,
        episode: bool = True,
        level: int = logging.WARNING,
    ) -> None:
        """Record a recovery step; log it the first time in this episode (then count only)."""
        if episode:
            if not self._episode_open:  # a new episode: the last one's steps are done
                self._episode = []
            self._episode_open = True
            if not self._episode or self._episode[-1] != step.value:
                self._episode.append(step.value)
                del self._episode[:-LADDER_KEEP]
        if step.value in self._logged:
            _LOGGER.debug(msg, *args)
            return
        self._logged.add(step.value)
        _LOGGER.log(level, msg, *args)

    def _close_episode(self) -> None:
        self._episode_open = False
        self.recoveries += 1
        _LOGGER.info(
            "%s: adverts arriving again after: %s", self.name, ", ".join(self._episode) or "-"
        )
        self._logged = {k for k in self._logged if k in ("started", "sink", "passive_fallback")}

    async def _sleep(self, seconds: float) -> None:
        """Sleep, beating progress at least every second."""
        end = self._mono() + seconds
        while True:
            self._beat()
            left = end - self._mono()
            if left <= 0:
                return
            await asyncio.sleep(min(BEAT_S, left))


def scanner_parts(
    cfg: AppConfig,
    sink: Sink,
    *,
    clock: Callable[[], float] = time.time,
    monotonic: Callable[[], float] = time.monotonic,
    timings: ScanTimings = ScanTimings(),
) -> list[AdapterScanner]:
    """One scanner per configured adapter (none when the radio is off)."""
    if not cfg.radio.enabled:
        return []
    return [
        AdapterScanner(cfg, ad, sink, clock=clock, monotonic=monotonic, timings=timings)
        for ad in cfg.radio.scan_adapters()
    ]
