"""Explicit offer policy: each rule is a small check that names itself when it blocks.

The policy holds per-token counters (RAW, RAM only) and per-screen rate state. A token's
counters are dropped when it leaves, on ``forget``, and at the latest ``raw_retention_s``
after the policy last saw it (monotonic clock). The appliance cannot link token rotations,
so "per day" caps hold per token; a per-person daily cap is the central server's job.
Counters survive a policy change (``update_config``). Rules run in a fixed order; the first
that blocks becomes the decision's reason.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import hmac
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from edge.config.daypart import daypart_active
from edge.config.models import AppConfig, Campaign
from edge.privacy.holders import Holding


class Reason(enum.StrEnum):
    """Why a decision went the way it did (counted, never stored per person)."""

    OFFERED = "offered"
    TIER_COUNTED_ONLY = "tier_counted_only"
    DEPARTED = "departed"
    HOLDOUT = "holdout"
    MIN_DWELL = "min_dwell"
    VISIT_CAP = "visit_cap"
    DAY_CAP = "day_cap"
    COOLDOWN = "cooldown"
    SCREEN_RATE = "screen_rate"
    NO_CANDIDATE = "no_candidate"
    LOW_SCORE = "low_score"


@dataclass(slots=True)
class _TokenCounters:
    visit_offers: int = 0
    day: dt.date | None = None
    day_offers: int = 0
    last_offer_ts: float = -1e18
    offered: set[str] | None = None
    seen_mono: float = 0.0


class HoldoutGroup:
    """A daily-salted random share of tokens that never get offers (for uplift)."""

    def __init__(self, share: float, salt_source: Callable[[int], bytes] = secrets.token_bytes):
        self.share = share
        self._salt_source = salt_source
        # no mutate: placeholders; contains() draws a salt on its first call
        self._day: dt.date | None = None  # pragma: no mutate
        self._salt = b""  # pragma: no mutate

    def contains(self, token: bytes, day: dt.date) -> bool:
        """True when the token is in today's holdout group (stable within the day)."""
        if day != self._day:
            self._day = day
            self._salt = self._salt_source(32)
        digest = hmac.digest(self._salt, token, hashlib.sha256)
        return int.from_bytes(digest[:8], "big") < self.share * 2**64


def campaign_active(c: Campaign, local: dt.datetime) -> bool:
    """True when the campaign is enabled and its daypart covers the local time."""
    return c.enabled and daypart_active(c.schedule, local)


def is_sensitive(c: Campaign, sensitive: frozenset[str]) -> bool:
    """Sensitive categories are never targeted at an individual (screens only)."""
    return c.category.lower() in sensitive


class Policy:
    """Caps, cool-down, minimum dwell, screen rate limit and holdout, per config."""

    holder_name = "decide.policy"

    def __init__(
        self,
        cfg: AppConfig,
        holdout: HoldoutGroup | None = None,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._mono = monotonic
        self._tokens: dict[bytes, _TokenCounters] = {}
        self._screen_offers: deque[float] = deque()
        self.holdout = holdout or HoldoutGroup(cfg.policy.holdout_share)
        self._set_rules(cfg)

    def _set_rules(self, cfg: AppConfig) -> None:
        p = cfg.policy
        self.cfg = p
        self.sensitive = frozenset(x.lower() for x in p.sensitive_categories)
        self._retention = cfg.privacy.raw_retention_s

    def update_config(self, cfg: AppConfig) -> None:
        """Take new rules; per-token counters, the screen rate and today's holdout salt stay."""
        self._set_rules(cfg)
        self.holdout.share = cfg.policy.holdout_share

    def check(
        self, token: bytes, tier: int, dwell_s: float, now: float, day: dt.date
    ) -> Reason | None:
        """The first rule that blocks an offer to this token now, or None."""
        if tier < 1:
            return Reason.TIER_COUNTED_ONLY
        if self.holdout.contains(token, day):
            return Reason.HOLDOUT
        if dwell_s < self.cfg.min_dwell_s:
            return Reason.MIN_DWELL
        tc = self._tokens.get(token)
        if tc is not None:
            tc.seen_mono = self._mono()
            if tc.visit_offers >= self.cfg.max_offers_per_visit:
                return Reason.VISIT_CAP
            if tc.day == day and tc.day_offers >= self.cfg.max_offers_per_day:
                return Reason.DAY_CAP
            if now - tc.last_offer_ts < self.cfg.cooldown_s:
                return Reason.COOLDOWN
        while self._screen_offers and self._screen_offers[0] <= now - 60.0:
            self._screen_offers.popleft()
        if len(self._screen_offers) >= self.cfg.screen_rate_per_min:
            return Reason.SCREEN_RATE
        return None

    def already_offered(self, token: bytes) -> frozenset[str]:
        """Coupons this token was offered this visit (not offered twice)."""
        tc = self._tokens.get(token)
        return frozenset(tc.offered or ()) if tc else frozenset()

    def offers_this_visit(self, token: bytes) -> int:
        """How many offers this token got this visit."""
        tc = self._tokens.get(token)
        return tc.visit_offers if tc else 0

    def record_offer(self, token: bytes, coupon_id: str, now: float, day: dt.date) -> None:
        """Update caps and rate state after an offer was made."""
        tc = self._tokens.setdefault(token, _TokenCounters())
        tc.visit_offers += 1
        if tc.day != day:
            tc.day, tc.day_offers = day, 0
        tc.day_offers += 1
        tc.last_offer_ts = now
        tc.offered = (tc.offered or set()) | {coupon_id}
        tc.seen_mono = self._mono()
        self._screen_offers.append(now)

    def forget(self, token: bytes) -> int:
        """Drop the token's counters (visit ended or ``forget``); 1 when there were any."""
        return int(self._tokens.pop(token, None) is not None)

    def purge(self, mono_now: float) -> None:
        """Drop counters of tokens the policy has not seen within the raw retention."""
        cutoff = mono_now - self._retention
        for token in [t for t, tc in self._tokens.items() if tc.seen_mono < cutoff]:
            del self._tokens[token]

    def held(self, mono_now: float) -> Holding:
        """Tokens with counters, and how long ago the stalest was seen."""
        if not self._tokens:
            return Holding(0, 0.0)
        oldest = min(tc.seen_mono for tc in self._tokens.values())
        return Holding(len(self._tokens), max(0.0, mono_now - oldest))

    def tokens_held(self) -> int:
        """Tokens with policy counters (introspection)."""
        return len(self._tokens)
