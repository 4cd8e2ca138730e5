"""The decision stage: presence events in, offers (or reasons for none) out.

For each ENTER/DWELL event of an opted-in token it gathers the active campaigns near the
phone's zone, applies the explicit policy, and ranks what is left: by zone distance for
consent tier 1, by the on-device coupon model for tier 2. Model inference runs in one
worker thread so it never stalls the asyncio loop.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol
from zoneinfo import ZoneInfo

from edge.config.models import AppConfig, Campaign
from edge.decide.policy import Policy, Reason, campaign_active, is_sensitive
from edge.events import Offer, OfferCue, PresenceEvent, PresenceKind
from edge.presence.layout import StoreLayout

if TYPE_CHECKING:
    from collections.abc import Sequence

    from edge.decide.features import FeatureInput

_LOGGER = logging.getLogger(__name__)
VALIDITY_S = {"2h": 7200, "1d": 86_400}


class Scorer(Protocol):
    """What the decision stage needs from a model (see ``edge.decide.scorer``)."""

    model_id: str

    def score_batch(self, rows: Sequence[FeatureInput]) -> list[float]:
        """Acceptance probability for each feature row."""
        ...


@dataclass(slots=True)
class SiteContext:
    """Site context pushed by central with ``set_context`` (weather, temperature)."""

    weather: str = "sunny"
    temperature_c: float = 20.0


@dataclass(frozen=True, slots=True)
class Decision:
    """Outcome for one presence event: an offer and its screen cue, or the blocking reason."""

    reason: Reason
    offer: Offer | None = None
    cue: OfferCue | None = None


class DecisionEngine:
    """Policy plus ranking; holds per-token counters in RAM only."""

    def __init__(
        self,
        cfg: AppConfig,
        layout: StoreLayout,
        *,
        scorer: Scorer | None = None,
        scorer_source: Callable[[], Scorer | None] | None = None,
        policy: Policy | None = None,
        context: SiteContext | None = None,
    ) -> None:
        self.cfg = cfg
        self.layout = layout
        self._scorer_source = scorer_source or (lambda: scorer)
        self.policy = policy or Policy(cfg)
        self.context = context or SiteContext()
        self._tz = ZoneInfo(cfg.timezone)
        self._campaigns = list(cfg.campaigns)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shelfedge-model")
        self.reasons: Counter[str] = Counter()
        self.model_ranked = 0
        self.model_errors = 0

    @property
    def scorer(self) -> Scorer | None:
        """The model in use right now, if any."""
        return self._scorer_source()

    def set_campaigns(self, campaigns: list[Campaign]) -> None:
        """Replace the campaign catalogue."""
        self._campaigns = list(campaigns)

    def apply_config(self, cfg: AppConfig) -> None:
        """Take a reloaded config: new rules and campaigns; per-token counters stay."""
        self.cfg = cfg
        self.policy.update_config(cfg)
        self.set_campaigns(list(cfg.campaigns))

    def set_context(self, context: SiteContext) -> None:
        """Site context pushed by central (``set_context``)."""
        self.context = context

    def count(self, reason: Reason) -> None:
        """Count a decision taken outside ``decide`` (e.g. tier 0 counted only)."""
        self.reasons[reason.value] += 1

    def local_time(self, ts: float) -> dt.datetime:
        """Site-local time of a timestamp."""
        return dt.datetime.fromtimestamp(ts, self._tz)

    def candidates(self, zone: str, local: dt.datetime, exclude: frozenset[str]) -> list[Campaign]:
        """Active, non-sensitive campaigns near ``zone``, nearest first."""
        max_d = self.cfg.policy.max_zone_distance
        out = [
            c
            for c in self._campaigns
            if c.id not in exclude
            and campaign_active(c, local)
            and not is_sensitive(c, self.policy.sensitive)
            and self.layout.distance(zone, c.zone) <= max_d
        ]
        out.sort(key=lambda c: self.layout.distance(zone, c.zone))
        return out

    def features(
        self, ev: PresenceEvent, c: Campaign, local: dt.datetime, offers: int
    ) -> FeatureInput:
        """The model's input for one (event, campaign) pair, per the feature contract."""
        from edge.decide.features import FeatureInput

        distance = self.layout.distance(ev.zone, c.zone)
        heading = ev.previous_zone is not None and (
            self.layout.distance(ev.previous_zone, c.zone) > distance
        )
        return FeatureInput(
            hour=local.hour,
            weekday=local.weekday(),
            category=c.category,
            validity=c.validity,
            zone_distance=distance,
            heading_toward=heading,
            dwell_s=ev.dwell_s,
            pace_per_min=ev.pace_per_min,
            offers_this_visit=offers,
            tier=ev.tier,
            weather=self.context.weather,
            temperature_c=self.context.temperature_c,
        )

    async def decide(self, ev: PresenceEvent) -> Decision:
        """Decide on one presence event; the reason is counted either way."""
        decision = await self._decide(ev)
        self.reasons[decision.reason.value] += 1
        return decision

    async def _decide(self, ev: PresenceEvent) -> Decision:
        if ev.kind is PresenceKind.LEAVE:
            self.policy.forget(ev.token)
            return Decision(Reason.NO_CANDIDATE)
        local = self.local_time(ev.ts)
        day = local.date()
        blocked = self.policy.check(ev.token, ev.tier, ev.dwell_s, ev.ts, day)
        if blocked is not None:
            return Decision(blocked)
        cands = self.candidates(ev.zone, local, self.policy.already_offered(ev.token))
        if not cands:
            return Decision(Reason.NO_CANDIDATE)
        chosen = cands[0]
        ranked = False
        scorer = self.scorer
        if ev.tier >= 2 and scorer is not None:
            offers = self.policy.offers_this_visit(ev.token)
            rows = [self.features(ev, c, local, offers) for c in cands]
            try:
                loop = asyncio.get_running_loop()
                scores = await loop.run_in_executor(self._executor, scorer.score_batch, rows)
            except Exception:
                self.model_errors += 1
                _LOGGER.exception("model scoring failed; falling back to distance ranking")
            else:
                best = max(range(len(cands)), key=scores.__getitem__)
                if scores[best] < self.cfg.policy.min_model_score:
                    return Decision(Reason.LOW_SCORE)
                chosen, ranked = cands[best], True
                self.model_ranked += 1
        validity = min(VALIDITY_S[chosen.validity], self.cfg.policy.offer_validity_s)
        expires = int(ev.ts) + validity
        self.policy.record_offer(ev.token, chosen.id, ev.ts, day)
        offer = Offer(str(uuid.uuid4()), ev.token, chosen.id, expires, ev.zone, ranked)
        cue = OfferCue(ev.zone, chosen.id, chosen.headline, chosen.url, expires)
        return Decision(Reason.OFFERED, offer, cue)

    def forget(self, token: bytes) -> int:
        """Drop everything held for a token."""
        return self.policy.forget(token)

    def close(self) -> None:
        """Stop the model worker thread."""
        self._executor.shutdown(wait=True, cancel_futures=True)
