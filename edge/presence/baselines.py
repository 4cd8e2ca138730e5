"""The anchor systems' zone methods, reimplemented from their documentation, for benchmarks.

Not used by the daemon: ``scripts/bench_presence.py`` runs these beside ``PresenceTracker``
on the same simulated sightings (docs/PERFORMANCE.md, presence table). Each takes the same
``Sighting`` stream and the same calibration (``StoreLayout`` anchors: ``rssi_at_1m``,
offset, path-loss exponent) as the ShelfEdge tracker, so the comparison is of methods, not
of calibration. Distances follow the log-distance model the systems use,
``d = 10^((rssi@1m - rssi) / (10·n))``. They hold RSSI per token, so each is a raw holder
like the tracker (``purge``/``forget``/``held``), although only benchmarks create them.

- ``ESPresenseZones``: per node, the median of the last ``WINDOW_S`` (15 s, at most 200
  readings) after dropping readings beyond 1.5 × IQR; a node re-reports only after moving
  0.5 m or 5 s; the room is the nearest reporting node (reports older than 5 s ignored),
  and changes only when the challenger is ``HYSTERESIS_M`` (1 m) nearer than the incumbent.
- ``BermudaZones``: per scanner, a 20-sample moving average of distance that takes a
  closer reading at once and lets a reading recede at most 3 m/s; a scanner silent for
  30 s is unknown; the area changes when the challenger is 30 % closer, or 15 % closer with
  the worst of its last 5 readings beating the incumbent's best.
- ``RoomAssistantZones``: a 1-D Kalman filter on RSSI (process noise 0.0008, measurement
  noise 4), distance from the filtered RSSI, and the nearest node heard within 60 s wins,
  without hysteresis.
"""

from __future__ import annotations

import math
import statistics
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from edge.config.models import AppConfig
from edge.events import Sighting
from edge.presence.layout import Anchor, StoreLayout
from edge.privacy.holders import Holding


def distance_m(anchor: Anchor, rssi: float) -> float:
    """Log-distance estimate from one anchor's calibration."""
    level = rssi - anchor.rssi_at_1m + anchor.offset_db
    return float(10.0 ** (-level / (10.0 * anchor.exponent)))


@dataclass(slots=True)
class _Token:
    """RAW. One token's per-anchor state in a baseline method."""

    anchors: dict[str, object] = field(default_factory=dict)
    zone: str | None = None
    anchor: str | None = None  # the incumbent anchor (room/area)
    last_ts: float = 0.0
    last_mono: float = 0.0


class _Baseline:
    """Common token bookkeeping, retention and the raw-holder methods."""

    holder_name = "presence.baseline"
    forget_after_s = 150.0

    def __init__(self, cfg: AppConfig, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.layout = StoreLayout(cfg)
        self._mono = monotonic
        self._retention = cfg.privacy.raw_retention_s
        self._tokens: dict[bytes, _Token] = {}

    def sighting(self, s: Sighting) -> None:
        """Fold one sighting in and update the token's zone."""
        anchor = self.layout.anchors.get(s.anchor)
        if anchor is None:
            return
        tok = self._tokens.get(s.token)
        if tok is None:
            tok = self._tokens[s.token] = _Token()
        tok.last_ts = max(tok.last_ts, s.ts)
        tok.last_mono = self._mono()
        self._observe(tok, anchor, s.rssi, s.ts)
        best = self._choose(tok, s.ts)
        if best is not None:
            tok.anchor = best
            tok.zone = self.layout.anchors[best].zone

    def _observe(self, tok: _Token, anchor: Anchor, rssi: int, ts: float) -> None:
        raise NotImplementedError

    def _choose(self, tok: _Token, now: float) -> str | None:
        raise NotImplementedError

    def zone_of(self, token: bytes) -> str | None:
        """The method's current zone for a token."""
        tok = self._tokens.get(token)
        return None if tok is None else tok.zone

    def tick(self, now: float) -> None:
        """Forget tokens not heard for ``forget_after_s`` or the raw retention, if shorter."""
        cutoff = now - min(self.forget_after_s, self._retention)
        for token in [t for t, tok in self._tokens.items() if tok.last_ts < cutoff]:
            del self._tokens[token]

    def purge(self, mono_now: float) -> None:
        """Drop tokens not heard for the raw retention (monotonic clock)."""
        cutoff = mono_now - self._retention
        for token in [t for t, tok in self._tokens.items() if tok.last_mono < cutoff]:
            del self._tokens[token]

    def forget(self, token: bytes) -> int:
        """Drop one token at once."""
        tok = self._tokens.pop(token, None)
        return 0 if tok is None else 1 + len(tok.anchors)

    def held(self, mono_now: float) -> Holding:
        """Tokens and per-anchor states held, and the stalest token's age."""
        if not self._tokens:
            return Holding(0, 0.0)
        records = sum(1 + len(t.anchors) for t in self._tokens.values())
        oldest = min(t.last_mono for t in self._tokens.values())
        return Holding(records, max(0.0, mono_now - oldest))


@dataclass(slots=True)
class _Windowed:
    readings: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=200))
    reported: float = math.inf
    reported_ts: float = -math.inf


class ESPresenseZones(_Baseline):
    """ESPresense: windowed median with IQR rejection, throttled reports, nearest node."""

    holder_name = "presence.baseline.espresense"
    WINDOW_S = 15.0
    REPORT_DELTA_M = 0.5
    REPORT_EVERY_S = 5.0
    REPORT_TIMEOUT_S = 5.0
    HYSTERESIS_M = 1.0

    def _observe(self, tok: _Token, anchor: Anchor, rssi: int, ts: float) -> None:
        st = tok.anchors.get(anchor.id)
        if not isinstance(st, _Windowed):
            st = _Windowed()
            tok.anchors[anchor.id] = st
        st.readings.append((ts, rssi))
        while st.readings and st.readings[0][0] < ts - self.WINDOW_S:
            st.readings.popleft()
        values = [r for _, r in st.readings]
        if len(values) >= 4:
            q1, _, q3 = statistics.quantiles(values, n=4)
            iqr = q3 - q1
            kept = [v for v in values if q1 - 1.5 * iqr <= v <= q3 + 1.5 * iqr] or values
        else:
            kept = values
        d = distance_m(anchor, statistics.median(kept))
        moved = abs(d - st.reported) >= self.REPORT_DELTA_M
        if moved or ts - st.reported_ts >= self.REPORT_EVERY_S:
            st.reported = d
            st.reported_ts = ts

    def _choose(self, tok: _Token, now: float) -> str | None:
        live = {
            a: st.reported
            for a, st in tok.anchors.items()
            if isinstance(st, _Windowed) and now - st.reported_ts <= self.REPORT_TIMEOUT_S
        }
        if not live:
            return tok.anchor
        best = min(live, key=live.__getitem__)
        inc = tok.anchor
        if inc is None or inc not in live:
            return best
        return best if live[best] < live[inc] - self.HYSTERESIS_M else inc


@dataclass(slots=True)
class _Bermuda:
    history: deque[float] = field(default_factory=lambda: deque(maxlen=20))
    raw: deque[float] = field(default_factory=lambda: deque(maxlen=5))
    smoothed: float = math.inf
    last_ts: float = -math.inf


class BermudaZones(_Baseline):
    """Bermuda: closer-biased moving average, retreat limit, 30 % / 15 % area hysteresis."""

    holder_name = "presence.baseline.bermuda"
    MAX_RETREAT_MPS = 3.0
    SILENT_S = 30.0

    def _observe(self, tok: _Token, anchor: Anchor, rssi: int, ts: float) -> None:
        st = tok.anchors.get(anchor.id)
        if not isinstance(st, _Bermuda) or ts - st.last_ts > self.SILENT_S:
            st = _Bermuda()
            tok.anchors[anchor.id] = st
        d = distance_m(anchor, rssi)
        if st.raw:
            limit = st.raw[-1] + self.MAX_RETREAT_MPS * max(ts - st.last_ts, 0.0)
            d = min(d, limit)
        st.raw.append(d)
        st.history.append(d)
        mean = sum(st.history) / len(st.history)
        st.smoothed = d if d < mean else mean
        st.last_ts = ts

    def _choose(self, tok: _Token, now: float) -> str | None:
        live = {
            a: st
            for a, st in tok.anchors.items()
            if isinstance(st, _Bermuda) and now - st.last_ts <= self.SILENT_S
        }
        if not live:
            return None
        best = min(live, key=lambda a: live[a].smoothed)
        inc = tok.anchor
        if inc is None or inc not in live or best == inc:
            return best
        c, i = live[best], live[inc]
        if c.smoothed <= 0.7 * i.smoothed:
            return best
        if c.smoothed <= 0.85 * i.smoothed and max(c.raw) < min(i.raw):
            return best
        return inc


@dataclass(slots=True)
class _Kalman:
    x: float
    p: float
    last_ts: float


class RoomAssistantZones(_Baseline):
    """room-assistant: Kalman-filtered RSSI per node, nearest node within 60 s, no hysteresis."""

    holder_name = "presence.baseline.room_assistant"
    Q = 0.0008
    R = 4.0
    TIMEOUT_S = 60.0

    def _observe(self, tok: _Token, anchor: Anchor, rssi: int, ts: float) -> None:
        st = tok.anchors.get(anchor.id)
        if not isinstance(st, _Kalman):
            tok.anchors[anchor.id] = _Kalman(float(rssi), self.R, ts)
            return
        p = st.p + self.Q
        k = p / (p + self.R)
        st.x += k * (rssi - st.x)
        st.p = (1.0 - k) * p
        st.last_ts = ts

    def _choose(self, tok: _Token, now: float) -> str | None:
        best: str | None = None
        best_d = math.inf
        anchors = self.layout.anchors
        for a, st in tok.anchors.items():
            if isinstance(st, _Kalman) and now - st.last_ts <= self.TIMEOUT_S:
                d = distance_m(anchors[a], st.x)
                if d < best_d:
                    best, best_d = a, d
        return best


BASELINES: dict[str, type[_Baseline]] = {
    "ESPresense": ESPresenseZones,
    "Bermuda": BermudaZones,
    "room-assistant": RoomAssistantZones,
}
