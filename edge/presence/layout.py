"""Store geometry the presence and decision stages need: anchors and zone distances."""

from __future__ import annotations

import math
from dataclasses import dataclass

from edge.config.models import AppConfig, Zone

ADJACENT_GAP_M = 1.5


@dataclass(frozen=True, slots=True)
class Anchor:
    """Something with a known place that a phone can be heard near: a beacon or a receiver."""

    id: str
    zone: str
    rssi_at_1m: float
    offset_db: float


def _gap(a: Zone, b: Zone) -> float:
    ax, ay, aw, ad = a.rect
    bx, by, bw, bd = b.rect
    dx = max(bx - (ax + aw), ax - (bx + bw), 0.0)
    dy = max(by - (ay + ad), ay - (by + bd), 0.0)
    return math.hypot(dx, dy)


class StoreLayout:
    """Anchors by id and zone-to-zone distances (0 same, 1 adjacent, 2 further)."""

    def __init__(self, cfg: AppConfig) -> None:
        zone_of_beacon = {b: z.id for z in cfg.store.zones for b in z.beacons}
        anchors: dict[str, Anchor] = {}
        for beacon in cfg.store.beacons:
            zone = zone_of_beacon.get(beacon.id)
            if zone is not None:
                anchors[beacon.id] = Anchor(beacon.id, zone, beacon.rssi_at_1m, 0.0)
        for rec in cfg.store.receivers:
            anchors[rec.id] = Anchor(rec.id, rec.zone, rec.rssi_at_1m, rec.rssi_offset_db)
        self.anchors = anchors
        self.zone_ids = [z.id for z in cfg.store.zones]
        zones = cfg.store.zones
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

    def distance(self, a: str, b: str) -> int:
        """Zone distance 0/1/2 (2 meaning two or more); 2 for unknown zones."""
        return self._distance.get((a, b), 2)
