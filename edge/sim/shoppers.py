"""Simulated shoppers: who they are (phone platform, opt-in, consent tier) and where they walk.

Owns the visit plan: a shopper enters at ``store.entrance``, visits a random number of zones
(``simulator.zones_per_visit``) drawn by zone popularity and ordered as a nearest-neighbour
tour, dwells at a random point inside each for a uniform ``simulator.dwell_s``, queues at the
``checkout`` zone when there is one, and walks back out through the entrance, at
``simulator.walking_speed_mps`` on straight lines; and the phone mix: ``opt_in_share`` have
the app (tier from ``tier_weights``, iOS with ``ios_share``), half of the others carry a phone
that is heard (an iPhone with ``ios_share`` again). The result is an immutable ``Shopper`` with
its whole ``WalkPath`` fixed at arrival, so ground truth never depends on later random draws.
"""

from __future__ import annotations

import enum
import math
import random
from dataclasses import dataclass

from edge.config.models import AppConfig
from edge.sim.geometry import Point, WalkPath, ZoneMap

CHECKOUT_ZONE = "checkout"


class Platform(enum.StrEnum):
    """What a shopper's phone puts on the air (or on the store bus)."""

    ANDROID = "android"  # opted in: advertises the token frame over BLE
    IOS = "ios"  # opted in: publishes app sighting batches over MQTT, no BLE token
    OTHER_IPHONE = "other_iphone"  # not opted in: Apple continuity adverts
    OTHER_ANDROID = "other_android"  # not opted in: Google Fast Pair adverts
    NONE = "none"  # not opted in, nothing heard


@dataclass(frozen=True, slots=True)
class Shopper:
    """Ground truth for one shopper; ``key`` is the phone's secret (RPI and address seed)."""

    id: int
    platform: Platform
    tier: int  # consent tier 0-3 when opted in, -1 otherwise
    key: bytes
    path: WalkPath
    zones: tuple[str, ...]  # zones visited, in order (checkout last when present)

    @property
    def opted_in(self) -> bool:
        """True for phones with the store app and consent."""
        return self.platform in (Platform.ANDROID, Platform.IOS)

    @property
    def arrival(self) -> float:
        """When the shopper enters the store."""
        return self.path.start

    @property
    def departure(self) -> float:
        """When the shopper has walked out through the entrance."""
        return self.path.end


class ShopperFactory:
    """Draws shoppers from the simulator settings with one seeded ``random.Random``."""

    def __init__(
        self,
        cfg: AppConfig,
        zones: ZoneMap,
        rng: random.Random,
        facing_rng: random.Random | None = None,
    ) -> None:
        sim = cfg.simulator
        self._rng = rng
        # Facings during dwells come from their own stream so plans stay the same with or
        # without them (the i.i.d. and correlated radio models see the same shoppers).
        self._facing = facing_rng or random.Random(0)
        self._zones = zones
        self._entrance: Point = cfg.store.entrance
        self._speed = sim.walking_speed_mps
        self._dwell = sim.dwell_s
        self._visits = (min(sim.zones_per_visit), max(sim.zones_per_visit))
        self._opt_in = sim.opt_in_share
        self._ios = sim.ios_share
        weights = [max(w, 0.0) for w in sim.tier_weights]
        self._tier_weights = weights if sum(weights) > 0 else [0.0, 1.0, 0.0, 0.0]
        self._checkout = zones.ids.index(CHECKOUT_ZONE) if CHECKOUT_ZONE in zones.ids else None
        start_zone = zones.containing(*self._entrance)
        self._candidates = (
            [i for i, zid in enumerate(zones.ids) if i != self._checkout and zid != start_zone]
            or [i for i in range(len(zones.ids)) if i != self._checkout]
            or [0]
        )
        # Popularity of each zone for this simulated store: floor area times a random appeal.
        self._popularity = {
            i: (b[2] - b[0]) * (b[3] - b[1]) * rng.uniform(0.5, 1.5)
            for i, b in enumerate(zones.boxes)
        }

    def longest_visit_s(self) -> float:
        """An upper bound on a visit's duration (for warming the store up before the start)."""
        stops = self._visits[1] + 2
        x0 = min(b[0] for b in self._zones.boxes)
        y0 = min(b[1] for b in self._zones.boxes)
        x1 = max(b[2] for b in self._zones.boxes)
        y1 = max(b[3] for b in self._zones.boxes)
        return stops * (self._dwell[1] + math.hypot(x1 - x0, y1 - y0) / self._speed)

    def _platform(self) -> tuple[Platform, int]:
        rng = self._rng
        if rng.random() < self._opt_in:
            tier = rng.choices(range(4), weights=self._tier_weights)[0]
            return (Platform.IOS if rng.random() < self._ios else Platform.ANDROID), tier
        if rng.random() < 0.5:
            iphone = rng.random() < self._ios
            return (Platform.OTHER_IPHONE if iphone else Platform.OTHER_ANDROID), -1
        return Platform.NONE, -1

    def _zones_to_visit(self) -> list[int]:
        rng = self._rng
        lo, hi = self._visits
        pool = list(self._candidates)
        chosen: list[int] = []
        for _ in range(min(rng.randint(lo, hi), len(pool))):
            pick = rng.choices(pool, weights=[self._popularity[i] for i in pool])[0]
            pool.remove(pick)
            chosen.append(pick)
        # A sensible walking order: always the nearest not-yet-visited zone next.
        order: list[int] = []
        here = self._entrance
        centres = self._zones.centres
        while chosen:
            nxt = min(chosen, key=lambda i: math.dist(here, centres[i]))
            chosen.remove(nxt)
            order.append(nxt)
            here = centres[nxt]
        if self._checkout is not None:
            order.append(self._checkout)
        return order

    def make(self, shopper_id: int, arrival: float) -> Shopper:
        """Draw one shopper arriving at ``arrival`` (Unix seconds)."""
        rng = self._rng
        platform, tier = self._platform()
        key = rng.randbytes(16) if platform is not Platform.NONE else b""
        stops = self._zones_to_visit()
        zones = self._zones
        t = arrival
        x, y = self._entrance
        times, xs, ys = [t], [x], [y]
        legs: list[str | None] = []
        headings: list[float] = []
        facing = self._facing
        for stop in stops:
            tx, ty = zones.random_point(stop, rng)
            t += math.hypot(tx - x, ty - y) / self._speed
            times.append(t)
            xs.append(tx)
            ys.append(ty)
            legs.append(None)
            headings.append(math.atan2(ty - y, tx - x))
            t += rng.uniform(*self._dwell)
            times.append(t)
            xs.append(tx)
            ys.append(ty)
            legs.append(zones.zone_at(tx, ty))
            headings.append(facing.uniform(-math.pi, math.pi))  # facing some shelf
            x, y = tx, ty
        ex, ey = self._entrance
        times.append(t + max(math.hypot(ex - x, ey - y) / self._speed, 1.0))
        xs.append(ex)
        ys.append(ey)
        legs.append(None)
        headings.append(math.atan2(ey - y, ex - x))
        path = WalkPath(tuple(times), tuple(xs), tuple(ys), tuple(legs), tuple(headings))
        return Shopper(shopper_id, platform, tier, key, path, tuple(zones.ids[i] for i in stops))
