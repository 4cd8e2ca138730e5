"""Turn raw inputs (BLE advertisements, app sighting messages) into sightings.

This is the privacy boundary's first gate: anything that is not a verified token frame of
an opted-in phone, or a known reference beacon, is dropped here and only counted.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from edge import strict_json
from edge.config.models import AltBeaconId, AppConfig, EddystoneUidId, IBeaconId
from edge.errors import FrameError
from edge.events import Advertisement, BeaconSighting, Sighting, SightingSource
from edge.privacy.holders import Holding
from edge.radio import frames
from edge.radio.keys import DayKeys

_LOGGER = logging.getLogger(__name__)

BeaconKey = tuple[str, ...]
APP_MAX_FUTURE_S = 5.0


class _AppIBeacon(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    kind: Literal["ibeacon"]
    uuid: str
    major: int = Field(ge=0, le=65535)
    minor: int = Field(ge=0, le=65535)


class _AppEddystone(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    kind: Literal["eddystone_uid"]
    namespace: str
    instance: str


class _AppAltBeacon(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    kind: Literal["altbeacon"]
    beacon_id: str


class AppSighting(BaseModel):
    """One app-reported sighting (BRIEF §6), exactly as the store app sends it."""

    model_config = ConfigDict(extra="forbid", strict=True)
    frame: str = Field(pattern=r"^[0-9a-fA-F]{42}$")
    beacon: _AppIBeacon | _AppEddystone | _AppAltBeacon = Field(discriminator="kind")
    rssi: int = Field(ge=-127, le=20)  # strict: "-70", -70.0 and true are rejected
    ts: float  # strict: a JSON number (int or float), never a string or a bool


def parse_app_payload(payload: bytes | str) -> list[AppSighting]:
    """Strictly parse one app sighting or a batch (BRIEF §6); raises ValueError."""
    data = strict_json.loads(payload)
    parsed = _APP_BATCH.validate_python(data, strict=True)
    return parsed if isinstance(parsed, list) else [parsed]


_APP_BATCH: TypeAdapter[list[AppSighting] | AppSighting] = TypeAdapter(
    list[AppSighting] | AppSighting
)


def beacon_key(identity: Any) -> BeaconKey:
    """Lookup key of a beacon identity (config model, decoded frame or app report)."""
    kind = getattr(identity, "kind", None)
    if isinstance(identity, IBeaconId | frames.IBeacon) or kind == "ibeacon":
        return ("ibeacon", identity.uuid.lower(), str(identity.major), str(identity.minor))
    if isinstance(identity, EddystoneUidId | frames.EddystoneUid) or kind == "eddystone_uid":
        return ("eddystone_uid", identity.namespace.lower(), identity.instance.lower())
    if isinstance(identity, AltBeaconId | frames.AltBeacon) or kind == "altbeacon":
        return ("altbeacon", identity.beacon_id.lower())
    raise TypeError(f"not a beacon identity: {type(identity).__name__}")


@dataclass(slots=True)
class IngestCounters:
    """Counts of what the ingest gate passed and dropped (health, never per phone)."""

    adverts: int = 0
    tokens: int = 0
    beacons: int = 0
    dropped_not_ours: int = 0
    dropped_unverified: int = 0
    dropped_malformed: int = 0
    dropped_unknown_beacon: int = 0
    dropped_stale: int = 0
    app_messages: int = 0
    app_invalid: int = 0
    eddystone_url: int = 0
    eddystone_tlm: int = 0
    eddystone_eid: int = 0
    tlm_unattributed: int = 0  # TLM no configured beacon's frame claimed within the retention
    by_source: dict[str, int] = field(default_factory=dict)
    # Reference beacon id → its latest unencrypted TLM figures (fixed infrastructure only).
    beacon_telemetry: dict[str, dict[str, float | int | None]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """Plain dict for the device state (containers copied)."""
        out = {k: getattr(self, k) for k in self.__slots__}
        out["by_source"] = dict(self.by_source)
        out["beacon_telemetry"] = {b: dict(t) for b, t in self.beacon_telemetry.items()}
        return out


class PendingTelemetry:
    """Eddystone-TLM frames waiting, by address, for that address's identifying frame.

    A TLM frame carries no beacon identity; the specification has the receiver tie it to
    the identifying frames (UID, iBeacon, ...) sent from the same device address. Holding
    the TLM until the next identifying frame costs the hot path one emptiness check per
    beacon advert, where remembering every beacon's address would cost a clock read and a
    dict write. An address is a raw datum all the same: this is a registered raw holder,
    bounded in size, purged ``raw_retention_s`` after the TLM was heard; a TLM that no
    configured beacon claims in time is counted as unattributed.
    """

    holder_name = "radio.pending_tlm"

    def __init__(
        self,
        counters: IngestCounters,
        retention_s: float,
        max_entries: int = 256,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.retention_s = retention_s
        self.max_entries = max_entries
        self._counters = counters
        self._mono = monotonic
        # address → (frame, wall time heard, monotonic time heard); oldest first
        self.waiting: dict[str, tuple[frames.EddystoneTlm, float, float]] = {}

    def add(self, address: str, frame: frames.EddystoneTlm, ts: float) -> None:
        """A TLM frame was heard from ``address`` (the latest one per address is kept)."""
        waiting = self.waiting
        if waiting.pop(address, None) is None and len(waiting) >= self.max_entries:
            del waiting[next(iter(waiting))]
            self._counters.tlm_unattributed += 1
        waiting[address] = (frame, ts, self._mono())

    def claim(self, address: str, beacon_id: str) -> None:
        """``address`` turned out to be configured beacon ``beacon_id``: file its TLM."""
        hit = self.waiting.pop(address, None)
        if hit is None:
            return
        frame, ts, heard = hit
        if self._mono() - heard > self.retention_s:
            self._counters.tlm_unattributed += 1
            return
        self._counters.beacon_telemetry[beacon_id] = {
            "battery_mv": frame.battery_mv,
            "temperature_c": frame.temperature_c,
            "adv_count": frame.adv_count,
            "uptime_s": frame.uptime_s,
            "ts": ts,
        }

    def purge(self, mono_now: float) -> None:
        """Drop TLM frames no configured beacon claimed within the raw retention."""
        cutoff = mono_now - self.retention_s
        waiting = self.waiting
        while waiting:
            address, (_f, _ts, heard) = next(iter(waiting.items()))
            if heard >= cutoff:
                break
            del waiting[address]
            self._counters.tlm_unattributed += 1

    def forget(self, token: bytes) -> int:
        """Beacon addresses are never tokens: nothing to drop."""
        return 0

    def held(self, mono_now: float) -> Holding:
        """TLM frames waiting and how long ago the oldest was heard."""
        if not self.waiting:
            return Holding(0, 0.0)
        _f, _ts, heard = next(iter(self.waiting.values()))
        return Holding(len(self.waiting), max(0.0, mono_now - heard))


class Ingest:
    """Decode, verify and resolve raw inputs into sighting events."""

    def __init__(
        self,
        cfg: AppConfig,
        keys: DayKeys,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.keys = keys
        self.counters = IngestCounters()
        self._tz = ZoneInfo(cfg.timezone)
        self._svc_key = frames.uuid16_key(cfg.radio.token_service_uuid)
        self._company = cfg.radio.token_company_id
        self._accept_sd = cfg.radio.accept in ("both", "service_data")
        self._accept_md = cfg.radio.accept in ("both", "manufacturer_data")
        self._eddystone_key = frames.uuid16_key(frames.EDDYSTONE_UUID16)
        self._beacons: dict[BeaconKey, str] = {
            beacon_key(b.identity): b.id for b in cfg.store.beacons
        }
        self._retention_s = cfg.privacy.raw_retention_s
        self.pending_tlm = PendingTelemetry(self.counters, self._retention_s, monotonic=monotonic)
        self._tlm_waiting = self.pending_tlm.waiting
        self._day_cache: tuple[float, float, dt.date] = (0.0, 0.0, dt.date.min)

    def local_date(self, ts: float) -> dt.date:
        """The site's local date at ``ts`` (cached between exact local midnights)."""
        lo, hi, day = self._day_cache
        if not lo <= ts < hi:
            local = dt.datetime.fromtimestamp(ts, self._tz)
            day = local.date()
            midnight = dt.datetime.combine(day, dt.time(), self._tz)
            nxt = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), self._tz)
            self._day_cache = (midnight.timestamp(), nxt.timestamp(), day)
        return day

    def _token_sighting(
        self, payload: bytes, anchor: str, rssi: int, ts: float, source: SightingSource
    ) -> Sighting | None:
        try:
            frame = frames.parse_token(payload)
        except FrameError:
            self.counters.dropped_malformed += 1
            return None
        if not self.keys.verify(frame, self.local_date(ts)):
            self.counters.dropped_unverified += 1
            return None
        self.counters.tokens += 1
        return Sighting(frame.rpi, frame.tier, anchor, rssi, ts, source)

    def advertisement(self, adv: Advertisement) -> Sighting | BeaconSighting | None:
        """One BLE advertisement → token sighting, beacon sighting or None (dropped)."""
        self.counters.adverts += 1
        sd = adv.service_data
        md = adv.manufacturer_data
        if self._accept_sd and self._svc_key in sd:
            return self._token_sighting(
                sd[self._svc_key], adv.receiver, adv.rssi, adv.ts, SightingSource.BLE
            )
        if self._accept_md and self._company in md:
            payload = md[self._company]
            if len(payload) == frames.TOKEN_FRAME_LEN:
                return self._token_sighting(
                    payload, adv.receiver, adv.rssi, adv.ts, SightingSource.BLE
                )
        beacon: frames.BeaconFrame | None = None
        try:
            if frames.APPLE_COMPANY_ID in md:
                beacon = frames.parse_ibeacon(md[frames.APPLE_COMPANY_ID])
            if beacon is None and self._eddystone_key in sd:
                eddystone = frames.parse_eddystone(sd[self._eddystone_key])
                if type(eddystone) is frames.EddystoneUid:
                    beacon = eddystone
                else:
                    self._eddystone_other(eddystone, adv.address, adv.ts)
                    return None
            if beacon is None:
                for company, payload in md.items():
                    beacon = frames.parse_altbeacon(company, payload)
                    if beacon is not None:
                        break
        except FrameError:
            self.counters.dropped_malformed += 1
            return None
        if beacon is None:
            self.counters.dropped_not_ours += 1
            return None
        beacon_id = self._beacons.get(beacon_key(beacon))
        if beacon_id is None:
            self.counters.dropped_unknown_beacon += 1
            return None
        self.counters.beacons += 1
        if self._tlm_waiting:
            self.pending_tlm.claim(adv.address, beacon_id)
        return BeaconSighting(beacon_id, adv.receiver, adv.rssi, adv.ts)

    def _eddystone_other(self, frame: frames.EddystoneFrame, address: str, ts: float) -> None:
        """Eddystone URL/TLM/EID: counted; a TLM waits for its beacon's identifying frame."""
        c = self.counters
        match frame:
            case frames.EddystoneTlm():
                c.eddystone_tlm += 1
                self.pending_tlm.add(address, frame, ts)
            case frames.EddystoneEid():
                c.eddystone_eid += 1  # resolving needs the beacon's key: out of scope
            case _:
                c.eddystone_url += 1

    def app_payload(
        self, payload: bytes | str, sink: Callable[[Sighting], None], now: float | None = None
    ) -> int:
        """Validate an app sighting message (one object or a batch); emit sightings.

        With ``now``, sightings stamped more than ``raw_retention_s`` in the past or more than
        ``APP_MAX_FUTURE_S`` in the future (a phone's clock is not ours) are dropped: a future
        time stamp would otherwise keep a raw sample in RAM past the retention bound.
        """
        try:
            items = parse_app_payload(payload)
        except strict_json.DuplicateKeyError:
            self.counters.app_invalid += 1
            _LOGGER.debug("invalid app sighting message dropped (duplicate key)")
            return 0
        except ValidationError as exc:
            self.counters.app_invalid += 1
            # The message may contain a token: log only the error kinds and places.
            where = "; ".join(
                f"{'.'.join(map(str, e['loc']))}: {e['type']}" for e in exc.errors()[:3]
            )
            _LOGGER.debug("invalid app sighting message dropped (%s)", where)
            return 0
        except (ValueError, RecursionError):  # not JSON, or not UTF-8
            self.counters.app_invalid += 1
            _LOGGER.debug("invalid app sighting message dropped (not JSON)")
            return 0
        emitted = 0
        for item in items:
            self.counters.app_messages += 1
            if now is not None and not (
                now - self._retention_s <= item.ts <= now + APP_MAX_FUTURE_S
            ):
                self.counters.dropped_stale += 1
                continue
            beacon_id = self._beacons.get(beacon_key(item.beacon))
            if beacon_id is None:
                self.counters.dropped_unknown_beacon += 1
                continue
            s = self._token_sighting(
                bytes.fromhex(item.frame), beacon_id, item.rssi, item.ts, SightingSource.APP
            )
            if s is not None:
                sink(s)
                emitted += 1
        return emitted

    def known_beacons(self) -> Mapping[BeaconKey, str]:
        """Beacon identity key → configured beacon id."""
        return self._beacons
