"""The shelf screen as a supervised component.

``run`` starts a ``DisplayController`` (its render thread owns pygame) and watches it; when
the render thread dies (e.g. after repeated frame errors) ``run`` raises so the supervisor
restarts the screen with a fresh controller. A reloaded ``display`` section is applied live
by swapping in a new controller. The current campaigns, online flag and any message
override are replayed to each new controller, so a restart loses nothing on screen.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from pathlib import Path

from edge.config.models import AppConfig, Campaign
from edge.display.controller import DisplayController
from edge.display.errors import DisplayError
from edge.events import OfferCue
from edge.lifecycle import ComponentHealth, Progress

_LOGGER = logging.getLogger(__name__)
WATCH_S = 0.5


class DisplayPart:
    """Supervised front of the shelf screen; messages to a stopped screen are kept."""

    name = "display"
    essential = False

    def __init__(
        self,
        cfg: AppConfig,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._cfg = cfg
        self._clock = clock
        self._ctl: DisplayController | None = None
        self._campaigns: list[Campaign] = list(cfg.campaigns)
        self._online = True
        self._reconfigure = asyncio.Event()
        self._up = asyncio.Event()
        self.starts = 0

    # -- what the daemon sends (event loop thread) ---------------------------------------

    def show_offer(self, cue: OfferCue) -> None:
        """Show an offer cue made in this screen's zone."""
        if self._ctl is not None and cue.zone == self.zone:
            self._ctl.show_offer(cue)

    def set_online(self, online: bool) -> None:
        """Show or hide the offline badge."""
        if online != self._online:
            self._online = online
            if self._ctl is not None:
                self._ctl.set_online(online)

    def set_campaigns(self, campaigns: list[Campaign]) -> None:
        """Replace the playlist's campaigns."""
        self._campaigns = list(campaigns)
        if self._ctl is not None:
            self._ctl.set_campaigns(self._campaigns)

    def show_message(self, text: str, seconds: float) -> None:
        """Priority message override."""
        if self._ctl is None:
            raise DisplayError("display is not running")
        self._ctl.show_message(text, seconds)

    def show_test_pattern(self, seconds: float) -> None:
        """The technician test pattern for ``seconds``."""
        if self._ctl is None:
            raise DisplayError("display is not running")
        self._ctl.show_test_pattern(seconds)

    async def snapshot(self, path: Path) -> Path:
        """Write the current frame as PNG (in a worker thread)."""
        ctl = self._ctl
        if ctl is None:
            raise DisplayError("display is not running")
        return await asyncio.to_thread(ctl.snapshot, path)

    @property
    def zone(self) -> str | None:
        """The store zone this screen stands in (offer cues from other zones are not shown)."""
        for screen in self._cfg.store.screens:
            if screen.id == self._cfg.display.screen:
                return screen.zone
        return None

    async def wait_running(self, within: float) -> bool:
        """Wait until a render thread is up (False after ``within`` seconds)."""
        try:
            await asyncio.wait_for(self._up.wait(), within)
        except TimeoutError:
            return False
        return True

    @property
    def running(self) -> bool:
        """True while a render thread is alive."""
        return self._ctl is not None and self._ctl.alive

    # -- Component ----------------------------------------------------------------------

    async def run(self, progress: Progress) -> None:
        """Run a controller; swap it on reconfigure; raise when its thread dies."""
        while True:
            self._reconfigure.clear()
            ctl = DisplayController(self._cfg, clock=self._clock)
            await asyncio.to_thread(ctl.start)
            self._ctl = ctl
            self._up.set()
            self.starts += 1
            ctl.set_campaigns(self._campaigns)
            if not self._online:
                ctl.set_online(False)
            try:
                while not self._reconfigure.is_set():
                    if not ctl.alive:
                        crashed = ctl.health().get("crashed") or "render thread stopped"
                        raise DisplayError(f"display thread died: {crashed}")
                    progress()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._reconfigure.wait(), WATCH_S)
            finally:
                self._ctl = None
                self._up.clear()
                await asyncio.to_thread(ctl.stop)
            _LOGGER.info("display: new settings applied")

    def health(self) -> ComponentHealth:
        """The render thread's statistics."""
        ctl = self._ctl
        if ctl is None:
            return ComponentHealth(False, {"alive": False, "starts": self.starts})
        detail = ctl.health()
        detail["starts"] = self.starts
        return ComponentHealth(bool(detail.get("alive")), detail)

    def apply_config(self, cfg: AppConfig) -> bool:
        """Apply ``display`` changes live (a fresh controller); campaigns are replayed."""
        changed = cfg.display != self._cfg.display
        self._cfg = cfg
        self._campaigns = list(cfg.campaigns)
        if changed:
            self._reconfigure.set()
        elif self._ctl is not None:
            self._ctl.set_campaigns(self._campaigns)
        return False
