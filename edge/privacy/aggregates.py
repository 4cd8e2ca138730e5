"""Per-window aggregates: bounded contributions, discrete Laplace noise, k-suppression.

Counts are accumulated in RAM per window; the only per-token data is the contribution
bookkeeping of the current window (which cells a token already counted in). It lives for the
whole window, so a phone that leaves and returns is not counted again, and it is keyed not by
the token but by ``HMAC-SHA256(window_salt, token)[:16]`` under a random salt drawn for each
window and dropped with the bookkeeping when the window closes: linkable within one window
only, as the token itself is. A window collects for at most ``window_s`` on the monotonic
clock too, so a backward step of the wall clock can neither stretch it (more token rotations
than the budget allows for) nor keep its bookkeeping longer. A closed window's slot is
claimed in the ε ledger before it is published; a refused slot (budget spent, or already
published before a restart) is dropped.
A published ``AggregateWindow`` holds only noisy counts at or above k.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import math
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from edge.config.models import AppConfig
from edge.events import AggregateWindow, PresenceEvent, PresenceKind
from edge.privacy.budget import Budget, PrivacyFigures
from edge.privacy.holders import Holding
from edge.privacy.ledger import EpsilonLedger
from edge.privacy.noise import DiscreteLaplace

DWELL_BUCKETS_S: tuple[int, ...] = (0, 30, 60, 120, 300, 600)
DWELL_LABELS: tuple[str, ...] = (
    *(f"{lo}-{hi}" for lo, hi in itertools.pairwise(DWELL_BUCKETS_S)),
    f"{DWELL_BUCKETS_S[-1]}+",
)


def dwell_bucket(seconds: float) -> int:
    """Index of the fixed dwell bucket for a duration."""
    idx = 0
    for i, lo in enumerate(DWELL_BUCKETS_S):
        if seconds >= lo:
            idx = i
    return idx


@dataclass(slots=True)
class _Contribution:
    created_mono: float = 0.0
    zones: set[str] = field(default_factory=set)
    dwell_zones: set[str] = field(default_factory=set)
    offers: int = 0
    holdout: bool = False


@dataclass(slots=True)
class _Counts:
    visitors: dict[str, int]
    dwell: dict[str, list[int]]
    offers: dict[str, int]
    holdout: int = 0


class WindowAggregator:
    """Accumulates one window at a time and publishes it with noise and suppression."""

    holder_name = "privacy.aggregator"

    def __init__(
        self,
        cfg: AppConfig,
        *,
        noise: DiscreteLaplace | None = None,
        new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
        ledger: EpsilonLedger | None = None,
        local_day: Callable[[float], str] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.budget = Budget.from_config(cfg)
        self._noise = noise or DiscreteLaplace(self.budget.noise_scale)
        self.ledger = ledger or EpsilonLedger(None, self.budget)
        self._local_day = local_day or (lambda ts: time.strftime("%Y-%m-%d", time.gmtime(ts)))
        self._mono = monotonic
        self._salt = secrets.token_bytes(32)
        self.windows_withheld = 0
        self._site = cfg.site
        self._device = cfg.device
        self._zones = [z.id for z in cfg.store.zones]
        self._coupons = [c.id for c in cfg.campaigns]
        self._m = cfg.privacy.max_zones_per_window
        self._max_offers = cfg.policy.max_offers_per_visit
        self._window_s = cfg.privacy.window_s
        self._new_id = new_id
        self._start: int | None = None
        self._opened_mono: float | None = None
        self._sealed = False  # bookkeeping had to go before the window closed: count no more
        self._counts = self._empty()
        self._contrib: dict[bytes, _Contribution] = {}
        self.windows_closed = 0
        self.cells_suppressed_total = 0

    def _empty(self) -> _Counts:
        return _Counts(
            visitors=dict.fromkeys(self._zones, 0),
            dwell={z: [0] * len(DWELL_LABELS) for z in self._zones},
            offers=dict.fromkeys(self._coupons, 0),
        )

    def window_start(self, ts: float) -> int:
        """Start of the window containing ``ts`` (windows are aligned to the epoch)."""
        return math.floor(ts) // self._window_s * self._window_s

    def _ensure(self, ts: float) -> None:
        if self._start is None:
            self._start = self.window_start(ts)
        if self._opened_mono is None:
            self._opened_mono = self._mono()

    def _key(self, token: bytes) -> bytes:
        return hmac.digest(self._salt, token, hashlib.sha256)[:16]

    def _c(self, token: bytes) -> _Contribution:
        key = self._key(token)
        c = self._contrib.get(key)
        if c is None:
            c = self._contrib[key] = _Contribution(self._mono())
        return c

    def presence(self, ev: PresenceEvent) -> None:
        """Count visitors and dwell from a presence event, within contribution bounds."""
        self._ensure(ev.ts)
        if self._sealed:
            return
        c = self._c(ev.token)
        if ev.kind is PresenceKind.LEAVE:  # bookkeeping stays: a return is not counted again
            self._dwell(c, ev.zone, ev.dwell_s)
            return
        if ev.kind is PresenceKind.ENTER and ev.previous_zone:
            self._dwell(c, ev.previous_zone, ev.previous_dwell_s)
        if ev.zone in self._counts.visitors and ev.zone not in c.zones and len(c.zones) < self._m:
            c.zones.add(ev.zone)
            self._counts.visitors[ev.zone] += 1

    def _dwell(self, c: _Contribution, zone: str, seconds: float) -> None:
        if zone not in self._counts.dwell or zone in c.dwell_zones:
            return
        if len(c.dwell_zones) >= self._m:
            return
        c.dwell_zones.add(zone)
        self._counts.dwell[zone][dwell_bucket(seconds)] += 1

    def offer(self, token: bytes, coupon_id: str, ts: float) -> None:
        """Count an offer made (bounded per token)."""
        self._ensure(ts)
        if self._sealed:
            return
        c = self._c(token)
        if coupon_id in self._counts.offers and c.offers < self._max_offers:
            c.offers += 1
            self._counts.offers[coupon_id] += 1

    def holdout(self, token: bytes, ts: float) -> None:
        """Count a token of the holdout group once per window."""
        self._ensure(ts)
        if self._sealed:
            return
        c = self._c(token)
        if not c.holdout:
            c.holdout = True
            self._counts.holdout += 1

    def set_campaigns(self, coupon_ids: list[str]) -> None:
        """Count offers of these coupons from now on.

        Counts of ids already known are kept; new ids start at 0; ids no longer listed stay
        until the current window closes (their counts are published with it) and are gone
        from the next window on.
        """
        for cid in coupon_ids:
            self._counts.offers.setdefault(cid, 0)
        self._coupons = list(dict.fromkeys(coupon_ids))

    def forget(self, token: bytes) -> int:
        """Drop the token's bookkeeping (its counts stay: they are anonymous)."""
        return int(self._contrib.pop(self._key(token), None) is not None)

    def purge(self, mono_now: float) -> None:
        """Bookkeeping never outlives a window, even if no tick closed it.

        Dropping a token's bookkeeping before its window closes would let it be counted
        again, so a purge that drops anything also seals the window: nothing more is counted
        in it until it closes.
        """
        cutoff = mono_now - self._window_s
        stale = [k for k, c in self._contrib.items() if c.created_mono < cutoff]
        for key in stale:
            del self._contrib[key]
        if stale:
            self._sealed = True

    def held(self, mono_now: float) -> Holding:
        """Bookkeeping entries (salted digests), the oldest's age; bounded by the window."""
        if not self._contrib:
            return Holding(0, 0.0, float(self._window_s))
        oldest = min(c.created_mono for c in self._contrib.values())
        return Holding(len(self._contrib), max(0.0, mono_now - oldest), float(self._window_s))

    def privacy_figures(self, now: float) -> PrivacyFigures:
        """ε per day, per window, worst case, spent and remaining today (from the ledger)."""
        b = self.budget
        day = self._local_day(now)
        return PrivacyFigures(
            k=b.k,
            window_s=b.window_s,
            epsilon_per_day=float(b.epsilon_per_day),
            epsilon_per_window=float(b.epsilon_per_window),
            epsilon_worst_case_per_day=float(b.worst_case_per_day),
            spent_today=self.ledger.spent(day),
            remaining_today=self.ledger.remaining(day),
            windows_today=self.ledger.published(day),
        )

    def due(self, now: float) -> bool:
        """True when the current window has ended: on the wall clock, or after ``window_s``
        of collecting on the monotonic clock (a backward wall-clock step cannot stretch it)."""
        if self._start is None:
            return False
        if now >= self._start + self._window_s:
            return True
        opened = self._opened_mono
        return opened is not None and self._mono() - opened >= self._window_s

    def close(self, now: float, *, partial: bool = False) -> AggregateWindow | None:
        """Publish the current window (noise + suppression) and start the next one."""
        if self._start is None:
            return None
        start = self._start
        end = min(start + self._window_s, int(now)) if partial else start + self._window_s
        claimed = self.ledger.claim(start, self._local_day(start))
        payload = self._publish(start, end, partial) if claimed else None
        self._counts = self._empty()
        self._contrib.clear()
        self._salt = secrets.token_bytes(32)
        self._sealed = False
        # Slots only move forward; after a forced (monotonic) close the next slot follows on.
        self._start = None if partial else max(self.window_start(now), start + self._window_s)
        self._opened_mono = None if partial else self._mono()
        if payload is None:
            self.windows_withheld += 1
            return None
        self.windows_closed += 1
        wid = payload["id"]
        return AggregateWindow(wid, self._site, self._device, start, end, payload)

    def _noisy(self, value: int, suppressed: list[int]) -> int | None:
        noisy = value + self._noise.sample()
        if noisy < self.budget.k:
            suppressed[0] += 1
            return None
        return noisy

    def _publish(self, start: int, end: int, partial: bool) -> dict[str, Any]:
        suppressed = [0]
        zones: dict[str, Any] = {}
        for zone in self._zones:
            visitors = self._noisy(self._counts.visitors[zone], suppressed)
            dwell = {
                DWELL_LABELS[i]: n
                for i, raw in enumerate(self._counts.dwell[zone])
                if (n := self._noisy(raw, suppressed)) is not None
            }
            if visitors is not None or dwell:
                zones[zone] = {"visitors": visitors, "dwell_s": dwell}
        offers = {
            cid: n
            for cid, raw in self._counts.offers.items()
            if (n := self._noisy(raw, suppressed)) is not None
        }
        holdout = self._noisy(self._counts.holdout, suppressed)
        cells = len(self._zones) * (1 + len(DWELL_LABELS)) + len(self._counts.offers) + 1
        self.cells_suppressed_total += suppressed[0]
        b = self.budget
        return {
            "release": "window",
            "id": self._new_id(),
            "site": self._site,
            "device": self._device,
            "window_start": start,
            "window_end": end,
            "partial": partial,
            "zones": zones,
            "offers": offers,
            "holdout": holdout,
            "cells": cells,
            "cells_suppressed": suppressed[0],
            "privacy": {
                "k": b.k,
                "epsilon_window": round(float(b.epsilon_per_window), 6),
                "noise": "discrete_laplace",
                "noise_scale": round(float(b.noise_scale), 6),
                "sensitivity": b.sensitivity,
                "tokens_per_window": b.tokens_per_window,
            },
        }

    def contributions_held(self) -> int:
        """Tokens with bookkeeping in the current window (introspection)."""
        return len(self._contrib)
