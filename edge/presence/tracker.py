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
from edge.privacy.holders import Holding

_LOGGER = logging.getLogger(__name__)
PACE_WINDOW_S = 300.0
STEP_S = 1.0  # the forward filter advances at most once a second per token
CLIP_UP_DB = 10.0  # a sample raises its anchor's smoothed level by at most alpha × this
CLIP_DOWN_DB = 10.0  # and lowers it by at most alpha × this
OBS_SIGMA_DB = 5.0  # level noise left after smoothing + path-loss model error
OFFSET_RATIO = (5.0 / 4.0) ** 2  # obs variance / prior variance of a phone's gain offset
HEADINGS = 4  # which way the shopper faces: summed out over this many directions
BODY_DB = 8.0  # body loss straight behind the shopper (the simulator's literature value)
NEIGHBOUR_M = 3.2  # cells this close are one step apart
TEMPER = 0.35  # evidence weight per step: shadowing is correlated over seconds
STILL_S = 60.0  # mean time a shopper stands before walking on
WALK_S = 10.0  # mean time a shopper walks before stopping
STILL_HOP_S = 30.0  # standing: mean time before drifting to a neighbouring cell
WALK_HOP_S = 2.0  # walking (1 m/s over 2.5 m cells): mean time per cell
FAR_MOVE = 1e-4  # per second and state: a jump (a missed stretch of the walk)
SWITCH_RATIO = 2.0  # a zone takes over when it is this many times likelier than the current


class _CellModel:
    """Fixed arrays of the forward filter: per anchor, cell and heading the expected level."""

    def __init__(self, layout: StoreLayout) -> None:
        anchors = [layout.anchors[a] for a in layout.anchor_ids]
        cells = layout.cells
        ax = np.array([a.x for a in anchors])[:, None]
        ay = np.array([a.y for a in anchors])[:, None]
        n = np.array([a.exponent for a in anchors])[:, None]
        cx = np.array([c.x for c in cells])[None, :]
        cy = np.array([c.y for c in cells])[None, :]
        d = np.hypot(ax - cx, ay - cy)
        mean = -10.0 * n * np.log10(np.maximum(d, 0.5))  # (anchors, cells)
        toward = np.arctan2(ay - cy, ax - cx)  # direction from the cell to the anchor
        heads = np.arange(HEADINGS) * (2.0 * math.pi / HEADINGS)
        body = 0.5 * BODY_DB * (1.0 - np.cos(toward[:, :, None] - heads[None, None, :]))
        self.mean = mean[:, :, None] - body  # (anchors, cells, headings)
        self.cell_zone = np.array([c.zone for c in cells], dtype=np.intp)
        cd = np.hypot(cx.T - cx, cy.T - cy)
        near = ((cd > 0) & (cd <= NEIGHBOUR_M)).astype(float)
        near /= np.maximum(near.sum(axis=1, keepdims=True), 1.0)
        self.neighbours_t = np.ascontiguousarray(near.T)

    def likelihood(self, fresh: np.ndarray, levels: np.ndarray) -> np.ndarray:
        """Tempered likelihood per cell of the fresh anchors' levels (max-normalised).

        Per cell and heading, a common gain offset is fitted in closed form (a Gaussian
        prior on it), the headings are summed out, and the result is raised to ``TEMPER``.
        """
        r = levels[:, None, None] - self.mean[fresh]
        k = r.shape[0]
        s1 = r.sum(axis=0)
        sse = (r * r).sum(axis=0) - s1 * s1 / (k + OFFSET_RATIO)
        ll = sse * (-0.5 / OBS_SIGMA_DB**2)
        top = ll.max(axis=1)
        ll_cell = top + np.log(np.exp(ll - top[:, None]).sum(axis=1))
        like: np.ndarray = np.exp(TEMPER * (ll_cell - ll_cell.max()))
        return like


@dataclass(slots=True)
class TokenState:
    """RAW. What the appliance holds about one token right now.

    ``levels[a]``/``seen[a]`` are the smoothed level and last sighting time of anchor index
    ``a`` (NaN/-inf when none is held); ``post`` the zone probabilities of the forward filter.
    """

    tier: int
    first_seen: float
    last_seen: float
    levels: list[float]
    seen: list[float]
    post: np.ndarray | None = None  # (standing, walking) × the layout's cells
    zone_post: np.ndarray | None = None  # the same, summed per zone
    step_ts: float = -math.inf
    held_samples: int = 0
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
    """Turns sightings into zone, dwell and leave events for each live token.

    The method (docs/ARCHITECTURE.md, presence): each anchor's level is smoothed with an
    outlier-clipped exponential average; at most every ``STEP_S`` a forward (HMM) filter over
    the zones advances: a transition over the zone adjacency graph, then the likelihood of
    all fresh anchor levels against every zone's fingerprint (``StoreLayout.fingerprints``,
    the path-loss prediction over the zone floor), with a common offset per phone estimated
    in closed form (phones differ in gain) and tempered because shadowing is correlated over
    seconds. The zone changes when another zone's probability beats the current one's by
    ``SWITCH_RATIO``.
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
        self._alpha = cfg.presence.smoothing_alpha
        self._stale = cfg.presence.stale_anchor_s
        self._ttl = cfg.presence.token_ttl_s
        self._retention = cfg.privacy.raw_retention_s
        self._dwell_every = cfg.presence.dwell_update_s
        self._max_tokens = cfg.presence.max_tokens
        self._tokens: dict[bytes, TokenState] = {}
        self._index = self._layout.anchor_index
        self._model = _CellModel(self._layout)
        layout = self._layout
        self._n_anchors = len(layout.anchor_ids)
        self._n_zones = len(layout.zone_ids)
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
        if st is None:
            if len(self._tokens) >= self._max_tokens:
                self.dropped_capacity += 1
                return
            n = self._n_anchors
            st = TokenState(
                tier=s.tier,
                first_seen=s.ts,
                last_seen=s.ts,
                levels=[math.nan] * n,
                seen=[-math.inf] * n,
                changes_ts=s.ts,
            )
            self._tokens[s.token] = st
        ts = s.ts
        if ts > st.last_seen:
            st.last_seen = ts
        st.last_mono = self._mono()
        # Path-loss normalised signal: higher means closer, comparable across anchors.
        level = s.rssi + self._norm[a]
        last = st.seen[a]
        if last == -math.inf:
            st.held_samples += 1
            st.levels[a] = level
            st.seen[a] = ts
        elif ts - last > self._stale:
            st.levels[a] = level
            st.seen[a] = ts
        else:
            old = st.levels[a]
            step = level - old
            if step > CLIP_UP_DB:
                step = CLIP_UP_DB
            elif step < -CLIP_DOWN_DB:
                step = -CLIP_DOWN_DB
            st.levels[a] = old + self._alpha * step
            if ts > last:
                st.seen[a] = ts
        if st.zone is None and st.held_samples == 1:
            # One anchor heard says little about where in its range the phone is: until a
            # second one is heard, the phone is in that anchor's zone (as the anchors do).
            self._step(st, ts)
            self._enter(s.token, st, self._anchor_zone[a], ts)
        elif ts - st.step_ts >= STEP_S:
            self._step(st, ts)
            self._update_zone(s.token, st, ts)

    def _step(self, st: TokenState, now: float) -> None:
        """One forward-filter step: transition over the cell graph, then the evidence."""
        seen = np.array(st.seen)
        fresh = np.flatnonzero(seen >= now - self._stale)
        if not fresh.size:
            return
        m = self._model
        like = m.likelihood(fresh, np.array(st.levels)[fresh])
        post = st.post
        if post is None:
            new = np.stack((like, like))
        else:
            dt = min(max(now - st.step_ts, 0.0), 30.0)
            start = 1.0 - math.exp(-dt / STILL_S)  # still → walking
            stop = 1.0 - math.exp(-dt / WALK_S)  # walking → still
            still = (1.0 - start) * post[0] + stop * post[1]
            walk = start * post[0] + (1.0 - stop) * post[1]
            hop_s = 1.0 - math.exp(-dt / STILL_HOP_S)
            hop_w = 1.0 - math.exp(-dt / WALK_HOP_S)
            nbt = m.neighbours_t
            still = (1.0 - hop_s) * still + hop_s * (nbt @ still)
            walk = (1.0 - hop_w) * walk + hop_w * (nbt @ walk)
            new = np.stack((still, walk)) * like + FAR_MOVE * dt
        total = float(new.sum())
        st.post = new / total if total > 0 else np.stack((like, like)) / (2.0 * float(like.sum()))
        st.zone_post = np.bincount(
            m.cell_zone, weights=st.post.sum(axis=0), minlength=self._n_zones
        )
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
            if post[best] >= SWITCH_RATIO * current:
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
            if st.held_samples:
                seen, levels = st.seen, st.levels
                for a, last in enumerate(seen):
                    if last != -math.inf and last < sample_cutoff:
                        seen[a] = -math.inf
                        levels[a] = math.nan
                        st.held_samples -= 1
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
            for last in st.seen:
                if last != -math.inf:
                    oldest = min(oldest, last)
        return RawRetention(len(self._tokens), samples, (now - oldest) if samples else 0.0)
