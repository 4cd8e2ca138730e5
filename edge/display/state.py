"""What the screen should show now: the scene director (pure Python, no pygame).

The director owns the playlist (one slide per enabled campaign whose daypart matches the
local time, ``slide_s`` each, or a default slide when none matches), the zone offer cue (shown
for ``offer_cue_s`` or until the coupon expires, whichever is first), the priority message
override and the online flag. ``tick`` returns the current ``Scene``; a new ``Scene`` object is
made only when what is shown changes, so the renderer can compare by identity and redraw
nothing in steady state. Wall-clock time (``clock``) drives dayparting and expiry; monotonic
time drives durations, so a simulated clock can jump without stretching a slide.
"""

from __future__ import annotations

import datetime as dt
import enum
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from edge.config.daypart import daypart_active

if TYPE_CHECKING:
    from edge.config.models import Campaign
    from edge.events import OfferCue

_LOGGER = logging.getLogger(__name__)


class SceneKind(enum.StrEnum):
    """The kinds of full-screen content; the privacy band and badges overlay all of them."""

    DEFAULT = "default"
    CAMPAIGN = "campaign"
    OFFER = "offer"
    MESSAGE = "message"
    TEST_PATTERN = "test_pattern"


@dataclass(frozen=True, slots=True, eq=False)
class Scene:
    """One thing to show. Compared by identity: a new object means "redraw"."""

    kind: SceneKind
    campaign: Campaign | None = None
    cue: OfferCue | None = None
    message: str | None = None

    @property
    def name(self) -> str:
        """Short label for health and logs (never personal data: cues carry none)."""
        if self.kind is SceneKind.CAMPAIGN and self.campaign is not None:
            return f"campaign:{self.campaign.id}"
        if self.kind is SceneKind.OFFER and self.cue is not None:
            return f"offer:{self.cue.coupon_id}"
        return self.kind.value


DEFAULT_SCENE = Scene(SceneKind.DEFAULT)


def active_campaigns(
    campaigns: Sequence[Campaign],
    local: dt.datetime,
    on_error: Callable[[str], None] | None = None,
) -> list[Campaign]:
    """The enabled campaigns whose schedule matches ``local``, in catalogue order.

    A campaign whose fields cannot be evaluated (bad content pushed past validation) is
    skipped and reported through ``on_error``; it never takes the playlist down.
    """
    out: list[Campaign] = []
    for campaign in campaigns:
        try:
            if campaign.enabled and daypart_active(campaign.schedule, local):
                out.append(campaign)
        except Exception as exc:
            msg = f"campaign {getattr(campaign, 'id', '?')!r} skipped: {exc!r}"
            _LOGGER.warning("%s", msg)
            if on_error is not None:
                on_error(msg)
    return out


class Director:
    """Chooses the scene: message > offer cue > playlist slide (> default slide)."""

    def __init__(
        self,
        campaigns: Sequence[Campaign],
        *,
        tz: dt.tzinfo,
        slide_s: float,
        offer_cue_s: float,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        self._campaigns: list[Campaign] = list(campaigns)
        self._tz = tz
        self._slide_s = slide_s
        self._offer_cue_s = offer_cue_s
        self._on_error = on_error
        self._index = -1
        self._slide = DEFAULT_SCENE
        self._slide_until = -math.inf
        self._cue: Scene | None = None
        self._cue_until = -math.inf
        self._message: Scene | None = None
        self._message_until = -math.inf
        self.online = True
        self.current = DEFAULT_SCENE

    def set_campaigns(self, campaigns: Sequence[Campaign]) -> None:
        """Replace the catalogue; the playlist restarts from its first slide at the next tick."""
        self._campaigns = list(campaigns)
        self._index = -1
        self._slide_until = -math.inf

    def show_offer(self, cue: OfferCue, now_mono: float, now_wall: float) -> bool:
        """Show ``cue`` for ``offer_cue_s``; an already expired cue is ignored (False)."""
        if cue.expires_at <= now_wall:
            _LOGGER.debug("offer cue for %s already expired; not shown", cue.coupon_id)
            return False
        self._cue = Scene(SceneKind.OFFER, cue=cue)
        self._cue_until = now_mono + self._offer_cue_s
        return True

    def show_message(self, text: str, seconds: float, now_mono: float) -> None:
        """Override everything with ``text`` for ``seconds``; empty text or 0 s clears it."""
        if not text.strip() or seconds <= 0:
            self._message = None
            return
        self._message = Scene(SceneKind.MESSAGE, message=text)
        self._message_until = now_mono + seconds

    def show_test_pattern(self, seconds: float, now_mono: float) -> None:
        """The technician test pattern over everything for ``seconds`` (0 clears it)."""
        if seconds <= 0:
            self._message = None
            return
        self._message = Scene(SceneKind.TEST_PATTERN)
        self._message_until = now_mono + seconds

    def tick(self, now_mono: float, now_wall: float) -> Scene:
        """Advance timers and return the scene to show now (same object if unchanged)."""
        if self._message is not None and now_mono >= self._message_until:
            self._message = None
        cue = self._cue
        if cue is not None and (
            now_mono >= self._cue_until or (cue.cue is not None and now_wall >= cue.cue.expires_at)
        ):
            self._cue = None
        if now_mono >= self._slide_until:
            self._advance(now_mono, now_wall)
        self.current = self._message or self._cue or self._slide
        return self.current

    def _advance(self, now_mono: float, now_wall: float) -> None:
        local = dt.datetime.fromtimestamp(now_wall, self._tz)
        active = active_campaigns(self._campaigns, local, self._on_error)
        self._slide_until = now_mono + self._slide_s
        if not active:
            self._index = -1
            self._slide = DEFAULT_SCENE
            return
        self._index = (self._index + 1) % len(active)
        campaign = active[self._index]
        if self._slide.campaign is not campaign:
            self._slide = Scene(SceneKind.CAMPAIGN, campaign=campaign)
