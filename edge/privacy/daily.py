"""The day release: named statistics over a site-local trading day, one ε budget per day.

The device counts during the counting hours of each site-local day (``privacy.day_hours``,
e.g. 08-20) and publishes once when they end (``release: day``, edge/contract/aggregate.py).
Counting is per token, as in the window release, with per-token caps per statistic; the
per-token bookkeeping is keyed by ``HMAC-SHA256(salt, token)[:16]`` and lives for one token
lifetime (``token_rotation_s`` + the sighting slack), never for the day. A person shows at most
``N(L) = ceil((L + slack) / token_rotation_s) + 1`` tokens in a stretch of ``L`` seconds (they
are unlinkable), so one person's L1 contribution to statistic ``s`` is ``N(L)·cap_s`` and its
noise scale is ``N(L)·cap_s / (share_s·ε)``. Everything is exact (``Fraction``).

A stop publishes the part of the day counted so far (``partial``) with an ε in proportion to
its token bound, leaving the rest for the remainder of the day; the ε ledger records each
segment and refuses one that would pass ``epsilon_per_day``. Why this design and its numbers:
docs/PRIVACY.md ("Release design").
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import math
import secrets
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any
from zoneinfo import ZoneInfo

from edge.config.models import AppConfig
from edge.events import AggregateWindow, PresenceEvent, PresenceKind
from edge.privacy.aggregates import DWELL_LABELS, dwell_bucket
from edge.privacy.budget import PrivacyFigures, exact
from edge.privacy.holders import Holding
from edge.privacy.ledger import EpsilonLedger
from edge.privacy.noise import DiscreteLaplace

STATS: tuple[str, ...] = ("footfall", "dwell", "transitions", "arrivals", "offers", "holdout")
STORE_WIDE = "*"
# Seconds by which a token's events can stray outside its use: app sightings are accepted
# stamped up to ``raw_retention_s`` in the past and 5 s in the future (edge/radio/ingest.py).
FUTURE_SLACK_S = 5.0
# A footfall visit is a stay of at least this long in a zone (a stop, not a walk through it).
VISIT_MIN_S = 30.0


@dataclass(frozen=True, slots=True)
class DayDesign:
    """ε share and per-token cap of each statistic (share 0 = not published).

    ``offers`` takes its cap from ``policy.max_offers_per_visit``. Chosen by measurement
    (scripts/utility_eval.py --compare; docs/PRIVACY.md).
    """

    shares: Mapping[str, Fraction]
    caps: Mapping[str, int]

    def __post_init__(self) -> None:
        if any(s < 0 for s in self.shares.values()) or sum(self.shares.values()) > 1:
            raise ValueError("ε shares must be ≥ 0 and sum to at most 1")
        unknown = set(self.shares) - set(STATS)
        if unknown:
            raise ValueError(f"unknown statistics {sorted(unknown)}")

    def published(self) -> list[str]:
        """Statistics with a share of the budget, in ``STATS`` order."""
        return [s for s in STATS if self.shares.get(s, Fraction(0)) > 0]


DEFAULT_DESIGN = DayDesign(
    shares={
        "footfall": Fraction(7, 10),
        "arrivals": Fraction(1, 5),
        "dwell": Fraction(1, 25),
        "transitions": Fraction(1, 25),
        "offers": Fraction(1, 100),
        "holdout": Fraction(1, 100),
    },
    caps={"footfall": 4, "dwell": 1, "transitions": 1, "arrivals": 1, "holdout": 1},
)


@dataclass(frozen=True, slots=True)
class DayBudget:
    """Token bounds and noise scales of the day release, exactly."""

    epsilon_per_day: Fraction
    open_h: int
    close_h: int
    token_rotation_s: int
    slack_s: Fraction
    k: int
    design: DayDesign
    caps: Mapping[str, int]

    @classmethod
    def from_config(cls, cfg: AppConfig, design: DayDesign = DEFAULT_DESIGN) -> DayBudget:
        """The day budget for a config."""
        p = cfg.privacy
        caps = {**design.caps, "offers": cfg.policy.max_offers_per_visit}
        return cls(
            epsilon_per_day=exact(p.epsilon_per_day),
            open_h=p.day_hours[0],
            close_h=p.day_hours[1],
            token_rotation_s=p.token_rotation_s,
            slack_s=exact(p.raw_retention_s) + exact(FUTURE_SLACK_S),
            k=p.k,
            design=design,
            caps=caps,
        )

    @property
    def period_s(self) -> int:
        """Nominal length of the counting hours."""
        return (self.close_h - self.open_h) * 3600

    @property
    def hold_s(self) -> float:
        """How long a token's bookkeeping lives: the longest a token can be in use."""
        return float(self.token_rotation_s + self.slack_s)

    def tokens(self, seconds: float) -> int:
        """Tokens one person can show with events in a stretch of ``seconds``."""
        return math.ceil((exact(max(seconds, 0.0)) + self.slack_s) / self.token_rotation_s) + 1

    @property
    def tokens_per_day(self) -> int:
        """N for the whole counting period."""
        return self.tokens(self.period_s)

    def segment_epsilon(self, remaining: Fraction, covered_s: float, rest_s: float) -> Fraction:
        """ε for a segment: all that remains, or its share by token bound if more may come."""
        if rest_s <= 0:
            return max(remaining, Fraction(0))
        n, rest = self.tokens(covered_s), self.tokens(rest_s)
        return max(remaining, Fraction(0)) * n / (n + rest)

    def noise_scale(self, stat: str, covered_s: float, epsilon: Fraction) -> Fraction:
        """b = N(L)·cap / (share·ε) for one statistic of a segment."""
        share = self.design.shares[stat]
        return Fraction(self.tokens(covered_s) * self.caps[stat]) / (share * epsilon)

    @property
    def worst_case_per_day(self) -> Fraction:
        """ε one person can lose in a local day: the ledger never lets the sum pass ε_day."""
        return self.epsilon_per_day


@dataclass(slots=True)
class _Tok:
    created_mono: float
    first_done: bool = False
    visits: int = 0  # footfall visits counted (≤ cap)
    moved_in: bool = False  # the current zone was entered by a movement seen by this token
    arrived: bool = False  # the current stay is the token's first, at the entrance
    dwell: int = 0
    transitions: int = 0
    offers: int = 0
    holdout: bool = False


@dataclass(slots=True)
class _Counts:
    footfall: dict[str, int]
    dwell: dict[str, list[int]]
    transitions: dict[tuple[str, str], int]
    arrivals: dict[int, int]
    offers: dict[str, int]
    holdout: int = 0


NoiseFactory = Callable[[Fraction], DiscreteLaplace]


class DayAggregator:
    """Counts one site-local day's counting hours and publishes them as a ``day`` release."""

    holder_name = "privacy.aggregator"

    def __init__(
        self,
        cfg: AppConfig,
        *,
        design: DayDesign = DEFAULT_DESIGN,
        noise: NoiseFactory = DiscreteLaplace,
        new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
        ledger: EpsilonLedger,
        monotonic: Callable[[], float] = time.monotonic,
        started: float | None = None,
    ) -> None:
        self.budget = DayBudget.from_config(cfg, design)
        self.ledger = ledger
        self._noise = noise
        self._new_id = new_id
        self._mono = monotonic
        self._tz = ZoneInfo(cfg.timezone)
        self._site = cfg.site
        self._device = cfg.device
        self._zones = [z.id for z in cfg.store.zones]
        self._coupons = [c.id for c in cfg.campaigns]
        self._entrance = _entrance_zone(cfg)
        self._started = time.time() if started is None else started
        self._salt = secrets.token_bytes(32)
        self._tok: dict[bytes, _Tok] = {}
        self._seg: tuple[str, float, float] | None = None  # day, segment start, period end
        self._opened_mono: float | None = None
        self._counts = self._empty()
        self.windows_withheld = 0
        self.windows_closed = 0
        self.cells_suppressed_total = 0

    # -- periods ---------------------------------------------------------------------------

    def _period(self, ts: float) -> tuple[str, float, float]:
        day = dt.datetime.fromtimestamp(ts, self._tz).date()
        return (
            day.isoformat(),
            self._at(day, self.budget.open_h),
            self._at(day, self.budget.close_h),
        )

    def _at(self, day: dt.date, hour: int) -> float:
        if hour >= 24:
            day, hour = day + dt.timedelta(days=1), hour - 24
        return dt.datetime.combine(day, dt.time(hour), self._tz).timestamp()

    def local_day(self, ts: float) -> str:
        """The site-local date at ``ts``."""
        return self._period(ts)[0]

    def _counting(self, ts: float) -> bool:
        """Open a segment when ``ts`` is in counting hours; True when ``ts`` counts."""
        if self._seg is None:
            day, open_ts, close_ts = self._period(ts)
            start = max(open_ts, self._started)
            if not start <= ts < close_ts:
                return False
            self._seg = (day, start, close_ts)
            self._opened_mono = self._mono() - (ts - start)
        _, start, close_ts = self._seg
        return start <= ts < close_ts

    def _empty(self) -> _Counts:
        z = self._zones
        return _Counts(
            footfall=dict.fromkeys(z, 0),
            dwell={zone: [0] * len(DWELL_LABELS) for zone in z},
            transitions={(a, b): 0 for a in z for b in z if a != b},
            arrivals=dict.fromkeys(range(self.budget.open_h, self.budget.close_h), 0),
            offers=dict.fromkeys(self._coupons, 0),
        )

    # -- counting --------------------------------------------------------------------------

    def _key(self, token: bytes) -> bytes:
        return hmac.digest(self._salt, token, hashlib.sha256)[:16]

    def _t(self, token: bytes) -> _Tok:
        key = self._key(token)
        t = self._tok.get(key)
        if t is None:
            t = self._tok[key] = _Tok(self._mono())
        return t

    def presence(self, ev: PresenceEvent) -> None:
        """Count footfall visits, dwell, transitions and arrivals within the per-token caps.

        A footfall visit is a stay of at least ``VISIT_MIN_S`` in a zone that the token
        *entered*: by a move from another zone, or as its first sighting in the entrance zone
        (an arrival). A token first seen elsewhere is a rotation successor (or a phone that
        woke up) and its first stay does not count: its predecessor counted it.
        """
        if not self._counting(ev.ts):
            return
        t = self._t(ev.token)
        c, caps = self._counts, self.budget.caps
        if not t.first_done:
            t.first_done = True
            hour = dt.datetime.fromtimestamp(ev.ts, self._tz).hour
            arrived = self._entrance is None or ev.zone == self._entrance
            if arrived and ev.kind is not PresenceKind.LEAVE:
                t.arrived = True
                if hour in c.arrivals:
                    c.arrivals[hour] += 1
        if ev.kind is PresenceKind.LEAVE:
            self._stay_ended(t, ev.zone, ev.dwell_s)
            return
        if ev.kind is not PresenceKind.ENTER or not ev.previous_zone:
            return
        prev = ev.previous_zone
        self._stay_ended(t, prev, ev.previous_dwell_s)
        if ev.zone not in c.footfall:
            return
        t.moved_in = True
        pair = (prev, ev.zone)
        if pair in c.transitions and t.transitions < caps["transitions"]:
            t.transitions += 1
            c.transitions[pair] += 1

    def _stay_ended(self, t: _Tok, zone: str, seconds: float) -> None:
        """A stay ended: a visit and a dwell if it began with an entry seen by this token."""
        moved_in, arrived = t.moved_in, t.arrived
        t.moved_in = t.arrived = False
        c, caps = self._counts, self.budget.caps
        entered = moved_in or arrived
        visit = entered and seconds >= VISIT_MIN_S and zone in c.footfall
        if visit and t.visits < caps["footfall"]:
            t.visits += 1
            c.footfall[zone] += 1
        if moved_in and zone in c.dwell and t.dwell < caps["dwell"]:
            t.dwell += 1
            c.dwell[zone][dwell_bucket(seconds)] += 1

    def offer(self, token: bytes, coupon_id: str, ts: float) -> None:
        """Count an offer made (bounded per token)."""
        if not self._counting(ts):
            return
        t = self._t(token)
        if coupon_id in self._counts.offers and t.offers < self.budget.caps["offers"]:
            t.offers += 1
            self._counts.offers[coupon_id] += 1

    def holdout(self, token: bytes, ts: float) -> None:
        """Count a token of the holdout group once."""
        if not self._counting(ts):
            return
        t = self._t(token)
        if not t.holdout:
            t.holdout = True
            self._counts.holdout += 1

    def set_campaigns(self, coupon_ids: list[str]) -> None:
        """Count offers of these coupons from now on (known counts are kept)."""
        for cid in coupon_ids:
            self._counts.offers.setdefault(cid, 0)
        self._coupons = list(dict.fromkeys(coupon_ids))

    # -- raw holder ------------------------------------------------------------------------

    def forget(self, token: bytes) -> int:
        """Drop the token's bookkeeping (its counts stay: they are anonymous).

        As in the window release, a token seen again after ``forget`` (a signed command for
        that person) is counted as a new one; docs/PRIVACY.md states this caveat.
        """
        return int(self._tok.pop(self._key(token), None) is not None)

    def purge(self, mono_now: float) -> None:
        """Drop bookkeeping older than one token lifetime (the token cannot be in use)."""
        cutoff = mono_now - self.budget.hold_s
        for key in [k for k, t in self._tok.items() if t.created_mono < cutoff]:
            del self._tok[key]

    def held(self, mono_now: float) -> Holding:
        """Bookkeeping entries (salted digests) and the oldest's age; bounded by a lifetime."""
        limit = self.budget.hold_s
        if not self._tok:
            return Holding(0, 0.0, limit)
        oldest = min(t.created_mono for t in self._tok.values())
        return Holding(len(self._tok), max(0.0, mono_now - oldest), limit)

    def contributions_held(self) -> int:
        """Tokens with bookkeeping right now (introspection)."""
        return len(self._tok)

    # -- publication -----------------------------------------------------------------------

    def privacy_figures(self, now: float) -> PrivacyFigures:
        """ε per day, per release, worst case, spent and remaining today (from the ledger)."""
        b = self.budget
        day = self.local_day(now)
        return PrivacyFigures(
            k=b.k,
            window_s=b.period_s,
            epsilon_per_day=float(b.epsilon_per_day),
            epsilon_per_window=float(b.epsilon_per_day),
            epsilon_worst_case_per_day=float(b.worst_case_per_day),
            spent_today=self.ledger.spent(day),
            remaining_today=self.ledger.remaining(day),
            windows_today=self.ledger.published(day),
        )

    def due(self, now: float) -> bool:
        """True when the counting hours of the open segment have ended (wall or monotonic)."""
        if self._seg is None:
            return False
        _, start, close_ts = self._seg
        if now >= close_ts:
            return True
        opened = self._opened_mono
        return opened is not None and self._mono() - opened >= close_ts - start

    def close(self, now: float, *, partial: bool = False) -> AggregateWindow | None:
        """Publish the open segment (noise + suppression) if the ledger grants its ε."""
        if self._seg is None:
            return None
        day, start, close_ts = self._seg
        end = min(max(now, start), close_ts) if partial else close_ts
        covered, rest = end - start, close_ts - end  # rest is 0 unless partial
        eps = self.budget.segment_epsilon(self.ledger.remaining_exact(day), covered, rest)
        slot = -int(start)  # day segments are recorded under minus their start (windows: +)
        claimed = eps > 0 and self.ledger.claim(slot, day, epsilon=eps)
        payload = (
            self._publish(day, int(start), int(end), partial, covered, eps) if claimed else None
        )
        self._counts = self._empty()
        self._tok.clear()
        self._salt = secrets.token_bytes(32)
        self._seg = None  # (``_opened_mono`` is read only while a segment is open)
        if partial:
            self._started = max(self._started, now)  # never count this stretch again
        if payload is None:
            self.windows_withheld += 1
            return None
        self.windows_closed += 1
        return AggregateWindow(
            payload["id"], self._site, self._device, int(start), int(end), payload
        )

    def _publish(
        self, day: str, start: int, end: int, partial: bool, covered: float, eps: Fraction
    ) -> dict[str, Any]:
        b = self.budget
        c = self._counts
        raw: dict[str, dict[str, dict[str, int]]] = {
            "footfall": {z: {"visitors": n} for z, n in c.footfall.items()},
            "dwell": {
                z: {DWELL_LABELS[i]: n for i, n in enumerate(row)} for z, row in c.dwell.items()
            },
            "transitions": {},
            "arrivals": {STORE_WIDE: {f"{h:02d}": n for h, n in c.arrivals.items()}},
            "offers": {STORE_WIDE: dict(c.offers)},
            "holdout": {STORE_WIDE: {"tokens": c.holdout}},
        }
        for (a, to), n in c.transitions.items():
            raw["transitions"].setdefault(a, {})[to] = n
        stats: dict[str, Any] = {}
        total = suppressed = 0
        for stat in b.design.published():
            scale = b.noise_scale(stat, covered, eps)
            noise = self._noise(scale)
            values: dict[str, dict[str, int | None]] = {}
            for zone, keyed in raw[stat].items():
                row: dict[str, int | None] = {}
                for key, value in keyed.items():
                    noisy = value + noise.sample()
                    total += 1
                    if noisy < b.k:
                        suppressed += 1
                        row[key] = None
                    else:
                        row[key] = noisy
                values[zone] = row
            stats[stat] = {
                "epsilon": round(float(eps * b.design.shares[stat]), 9),
                "sensitivity": b.tokens(covered) * b.caps[stat],
                "noise_scale": round(float(scale), 6),
                "values": values,
            }
        self.cells_suppressed_total += suppressed
        return {
            "release": "day",
            "id": self._new_id(),
            "site": self._site,
            "device": self._device,
            "day": day,
            "period_start": start,
            "period_end": end,
            "partial": partial,
            "stats": stats,
            "cells": total,
            "cells_suppressed": suppressed,
            "privacy": {
                "k": b.k,
                "epsilon": round(float(eps * sum(b.design.shares.values())), 9),
                "noise": "discrete_laplace",
                "tokens_per_person": b.tokens(covered),
            },
        }


def _entrance_zone(cfg: AppConfig) -> str | None:
    """The zone holding the store entrance (arrivals are tokens first seen there)."""
    x, y = cfg.store.entrance
    for z in cfg.store.zones:
        x0, y0, w, h = z.rect
        if x0 <= x <= x0 + w and y0 <= y <= y0 + h:
            return z.id
    return None
