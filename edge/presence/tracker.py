"""Per-phone presence: smoothed RSSI per anchor, zone with hysteresis, visits, dwell.

Everything here is a raw signal held in RAM only. A token's state lives while the phone is
heard and is dropped ``presence.token_ttl_s`` after its last sighting (≤ the raw retention);
per-anchor samples older than ``privacy.raw_retention_s`` are purged on every tick. Retention
is also enforced on the monotonic clock (``purge``), so a wall-clock step backwards cannot
keep a token alive. No zone path is kept: pace is a decaying count of zone changes, not a
list of their times.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from edge.config.models import AppConfig
from edge.events import PresenceEvent, PresenceKind, Sighting
from edge.presence.layout import StoreLayout
from edge.privacy.holders import Holding

_LOGGER = logging.getLogger(__name__)
PACE_WINDOW_S = 300.0


@dataclass(slots=True)
class _AnchorSample:
    smoothed: float
    last_ts: float


@dataclass(slots=True)
class TokenState:
    """RAW. What the appliance holds about one token right now."""

    tier: int
    first_seen: float
    last_seen: float
    anchors: dict[str, _AnchorSample] = field(default_factory=dict)
    zone: str | None = None
    previous_zone: str | None = None
    zone_since: float = 0.0
    last_dwell_emit: float = 0.0
    changes: float = 0.0  # zone changes, decaying with PACE_WINDOW_S (no path is kept)
    changes_ts: float = 0.0
    last_mono: float = 0.0  # monotonic time of the last sighting (retention)

    def pace_changes(self, now: float) -> float:
        """Zone changes over roughly the last ``PACE_WINDOW_S`` (exponentially decayed)."""
        return self.changes * math.exp(-max(0.0, now - self.changes_ts) / PACE_WINDOW_S)


@dataclass(frozen=True, slots=True)
class RawRetention:
    """Introspection for tests and ``status``: counts and ages only, no values."""

    tokens: int
    samples: int
    oldest_sample_age_s: float


class PresenceTracker:
    """Turns sightings into zone, dwell and leave events for each live token."""

    holder_name = "presence.tracker"

    def __init__(
        self,
        cfg: AppConfig,
        emit: Callable[[PresenceEvent], None],
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._mono = monotonic
        self._layout = StoreLayout(cfg)
        self._emit = emit
        self._alpha = cfg.presence.smoothing_alpha
        self._hysteresis = cfg.presence.hysteresis_db
        self._stale = cfg.presence.stale_anchor_s
        self._ttl = cfg.presence.token_ttl_s
        self._retention = cfg.privacy.raw_retention_s
        self._dwell_every = cfg.presence.dwell_update_s
        self._max_tokens = cfg.presence.max_tokens
        self._tokens: dict[bytes, TokenState] = {}
        self.dropped_capacity = 0
        self.dropped_unknown_anchor = 0

    @property
    def layout(self) -> StoreLayout:
        """The store geometry in use."""
        return self._layout

    def sighting(self, s: Sighting) -> None:
        """Fold one sighting into its token's state; may emit ENTER or DWELL."""
        anchor = self._layout.anchors.get(s.anchor)
        if anchor is None:
            self.dropped_unknown_anchor += 1
            return
        st = self._tokens.get(s.token)
        if st is None:
            if len(self._tokens) >= self._max_tokens:
                self.dropped_capacity += 1
                return
            st = TokenState(tier=s.tier, first_seen=s.ts, last_seen=s.ts, changes_ts=s.ts)
            self._tokens[s.token] = st
        if s.ts > st.last_seen:
            st.last_seen = s.ts
        st.last_mono = self._mono()
        # Path-loss normalised signal: higher means closer, comparable across anchors.
        level = s.rssi - anchor.rssi_at_1m + anchor.offset_db
        sample = st.anchors.get(s.anchor)
        if sample is None or s.ts - sample.last_ts > self._stale:
            st.anchors[s.anchor] = _AnchorSample(level, s.ts)
        else:
            sample.smoothed += self._alpha * (level - sample.smoothed)
            sample.last_ts = max(sample.last_ts, s.ts)
        self._update_zone(s.token, st, s.ts)

    def _best_zone(self, st: TokenState, now: float) -> tuple[str | None, dict[str, float]]:
        per_zone: dict[str, float] = {}
        anchors = self._layout.anchors
        for anchor_id, sample in st.anchors.items():
            if now - sample.last_ts > self._stale:
                continue
            zone = anchors[anchor_id].zone
            if sample.smoothed > per_zone.get(zone, -1e9):
                per_zone[zone] = sample.smoothed
        if not per_zone:
            return None, per_zone
        return max(per_zone, key=per_zone.__getitem__), per_zone

    def _update_zone(self, token: bytes, st: TokenState, now: float) -> None:
        best, levels = self._best_zone(st, now)
        if best is None:
            return
        if st.zone is None:
            self._enter(token, st, best, now)
            return
        if best != st.zone:
            current = levels.get(st.zone)
            if current is None or levels[best] >= current + self._hysteresis:
                self._enter(token, st, best, now)
                return
        if now - st.last_dwell_emit >= self._dwell_every:
            st.last_dwell_emit = now
            self._emit(self._event(PresenceKind.DWELL, token, st, now))

    def _enter(self, token: bytes, st: TokenState, zone: str, now: float) -> None:
        previous_dwell = now - st.zone_since if st.zone is not None else 0.0
        st.previous_zone = st.zone
        st.zone = zone
        st.zone_since = now
        st.last_dwell_emit = now
        if st.previous_zone is not None:
            st.changes = st.pace_changes(now) + 1.0
            st.changes_ts = now
        self._emit(self._event(PresenceKind.ENTER, token, st, now, previous_dwell))

    def _event(
        self,
        kind: PresenceKind,
        token: bytes,
        st: TokenState,
        now: float,
        previous_dwell: float = 0.0,
    ) -> PresenceEvent:
        minutes = max(min(now - st.first_seen, PACE_WINDOW_S), 60.0) / 60.0
        return PresenceEvent(
            kind=kind,
            token=token,
            tier=st.tier,
            zone=st.zone or "",
            previous_zone=st.previous_zone,
            dwell_s=now - st.zone_since,
            pace_per_min=st.pace_changes(now) / minutes,
            ts=now,
            previous_dwell_s=previous_dwell,
        )

    def tick(self, now: float) -> int:
        """Purge samples past retention and tokens past TTL (emitting LEAVE); return evicted."""
        evicted = 0
        sample_cutoff = now - self._retention
        token_cutoff = now - self._ttl
        for token in list(self._tokens):
            st = self._tokens[token]
            if st.last_seen < token_cutoff:
                del self._tokens[token]
                evicted += 1
                if st.zone is not None:
                    self._emit(self._event(PresenceKind.LEAVE, token, st, st.last_seen))
                continue
            stale = [a for a, smp in st.anchors.items() if smp.last_ts < sample_cutoff]
            for a in stale:
                del st.anchors[a]
        return evicted

    def forget(self, token: bytes) -> int:
        """Drop everything held for a token at once (``forget``); no LEAVE is emitted."""
        st = self._tokens.pop(token, None)
        return 0 if st is None else 1 + len(st.anchors)

    def purge(self, mono_now: float) -> None:
        """Evict tokens not heard for the raw retention on the monotonic clock (emits LEAVE)."""
        cutoff = mono_now - self._retention
        for token in [t for t, st in self._tokens.items() if st.last_mono < cutoff]:
            st = self._tokens.pop(token)
            if st.zone is not None:
                self._emit(self._event(PresenceKind.LEAVE, token, st, st.last_seen))

    def held(self, mono_now: float) -> Holding:
        """Tokens and anchor samples held, and how long ago the stalest token was heard."""
        if not self._tokens:
            return Holding(0, 0.0)
        records = sum(1 + len(st.anchors) for st in self._tokens.values())
        oldest = min(st.last_mono for st in self._tokens.values())
        return Holding(records, max(0.0, mono_now - oldest))

    def is_live(self, token: bytes) -> bool:
        """True while the token has state here."""
        return token in self._tokens

    def clear(self) -> None:
        """Drop all raw state (shutdown)."""
        self._tokens.clear()

    def zone_of(self, token: bytes) -> str | None:
        """Current zone of a live token (evaluation and the data-access answer only)."""
        st = self._tokens.get(token)
        return None if st is None else st.zone

    def live_tokens(self) -> Iterator[bytes]:
        """Iterate over live tokens (RAM only; for evaluation against simulator truth)."""
        return iter(list(self._tokens))

    def zone_counts(self) -> dict[str, int]:
        """Current opted-in phones per zone (safe for ``status``: counts only)."""
        counts: dict[str, int] = {}
        for st in self._tokens.values():
            if st.zone is not None:
                counts[st.zone] = counts.get(st.zone, 0) + 1
        return counts

    def retention(self, now: float) -> RawRetention:
        """How much raw state is held and the age of the oldest sample."""
        samples = 0
        oldest = now
        for st in self._tokens.values():
            samples += len(st.anchors)
            for smp in st.anchors.values():
                oldest = min(oldest, smp.last_ts)
        return RawRetention(len(self._tokens), samples, (now - oldest) if samples else 0.0)
