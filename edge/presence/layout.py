"""Store geometry the presence and decision stages need: anchors, zone distances, fingerprints.

Anchors are everything with a known place that a phone can be heard near: reference beacons
(heard by the phone, app sightings) and store receivers (hearing the phone). Every configured
beacon is an anchor, whether or not a zone lists it: its zone is the listing zone, else the
zone that contains its position, else the nearest zone centre. The zone fingerprints are what
the path-loss model of each anchor predicts over each zone's floor (``ZoneFingerprints``), so
a store needs no survey to start; a calibration walk only checks them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from edge.config.models import AppConfig, Zone

ADJACENT_GAP_M = 1.5
MIN_DISTANCE_M = 0.5  # closer than this a phone is in a hand next to the anchor: same level
GRID = 5  # fingerprint sample points per zone side
ZONE_MARGIN_M = 0.5  # fingerprints also cover half the aisle around a zone


@dataclass(frozen=True, slots=True)
class Anchor:
    """Something with a known place that a phone can be heard near: a beacon or a receiver.

    ``level = rssi - rssi_at_1m + offset_db`` is the anchor's path-loss normalised signal,
    ``-10·exponent·log10(distance)`` on average.
    """

    id: str
    zone: str
    rssi_at_1m: float
    offset_db: float
    x: float = 0.0
    y: float = 0.0
    exponent: float = 2.2


def _gap(a: Zone, b: Zone) -> float:
    ax, ay, aw, ad = a.rect
    bx, by, bw, bd = b.rect
    dx = max(bx - (ax + aw), ax - (bx + bw), 0.0)
    dy = max(by - (ay + ad), ay - (by + bd), 0.0)
    return math.hypot(dx, dy)


def _zone_of_point(zones: list[Zone], x: float, y: float) -> str:
    for z in zones:
        zx, zy, w, d = z.rect
        if zx <= x <= zx + w and zy <= y <= zy + d:
            return z.id
    return min(zones, key=lambda z: math.dist((x, y), z.centre)).id


@dataclass(frozen=True, slots=True)
class ZoneFingerprints:
    """Expected level of every anchor over every zone: mean and spread over the zone floor.

    ``mean[a][z]`` and ``var[a][z]`` for anchor index ``a`` (``StoreLayout.anchor_ids``
    order) and zone index ``z`` (``StoreLayout.zone_ids`` order).
    """

    mean: tuple[tuple[float, ...], ...]
    var: tuple[tuple[float, ...], ...]


def fingerprints(anchors: list[Anchor], zones: list[Zone]) -> ZoneFingerprints:
    """Path-loss prediction of each anchor's level on a grid over each zone (+ margin)."""
    means: list[tuple[float, ...]] = []
    variances: list[tuple[float, ...]] = []
    for a in anchors:
        row_m: list[float] = []
        row_v: list[float] = []
        for z in zones:
            x0, y0, w, d = z.rect
            x0, y0 = x0 - ZONE_MARGIN_M, y0 - ZONE_MARGIN_M
            w, d = w + 2 * ZONE_MARGIN_M, d + 2 * ZONE_MARGIN_M
            levels = [
                -10.0
                * a.exponent
                * math.log10(
                    max(
                        MIN_DISTANCE_M,
                        math.hypot(
                            x0 + w * (i + 0.5) / GRID - a.x, y0 + d * (j + 0.5) / GRID - a.y
                        ),
                    )
                )
                for i in range(GRID)
                for j in range(GRID)
            ]
            m = sum(levels) / len(levels)
            row_m.append(m)
            row_v.append(sum((v - m) ** 2 for v in levels) / len(levels))
        means.append(tuple(row_m))
        variances.append(tuple(row_v))
    return ZoneFingerprints(tuple(means), tuple(variances))


@dataclass(frozen=True, slots=True)
class Cell:
    """A piece of a zone's floor (about ``CELL_M`` square): a state of the presence filter."""

    zone: int
    x: float
    y: float


CELL_M = 2.5


def cells(zones: list[Zone]) -> list[Cell]:
    """Each zone split into a grid of cells no larger than ``CELL_M`` on a side."""
    out: list[Cell] = []
    for zi, z in enumerate(zones):
        x0, y0, w, d = z.rect
        nx = max(1, math.ceil(w / CELL_M))
        ny = max(1, math.ceil(d / CELL_M))
        for i in range(nx):
            for j in range(ny):
                out.append(Cell(zi, x0 + w * (i + 0.5) / nx, y0 + d * (j + 0.5) / ny))
    return out


class StoreLayout:
    """Anchors by id, zone-to-zone distances (0 same, 1 adjacent, 2 further), fingerprints."""

    def __init__(self, cfg: AppConfig) -> None:
        zones = cfg.store.zones
        zone_of_beacon = {b: z.id for z in zones for b in z.beacons}
        anchors: dict[str, Anchor] = {}
        for beacon in cfg.store.beacons:
            x, y = beacon.position
            zone = zone_of_beacon.get(beacon.id) or _zone_of_point(zones, x, y)
            anchors[beacon.id] = Anchor(
                beacon.id, zone, beacon.rssi_at_1m, 0.0, x, y, beacon.path_loss_exponent
            )
        for rec in cfg.store.receivers:
            x, y = rec.position
            anchors[rec.id] = Anchor(
                rec.id, rec.zone, rec.rssi_at_1m, rec.rssi_offset_db, x, y, rec.path_loss_exponent
            )
        self.anchors = anchors
        self.anchor_ids = list(anchors)
        self.anchor_index = {a: i for i, a in enumerate(self.anchor_ids)}
        self.zone_ids = [z.id for z in zones]
        self.zone_index = {z: i for i, z in enumerate(self.zone_ids)}
        self._distance: dict[tuple[str, str], int] = {}
        for a in zones:
            for b in zones:
                if a.id == b.id:
                    d = 0
                elif _gap(a, b) <= ADJACENT_GAP_M:
                    d = 1
                else:
                    d = 2
                self._distance[(a.id, b.id)] = d
        self.neighbours: list[list[int]] = [
            [j for j, b in enumerate(self.zone_ids) if self._distance[(a, b)] == 1]
            for a in self.zone_ids
        ]
        self.fingerprints = fingerprints(list(anchors.values()), list(zones))
        self.cells = cells(list(zones))

    def distance(self, a: str, b: str) -> int:
        """Zone distance 0/1/2 (2 meaning two or more); 2 for unknown zones."""
        return self._distance.get((a, b), 2)
