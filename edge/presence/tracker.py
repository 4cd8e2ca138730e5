"""Per-phone presence: smoothed RSSI per anchor, a forward filter over the zones, dwell.

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
from dataclasses import dataclass

import numpy as np

from edge.config.models import AppConfig
from edge.events import PresenceEvent, PresenceKind, Sighting
from edge.presence.layout import StoreLayout
from edge.presence.zonefilter import FAST_DB, CellFilter
from edge.privacy.holders import Holding

_LOGGER = logging.getLogger(__name__)
PACE_WINDOW_S = 300.0
STEP_S = 1.0  # the forward filter advances on the once-a-second tick
LATE_STEP_S = 2.0  # or when levels have waited this long for a tick


@dataclass(slots=True)
class TokenState:
    """RAW. What the appliance holds about one token right now.

    Per anchor index ``a``: ``acc_sum[a]``/``acc_n[a]``/``acc_t[a]`` the levels heard since
    the filter's last step (sum, packets, latest time; ``acc_t`` -inf when none), and
    ``prev[a]``/``prev_t[a]``/``prev_var[a]`` the level that step used (mean, time, noise
    variance; ``prev_t`` -inf when none). ``post`` is the filter's state (``CellFilter``).
    """

    tier: int
    first_seen: float
    last_seen: float
    acc_sum: list[float]
    acc_n: list[int]
    acc_t: list[float]
    prev: list[float]
    prev_t: list[float]
    prev_var: list[float]
    post: np.ndarray | None = None  # (standing, walking) × cells × headings
    zone_post: np.ndarray | None = None  # the same, summed per zone
    step_ts: float = -math.inf
    pending_ts: float = math.inf  # time of the oldest level not yet stepped
    held_samples: int = 0  # anchors with a level held
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

    def drop_anchor(self, a: int) -> None:
        """Forget everything held for anchor ``a``."""
        if self.acc_t[a] != -math.inf or self.prev_t[a] != -math.inf:
            self.held_samples -= 1
        self.acc_sum[a] = 0.0
        self.acc_n[a] = 0
        self.acc_t[a] = -math.inf
        self.prev[a] = math.nan
        self.prev_t[a] = -math.inf
        self.prev_var[a] = 0.0


@dataclass(frozen=True, slots=True)
class RawRetention:
    """Introspection for tests and ``status``: counts and ages only, no values."""

    tokens: int
    samples: int
    oldest_sample_age_s: float


class PresenceTracker:
    """Turns sightings into zone, dwell and leave events for each live token.

    The method (docs/ARCHITECTURE.md, presence; edge/presence/zonefilter.py): a sighting only
    adds its path-loss normalised level to its anchor's running sum (O(1)). At most once per
    ``STEP_S`` per token (on ``tick`` or when the next second's sightings arrive) a forward
    filter over (standing/walking, floor cell, heading) advances and weighs the mean level of
    every anchor heard since, as an AR(1) innovation against that anchor's previous level: a
    dwell accumulates evidence as fast as the shadowing decorrelates, not per packet. The
    zone changes when another zone's probability beats the current one's by
    ``presence.switch_ratio``.
    """

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
        self._stale = cfg.presence.stale_anchor_s
        self._ttl = cfg.presence.token_ttl_s
        self._retention = cfg.privacy.raw_retention_s
        self._dwell_every = cfg.presence.dwell_update_s
        self._switch_ratio = cfg.presence.switch_ratio
        self._max_tokens = cfg.presence.max_tokens
        self._tokens: dict[bytes, TokenState] = {}
        self._index = self._layout.anchor_index
        self._filter = CellFilter(self._layout)
        layout = self._layout
        self._n_anchors = len(layout.anchor_ids)
        self._norm = [
            -a.rssi_at_1m + a.offset_db for a in (layout.anchors[i] for i in layout.anchor_ids)
        ]
        self._zone_ids = layout.zone_ids
        self._anchor_zone = [layout.anchors[i].zone for i in layout.anchor_ids]
        self.dropped_capacity = 0
        self.dropped_unknown_anchor = 0

    @property
    def layout(self) -> StoreLayout:
        """The store geometry in use."""
        return self._layout

    def sighting(self, s: Sighting) -> None:
        """Fold one sighting into its token's state; may emit ENTER or DWELL."""
        a = self._index.get(s.anchor)
        if a is None:
            self.dropped_unknown_anchor += 1
            return
        st = self._tokens.get(s.token)
        ts = s.ts
        if st is None:
            if len(self._tokens) >= self._max_tokens:
                self.dropped_capacity += 1
                return
            n = self._n_anchors
            st = TokenState(
                tier=s.tier,
                first_seen=ts,
                last_seen=ts,
                acc_sum=[0.0] * n,
                acc_n=[0] * n,
                acc_t=[-math.inf] * n,
                prev=[math.nan] * n,
                prev_t=[-math.inf] * n,
                prev_var=[0.0] * n,
                changes_ts=ts,
            )
            self._tokens[s.token] = st
        elif ts - st.pending_ts >= LATE_STEP_S:
            # No tick has weighed the levels held (a caller that does not tick every
            # second): weigh them before this one joins.
            self._advance(s.token, st, st.last_seen)
        if ts > st.last_seen:
            st.last_seen = ts
        st.last_mono = self._mono()
        if st.acc_t[a] == -math.inf:
            if st.prev_t[a] == -math.inf:
                st.held_samples += 1
            st.acc_t[a] = ts
        elif ts > st.acc_t[a]:
            st.acc_t[a] = ts
        st.acc_sum[a] += s.rssi + self._norm[a]  # path-loss normalised: higher is closer
        st.acc_n[a] += 1
        if ts < st.pending_ts:
            st.pending_ts = ts
        if st.zone is None:
            # One anchor heard says little about where in its range the phone is: until the
            # filter has weighed a step, the phone is in that anchor's zone (as anchors do).
            self._enter(s.token, st, self._anchor_zone[a], ts)

    def _advance(self, token: bytes, st: TokenState, now: float) -> None:
        self._step(st, now)
        self._update_zone(token, st, now)

    def _step(self, st: TokenState, now: float) -> None:
        """One forward-filter step over the levels held since the previous step."""
        st.pending_ts = math.inf
        fresh = [a for a, n in enumerate(st.acc_n) if n]
        if not fresh:
            return
        f = self._filter
        k = len(fresh)
        level = np.empty(k)
        count = np.empty(k)
        previous = np.empty(k)
        gap = np.empty(k)
        pvar = np.empty(k)
        stale = self._stale
        acc_sum, acc_n, acc_t = st.acc_sum, st.acc_n, st.acc_t
        prev, prev_t, prev_var = st.prev, st.prev_t, st.prev_var
        fast2 = FAST_DB * FAST_DB
        for i, a in enumerate(fresh):
            n = acc_n[a]
            y = acc_sum[a] / n
            t = acc_t[a]
            level[i] = y
            count[i] = n
            g = t - prev_t[a]
            if g <= stale:
                gap[i] = max(g, 0.0)
                previous[i] = prev[a]
                pvar[i] = prev_var[a]
            else:
                gap[i] = math.inf
                previous[i] = 0.0
                pvar[i] = 0.0
            prev[a] = y
            prev_t[a] = t
            prev_var[a] = fast2 / n
            acc_sum[a] = 0.0
            acc_n[a] = 0
            acc_t[a] = -math.inf
        anchors = np.array(fresh, dtype=np.intp)
        pred = f.initial() if st.post is None else f.predict(st.post, now - st.step_ts)
        st.post = f.update(pred, anchors, level, count, previous, gap, pvar)
        st.zone_post = f.zone_post(st.post)
        st.step_ts = now

    def _update_zone(self, token: bytes, st: TokenState, now: float) -> None:
        post = st.zone_post
        if post is None:
            return
        best = int(post.argmax())
        zone = self._zone_ids[best]
        if st.zone is None:
            self._enter(token, st, zone, now)
            return
        if zone != st.zone:
            current = post[self._layout.zone_index[st.zone]]
            if post[best] >= self._switch_ratio * current:
                self._enter(token, st, zone, now)
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
        """Step the filters of tokens with levels waiting, purge samples past retention
        and tokens past TTL (emitting LEAVE); return how many tokens were evicted."""
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
            if st.pending_ts <= now:
                self._advance(token, st, st.last_seen)
            if st.held_samples:
                acc_t, prev_t = st.acc_t, st.prev_t
                for a in range(self._n_anchors):
                    last = max(acc_t[a], prev_t[a])
                    if last != -math.inf and last < sample_cutoff:
                        st.drop_anchor(a)
        return evicted

    def forget(self, token: bytes) -> int:
        """Drop everything held for a token at once (``forget``); no LEAVE is emitted."""
        st = self._tokens.pop(token, None)
        return 0 if st is None else 1 + st.held_samples

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
        records = sum(1 + st.held_samples for st in self._tokens.values())
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
            samples += st.held_samples
            for a in range(self._n_anchors):
                last = max(st.acc_t[a], st.prev_t[a])
                if last != -math.inf:
                    oldest = min(oldest, last)
        return RawRetention(len(self._tokens), samples, (now - oldest) if samples else 0.0)
