"""Floor-plan geometry of the simulated store: zone lookup and time-stamped walking paths.

Owns the ground-truth rule (a position's zone is the first zone whose rectangle contains it,
else the zone with the nearest centre, as in an aisle between shelves) and ``WalkPath``, a
shopper's route as piecewise-linear waypoints with times, whose position and true zone at any
moment are a bisection plus one interpolation away.
"""

from __future__ import annotations

import math
import random
from bisect import bisect_right
from dataclasses import dataclass

from edge.config.models import Store

Point = tuple[float, float]


@dataclass(frozen=True, slots=True)
class ZoneMap:
    """Zone rectangles (as x0, y0, x1, y1) and centres, in config order."""

    ids: tuple[str, ...]
    boxes: tuple[tuple[float, float, float, float], ...]
    centres: tuple[Point, ...]

    @classmethod
    def from_store(cls, store: Store) -> ZoneMap:
        """Build from the config's store layout."""
        return cls(
            ids=tuple(z.id for z in store.zones),
            boxes=tuple((x, y, x + w, y + d) for x, y, w, d in (z.rect for z in store.zones)),
            centres=tuple(z.centre for z in store.zones),
        )

    def index(self, zone_id: str) -> int:
        """Position of a zone id in config order (ValueError if unknown)."""
        return self.ids.index(zone_id)

    def containing(self, x: float, y: float) -> str | None:
        """The first zone whose rectangle contains the point, or None."""
        for zid, (x0, y0, x1, y1) in zip(self.ids, self.boxes, strict=True):
            if x0 <= x <= x1 and y0 <= y <= y1:
                return zid
        return None

    def zone_at(self, x: float, y: float) -> str:
        """Ground-truth zone of a point inside the store: containing zone, else nearest centre."""
        zid = self.containing(x, y)
        if zid is not None:
            return zid
        best = self.ids[0]
        best_d2 = math.inf
        for cid, (cx, cy) in zip(self.ids, self.centres, strict=True):
            d2 = (x - cx) ** 2 + (y - cy) ** 2
            if d2 < best_d2:
                best, best_d2 = cid, d2
        return best

    def random_point(self, index: int, rng: random.Random, inset: float = 0.15) -> Point:
        """A uniform random point inside a zone, kept ``inset`` of its size off the edges."""
        x0, y0, x1, y1 = self.boxes[index]
        w, d = x1 - x0, y1 - y0
        return (
            x0 + w * (inset + (1.0 - 2.0 * inset) * rng.random()),
            y0 + d * (inset + (1.0 - 2.0 * inset) * rng.random()),
        )


@dataclass(frozen=True, slots=True)
class WalkPath:
    """A route as waypoints ``(times[i], xs[i], ys[i])``; straight lines between them.

    ``leg_zones[i]`` is the zone of leg i (waypoint i to i+1) when it is constant (a dwell at
    one point), or None for a walking leg whose zone is looked up from the position.
    ``headings[i]`` is where the shopper faces on leg i: the walking direction, or a facing
    drawn for a dwell (for the simulator's body shadowing).
    """

    times: tuple[float, ...]
    xs: tuple[float, ...]
    ys: tuple[float, ...]
    leg_zones: tuple[str | None, ...]
    headings: tuple[float, ...] = ()  # per leg: walking direction, or the facing in a dwell

    @property
    def start(self) -> float:
        """When the path begins (the shopper enters the store)."""
        return self.times[0]

    @property
    def end(self) -> float:
        """When the path ends (the shopper leaves)."""
        return self.times[-1]

    def _leg(self, t: float) -> int:
        return min(bisect_right(self.times, t) - 1, len(self.times) - 2)

    def position(self, t: float) -> Point | None:
        """Where the shopper is at ``t``; None before entering or after leaving."""
        times = self.times
        if t < times[0] or t > times[-1]:
            return None
        i = self._leg(t)
        t0, t1 = times[i], times[i + 1]
        if t1 <= t0:
            return (self.xs[i + 1], self.ys[i + 1])
        f = (t - t0) / (t1 - t0)
        x0, y0 = self.xs[i], self.ys[i]
        return (x0 + f * (self.xs[i + 1] - x0), y0 + f * (self.ys[i + 1] - y0))

    def heading(self, t: float) -> float | None:
        """Which way the shopper faces at ``t`` (radians, x axis = 0); None if unknown."""
        if not self.headings or t < self.times[0] or t > self.times[-1]:
            return None
        return self.headings[self._leg(t)]

    def zone(self, t: float, zones: ZoneMap) -> str | None:
        """Ground-truth zone at ``t``; None before entering or after leaving."""
        times = self.times
        if t < times[0] or t > times[-1]:
            return None
        fixed = self.leg_zones[self._leg(t)]
        if fixed is not None:
            return fixed
        pos = self.position(t)
        return None if pos is None else zones.zone_at(*pos)

    def dwells(self) -> list[tuple[float, float, str]]:
        """The ``(start, end, zone)`` of every dwell leg, in order."""
        return [
            (self.times[i], self.times[i + 1], z)
            for i, z in enumerate(self.leg_zones)
            if z is not None
        ]
