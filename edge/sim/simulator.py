"""The deterministic store simulator: a time-ordered stream of BLE adverts and app reports.

Owns the simulation's event loop, a heap of scheduled emitters (Poisson shopper arrivals,
departures, each phone's advertising or app-report timer, each reference beacon's timer, BLE
junk, housekeeping) that ``StoreSimulator.advance`` runs up to a given time, yielding one
``edge.events.Advertisement`` per store receiver that hears a transmission and one
``AppReport`` per iOS app batch, in non-decreasing time order; and the ground truth for
evaluation (which shopper sent an RPI, and their zone at any time).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import heapq
import random
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from edge.config.models import AppConfig
from edge.events import Advertisement
from edge.sim import advertise as air
from edge.sim.days import DayKeyring, SiteCalendar
from edge.sim.geometry import ZoneMap
from edge.sim.radio_model import FixedLinks, Link, LinkState, Listeners, NoiseSource, Shadowing
from edge.sim.shoppers import Platform, Shopper, ShopperFactory

RPI_RETENTION_S = 1800.0  # ground truth is kept this long after an RPI was last in use
HOUSEKEEPING_S = 60.0
ADV_JITTER_S = 0.010  # BLE advDelay: 0-10 ms added to every advertising interval
OTHER_ADDRESS_PERIOD_S = 900.0  # ordinary phones rotate their private address every ~15 min
JUNK_MARGIN_M = 5.0  # junk transmitters may also stand just outside the walls
_EMPTY_MD: Mapping[int, bytes] = MappingProxyType({})
_EMPTY_SD: Mapping[str, bytes] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class AppReport:
    """RAW. One MQTT message of the store app: a JSON array of app sightings (BRIEF §6)."""

    ts: float
    payload: bytes


Item = Advertisement | AppReport


@dataclass(frozen=True, slots=True)
class SimStats:
    """What the simulator has produced so far (shoppers counted when they arrive).

    ``adverts_emitted`` counts every ``Advertisement`` item (one per receiver that heard a
    transmission) = ``token_adverts + beacon_adverts + non_opted_in_adverts + junk_emitted``.
    """

    shoppers: int = 0
    opted_in: int = 0
    opted_in_by_tier: dict[int, int] = field(default_factory=lambda: dict.fromkeys(range(4), 0))
    ios: int = 0
    android: int = 0
    adverts_emitted: int = 0
    app_reports_emitted: int = 0
    junk_emitted: int = 0
    non_opted_in_adverts: int = 0
    token_adverts: int = 0
    beacon_adverts: int = 0
    app_sightings_emitted: int = 0


@dataclass(slots=True)
class _Counters:
    shoppers: int = 0
    opted_in: int = 0
    ios: int = 0
    android: int = 0
    app_reports_emitted: int = 0
    junk_emitted: int = 0
    non_opted_in_adverts: int = 0
    token_adverts: int = 0
    beacon_adverts: int = 0
    app_sightings_emitted: int = 0
    by_tier: list[int] = field(default_factory=lambda: [0, 0, 0, 0])


@dataclass(slots=True)
class _Phone:
    """Mutable radio state of one shopper's phone (current RPI interval, frame, address)."""

    shopper: Shopper
    epoch: int = -1
    day: dt.date = dt.date.min
    address: str = ""
    frame_hex: str = ""
    manufacturer_data: Mapping[int, bytes] = field(default_factory=lambda: _EMPTY_MD)
    service_data: Mapping[str, bytes] = field(default_factory=lambda: _EMPTY_SD)
    phase: float = 0.0
    shadow: LinkState = field(default_factory=LinkState)  # correlated shadowing, this phone


def _default_start(cfg: AppConfig) -> float:
    start = cfg.simulator.start
    if start.tzinfo is None:
        start = start.replace(tzinfo=ZoneInfo(cfg.timezone))
    return start.timestamp()


def _static_address(name: str) -> str:
    raw = bytearray(hashlib.sha256(b"shelfedge-sim/beacon/" + name.encode()).digest()[:6])
    raw[0] |= 0xC0  # static random address
    return air.format_address(bytes(raw))


class StoreSimulator:
    """Simulate the store described by ``cfg`` from ``start_ts`` on, deterministically.

    Every random draw comes from generators seeded from ``seed`` (numpy for shadowing and
    packet loss, separate ``random.Random`` streams for plans, timing and payloads), and draws
    happen in event order, so a seed gives the same stream however ``advance`` is stepped.

    ``warm_start`` lets shoppers arrive before ``start_ts`` (silently; only those still in
    the store at ``start_ts`` are counted) so the store is in its steady state when the
    stream begins instead of opening empty.

    Memory is bounded by the live shoppers: departed shoppers leave the live set, and their
    ground truth is kept only while one of their RPIs was in use within the last
    ``RPI_RETENTION_S`` (30 min), which is how far back ``true_zone``/``shopper_of`` answer.
    """

    def __init__(
        self,
        cfg: AppConfig,
        seed: int = 0,
        *,
        start_ts: float | None = None,
        warm_start: bool = True,
    ) -> None:
        sim = cfg.simulator
        self.cfg = cfg
        self.seed = seed
        self.start_ts: float = _default_start(cfg) if start_ts is None else float(start_ts)
        self._now = self.start_ts
        self._zones = ZoneMap.from_store(cfg.store)
        self._plan_rng = random.Random(f"shelfedge-sim/{seed}/plans")
        self._time_rng = random.Random(f"shelfedge-sim/{seed}/timing")
        self._air_rng = random.Random(f"shelfedge-sim/{seed}/payloads")
        noise_seed = hashlib.sha256(f"shelfedge-sim/{seed}/noise".encode()).digest()
        self._noise = NoiseSource(np.random.default_rng(int.from_bytes(noise_seed[:8], "little")))
        self._factory = ShopperFactory(
            cfg, self._zones, self._plan_rng, random.Random(f"shelfedge-sim/{seed}/facing")
        )
        self._calendar = SiteCalendar(cfg.timezone)
        self._keys = DayKeyring(seed)

        store = cfg.store
        self._rx_ids = [r.id for r in store.receivers]
        radio_kw: dict[str, Any] = {
            "sigma_db": sim.shadowing_sigma_db,
            "drop_rate": sim.drop_rate,
            "max_range_m": sim.max_range_m,
            "noise": self._noise,
            "shadowing": None
            if sim.shadowing == "iid"
            else Shadowing(
                sigma_db=sim.shadowing_sigma_db,
                correlation_s=sim.shadowing_correlation_s,
                body_loss_db=sim.body_loss_db,
                fade_probability=sim.fade_probability,
            ),
        }
        self._rx = Listeners(
            [
                Link(*r.position, r.rssi_at_1m - r.rssi_offset_db, r.path_loss_exponent)
                for r in store.receivers
            ],
            **radio_kw,
        )
        beacon_links = [
            Link(*b.position, b.rssi_at_1m, b.path_loss_exponent) for b in store.beacons
        ]
        self._beacon_view = Listeners(beacon_links, **radio_kw)  # an iOS phone hearing beacons
        self._beacon_links = FixedLinks(
            beacon_links,
            [(*r.position, -r.rssi_offset_db) for r in store.receivers],
            **radio_kw,
        )
        self._beacons = [
            air.beacon_air(b, _static_address(f"{store.name}/{b.id}")) for b in store.beacons
        ]
        self._beacon_md = [MappingProxyType(dict(b.manufacturer_data)) for b in self._beacons]
        self._beacon_sd = [MappingProxyType(dict(b.service_data)) for b in self._beacons]
        self._token_in_mfg = cfg.radio.accept == "manufacturer_data"
        self._token_sd_key = air.uuid16(cfg.radio.token_service_uuid)
        self._token_company = cfg.radio.token_company_id
        self._token_uuid16 = cfg.radio.token_service_uuid
        xs = [b[0] for b in self._zones.boxes] + [b[2] for b in self._zones.boxes]
        ys = [b[1] for b in self._zones.boxes] + [b[3] for b in self._zones.boxes]
        self._bounds = (
            min(0.0, *xs) - JUNK_MARGIN_M,
            min(0.0, *ys) - JUNK_MARGIN_M,
            max(store.size[0], *xs) + JUNK_MARGIN_M,
            max(store.size[1], *ys) + JUNK_MARGIN_M,
        )

        self._arrival_rate = sim.arrivals_per_hour / 3600.0
        self._adv_interval = sim.adv_interval_s
        self._report_interval = sim.app_report_interval_s
        self._beacon_interval = sim.beacon_adv_interval_s
        self._junk_rate = sim.junk_per_s

        self._heap: list[tuple[float, int, Callable[[float, Any], None], Any]] = []
        self._seq = 0
        self._pending: deque[Item] = deque()
        self._live: dict[int, Shopper] = {}
        self._rpis: dict[bytes, tuple[Shopper, float]] = {}  # RPI → (shopper, last in use)
        self._next_id = 0
        self._c = _Counters()

        warmup = self._factory.longest_visit_s() if warm_start else 0.0
        first = self.start_ts - warmup
        self._push(first + self._plan_rng.expovariate(self._arrival_rate), self._arrival, None)
        for i in range(len(self._beacons)):
            phase = self._time_rng.random() * self._beacon_interval
            self._push(self.start_ts + phase, self._beacon, i)
        if self._junk_rate > 0:
            self._push(
                self.start_ts + self._time_rng.expovariate(self._junk_rate), self._junk, None
            )
        self._push(self.start_ts + HOUSEKEEPING_S, self._housekeeping, None)
        # Run the silent warm-up (arrivals and departures only) so the store is populated now.
        heap = self._heap
        while heap and heap[0][0] < self.start_ts:
            ts, _, fn, arg = heapq.heappop(heap)
            fn(ts, arg)

    # -- public API ------------------------------------------------------------------------

    @property
    def now(self) -> float:
        """The time the simulation has been advanced to."""
        return self._now

    def advance(self, until_ts: float) -> Iterator[Item]:
        """Yield every item with ``ts <= until_ts`` not yielded before, in time order."""
        pending = self._pending
        heap = self._heap
        pop = heapq.heappop
        while True:
            while pending:
                if pending[0].ts > until_ts:
                    return
                yield pending.popleft()
            if not heap or heap[0][0] > until_ts:
                break
            ts, _, fn, arg = pop(heap)
            fn(ts, arg)
        if until_ts > self._now:
            self._now = until_ts

    def day_keys(self) -> dict[str, str]:
        """Site day keys (local dates) from the day before the start to 2 days after now."""
        cal = self._calendar
        first = cal.date(self.start_ts) - dt.timedelta(days=1)
        last = cal.date(max(self.start_ts, self._now)) + dt.timedelta(days=2)
        return self._keys.hex_keys(first, last)

    def day_key(self, day: dt.date) -> bytes:
        """The site day key of one local date (what phones use for the tag)."""
        return self._keys.key(day)

    def shopper(self, rpi: bytes) -> Shopper | None:
        """Ground truth: the shopper whose phone used this RPI (within the retention)."""
        rec = self._rpis.get(bytes(rpi))
        return None if rec is None else rec[0]

    def shopper_of(self, rpi: bytes) -> int | None:
        """Ground truth: the id of the shopper whose phone used this RPI, or None."""
        rec = self._rpis.get(bytes(rpi))
        return None if rec is None else rec[0].id

    def true_zone(self, rpi: bytes, ts: float) -> str | None:
        """Ground truth: zone of the RPI's shopper at ``ts`` (None if not in store/unknown)."""
        rec = self._rpis.get(bytes(rpi))
        if rec is None:
            return None
        return rec[0].path.zone(ts, self._zones)

    def known_rpis(self) -> int:
        """How many RPIs the ground truth still holds (bounded by ``RPI_RETENTION_S``)."""
        return len(self._rpis)

    def live_shoppers(self) -> int:
        """Shoppers in the store now."""
        return len(self._live)

    def shoppers_in_store(self) -> list[Shopper]:
        """The shoppers in the store now (ground truth, for evaluation and tests)."""
        return list(self._live.values())

    @property
    def zones(self) -> ZoneMap:
        """The store's zone geometry as the simulator sees it."""
        return self._zones

    @property
    def stats(self) -> SimStats:
        """A snapshot of the counters."""
        c = self._c
        adverts = c.token_adverts + c.beacon_adverts + c.non_opted_in_adverts + c.junk_emitted
        return SimStats(
            shoppers=c.shoppers,
            opted_in=c.opted_in,
            opted_in_by_tier=dict(enumerate(c.by_tier)),
            ios=c.ios,
            android=c.android,
            adverts_emitted=adverts,
            app_reports_emitted=c.app_reports_emitted,
            junk_emitted=c.junk_emitted,
            non_opted_in_adverts=c.non_opted_in_adverts,
            token_adverts=c.token_adverts,
            beacon_adverts=c.beacon_adverts,
            app_sightings_emitted=c.app_sightings_emitted,
        )

    # -- scheduling --------------------------------------------------------------------------

    def _push(self, ts: float, fn: Callable[[float, Any], None], arg: Any) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (ts, self._seq, fn, arg))

    def _jitter(self, interval: float) -> float:
        return interval + self._time_rng.random() * ADV_JITTER_S

    def _arrival(self, ts: float, _: object) -> None:
        shopper = self._factory.make(self._next_id, ts)
        self._next_id += 1
        self._push(ts + self._plan_rng.expovariate(self._arrival_rate), self._arrival, None)
        if shopper.departure < self.start_ts:
            return  # came and went during the warm-up: never part of the simulated stream
        c = self._c
        c.shoppers += 1
        platform = shopper.platform
        if shopper.opted_in:
            c.opted_in += 1
            c.by_tier[shopper.tier] += 1
            if platform is Platform.IOS:
                c.ios += 1
            else:
                c.android += 1
        self._live[shopper.id] = shopper
        self._push(shopper.departure, self._departure, shopper)
        begin = max(ts, self.start_ts)
        if platform is Platform.ANDROID:
            self._push(
                begin + self._time_rng.random() * self._adv_interval, self._android, _Phone(shopper)
            )
        elif platform is Platform.IOS:
            self._push(
                begin + self._time_rng.random() * self._report_interval, self._ios, _Phone(shopper)
            )
        elif platform is not Platform.NONE:
            phone = _Phone(shopper, phase=self._time_rng.random() * OTHER_ADDRESS_PERIOD_S)
            self._push(begin + self._time_rng.random() * self._adv_interval, self._other, phone)

    def _departure(self, ts: float, shopper: Shopper) -> None:
        self._live.pop(shopper.id, None)

    def _housekeeping(self, ts: float, _: object) -> None:
        horizon = ts - RPI_RETENTION_S
        stale = [rpi for rpi, (_, last) in self._rpis.items() if last < horizon]
        for rpi in stale:
            del self._rpis[rpi]
        self._push(ts + HOUSEKEEPING_S, self._housekeeping, None)

    # -- emitters ---------------------------------------------------------------------------

    def _rotate(self, phone: _Phone, epoch: int, day: dt.date) -> None:
        """New RPI interval (or new local day): new RPI, token frame, tag and address."""
        shopper = phone.shopper
        rpi = air.rpi(shopper.key, epoch)
        frame = air.token_frame(shopper.tier, rpi, self._keys.key(day))
        phone.epoch = epoch
        phone.day = day
        phone.frame_hex = frame.hex()
        phone.address = air.resolvable_address(shopper.key, epoch)
        if self._token_in_mfg:
            phone.manufacturer_data = MappingProxyType({self._token_company: frame})
        else:
            phone.service_data = MappingProxyType({self._token_sd_key: frame})
        last_use = min((epoch + 1) * air.RPI_PERIOD_S, shopper.departure)
        self._rpis[rpi] = (shopper, last_use)

    def _advertise(self, ts: float, phone: _Phone) -> int:
        """Queue one advertisement of the phone per receiver that hears it; return how many."""
        path = phone.shopper.path
        pos = path.position(ts)
        if pos is None:
            return 0
        heard = self._rx.hear(pos[0], pos[1], state=phone.shadow, t=ts, heading=path.heading(ts))
        addr, md, sd = phone.address, phone.manufacturer_data, phone.service_data
        rx_ids = self._rx_ids
        append = self._pending.append
        for i, rssi in heard:
            append(Advertisement(addr, rssi, ts, rx_ids[i], md, sd))
        return len(heard)

    def _opted_in_phone_active(self, ts: float, phone: _Phone) -> bool:
        """False once the shopper left; rotates the RPI at interval and day boundaries."""
        if ts > phone.shopper.departure:
            return False
        epoch = int(ts // air.RPI_PERIOD_S)
        day = self._calendar.date(ts)
        if epoch != phone.epoch or day != phone.day:
            self._rotate(phone, epoch, day)
        return True

    def _android(self, ts: float, phone: _Phone) -> None:
        if not self._opted_in_phone_active(ts, phone):
            return
        self._c.token_adverts += self._advertise(ts, phone)
        self._push(ts + self._jitter(self._adv_interval), self._android, phone)

    def _ios(self, ts: float, phone: _Phone) -> None:
        if not self._opted_in_phone_active(ts, phone):
            return
        shopper = phone.shopper
        pos = shopper.path.position(ts)
        if pos is not None:
            heard = self._beacon_view.hear(
                pos[0], pos[1], state=phone.shadow, t=ts, heading=shopper.path.heading(ts)
            )
            if heard:
                frame_hex = phone.frame_hex
                beacons = self._beacons
                body = ",".join(
                    air.app_sighting_json(frame_hex, beacons[i].app_json, rssi, ts)
                    for i, rssi in heard
                )
                self._pending.append(AppReport(ts, f"[{body}]".encode()))
                self._c.app_reports_emitted += 1
                self._c.app_sightings_emitted += len(heard)
        self._push(ts + self._jitter(self._report_interval), self._ios, phone)

    def _other(self, ts: float, phone: _Phone) -> None:
        shopper = phone.shopper
        if ts > shopper.departure:
            return
        epoch = int((ts + phone.phase) // OTHER_ADDRESS_PERIOD_S)
        if epoch != phone.epoch:
            phone.epoch = epoch
            phone.address = air.resolvable_address(shopper.key, epoch)
            if shopper.platform is Platform.OTHER_IPHONE:
                phone.manufacturer_data = MappingProxyType(air.continuity(self._air_rng))
            else:
                phone.service_data = MappingProxyType(air.fast_pair(self._air_rng))
        self._c.non_opted_in_adverts += self._advertise(ts, phone)
        self._push(ts + self._jitter(self._adv_interval), self._other, phone)

    def _beacon(self, ts: float, index: int) -> None:
        heard = self._beacon_links.hear(index, ts)
        if heard:
            addr = self._beacons[index].address
            md, sd = self._beacon_md[index], self._beacon_sd[index]
            rx_ids = self._rx_ids
            append = self._pending.append
            for i, rssi in heard:
                append(Advertisement(addr, rssi, ts, rx_ids[i], md, sd))
            self._c.beacon_adverts += len(heard)
        self._push(ts + self._jitter(self._beacon_interval), self._beacon, index)

    def _junk(self, ts: float, _: object) -> None:
        rng = self._air_rng
        x0, y0, x1, y1 = self._bounds
        x, y = rng.uniform(x0, x1), rng.uniform(y0, y1)
        heard = self._rx.hear(x, y, rng.uniform(-15.0, 5.0))
        if heard:
            j = air.junk(rng, self._token_uuid16, self._token_company)
            addr = air.random_address(rng)
            md = MappingProxyType(dict(j.manufacturer_data))
            sd = MappingProxyType(dict(j.service_data))
            rx_ids = self._rx_ids
            append = self._pending.append
            for i, rssi in heard:
                append(Advertisement(addr, rssi, ts, rx_ids[i], md, sd, j.local_name))
            self._c.junk_emitted += len(heard)
        self._push(ts + self._time_rng.expovariate(self._junk_rate), self._junk, None)
