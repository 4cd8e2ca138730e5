"""Reference-beacon statistics for the technician's calibration walk (fixed infrastructure).

Only fixed reference beacons are kept here — never a phone: per (beacon, receiver) the RSSI of
the last ``WINDOW_S`` seconds, from which ``report`` gives sightings per second, the median and
interquartile range, the distance the path-loss model estimates, and the configured distance,
flagging beacons that are missing or weak. ``samples`` is the raw beacon series for
``shelfedge calibrate --record`` (the input of the presence-replay tool).
"""

from __future__ import annotations

import math
import statistics
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edge.config.models import AppConfig
from edge.privacy.holders import Holding

WINDOW_S = 120.0
WEAK_DBM = -90.0
MAX_SAMPLES = 2_000  # per beacon and receiver


@dataclass(frozen=True, slots=True)
class BeaconSample:
    """One reference-beacon advertisement as a receiver heard it (infrastructure, not a phone)."""

    ts: float
    beacon: str
    receiver: str
    rssi: int


class BeaconStats:
    """Rolling RSSI per (beacon, receiver); a registered holder (RSSI), bounded by WINDOW_S."""

    holder_name = "presence.beacon_stats"

    def __init__(self, cfg: AppConfig, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._cfg = cfg
        self._mono = monotonic
        self._series: dict[tuple[str, str], deque[tuple[float, float, int]]] = {}

    def add(self, beacon: str, receiver: str, rssi: int, ts: float) -> None:
        """Record one beacon sighting."""
        key = (beacon, receiver)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = deque(maxlen=MAX_SAMPLES)
        series.append((self._mono(), ts, rssi))

    def _recent(self, key: tuple[str, str], seconds: float) -> list[tuple[float, float, int]]:
        cutoff = self._mono() - min(seconds, WINDOW_S)
        series = self._series.get(key, deque())
        while series and series[0][0] < cutoff - WINDOW_S:
            series.popleft()
        return [s for s in series if s[0] >= cutoff]

    def purge(self, mono_now: float) -> None:
        """Drop samples older than the calibration window."""
        cutoff = mono_now - WINDOW_S
        for key in list(self._series):
            series = self._series[key]
            while series and series[0][0] < cutoff:
                series.popleft()
            if not series:
                del self._series[key]

    def forget(self, token: bytes) -> int:
        """Holds no phone data: nothing to forget."""
        return 0

    def held(self, mono_now: float) -> Holding:
        """Beacon samples held and the oldest's age (bounded by the window, not retention)."""
        oldest = min((s[0][0] for s in self._series.values() if s), default=mono_now)
        count = sum(len(s) for s in self._series.values())
        return Holding(count, max(0.0, mono_now - oldest), WINDOW_S)

    def samples(self, seconds: float) -> list[BeaconSample]:
        """Beacon sightings of the last ``seconds`` (for ``--record``)."""
        out = [
            BeaconSample(ts, beacon, receiver, rssi)
            for (beacon, receiver) in self._series
            for _mono, ts, rssi in self._recent((beacon, receiver), seconds)
        ]
        return sorted(out, key=lambda s: s.ts)

    def report(self, seconds: float) -> list[dict[str, Any]]:
        """One row per configured beacon and receiver that heard it (or one 'missing' row)."""
        receivers = {r.id: r for r in self._cfg.store.receivers}
        rows: list[dict[str, Any]] = []
        for beacon in self._cfg.store.beacons:
            heard = [rid for (b, rid) in self._series if b == beacon.id]
            if not heard:
                rows.append({"beacon": beacon.id, "receiver": None, "status": "missing"})
                continue
            for rid in sorted(heard):
                rssi = [s[2] for s in self._recent((beacon.id, rid), seconds)]
                if not rssi:
                    rows.append({"beacon": beacon.id, "receiver": rid, "status": "missing"})
                    continue
                q = statistics.quantiles(rssi, n=4) if len(rssi) >= 2 else [rssi[0]] * 3
                median = statistics.median(rssi)
                est = 10 ** ((beacon.rssi_at_1m - median) / (10 * beacon.path_loss_exponent))
                rec = receivers.get(rid)
                configured = None if rec is None else math.dist(beacon.position, rec.position)
                rows.append(
                    {
                        "beacon": beacon.id,
                        "receiver": rid,
                        "status": "weak" if median < WEAK_DBM else "ok",
                        "per_s": round(len(rssi) / max(1e-9, min(seconds, WINDOW_S)), 2),
                        "rssi_median": round(median, 1),
                        "rssi_iqr": round(q[2] - q[0], 1),
                        "distance_est_m": round(est, 2),
                        "distance_cfg_m": None if configured is None else round(configured, 2),
                    }
                )
        return rows
