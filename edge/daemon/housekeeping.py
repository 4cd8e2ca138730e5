"""Housekeeping as a supervised component: the once-a-second tick of the appliance.

Each turn evicts tokens past their TTL, purges every raw holder, closes due aggregate
windows and writes them to the outbox. It is essential: if a turn raises, the supervisor
restarts the loop; if a turn hangs, progress stops and so do the watchdog pings.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from edge.config.models import AppConfig
from edge.lifecycle import ComponentHealth, Progress

TURN_S = 1.0


class Housekeeping:
    """Calls ``turn`` every ``every_s`` seconds."""

    name = "housekeeping"
    essential = True

    def __init__(self, turn: Callable[[], Awaitable[None]], *, every_s: float = TURN_S) -> None:
        self._turn = turn
        self._every_s = every_s
        self.turns = 0

    async def run(self, progress: Progress) -> None:
        """Run turns until cancelled (an exception in a turn fails the component)."""
        while True:
            await self._turn()
            self.turns += 1
            progress()
            await asyncio.sleep(self._every_s)

    def health(self) -> ComponentHealth:
        """How many turns ran."""
        return ComponentHealth(True, {"turns": self.turns})

    def apply_config(self, cfg: AppConfig) -> bool:
        """Nothing to apply."""
        return False
