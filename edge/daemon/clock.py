"""Time sources: the wall clock in production, a driven clock in the simulator."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """Unix time in seconds."""

    def now(self) -> float:
        """Current Unix time."""
        ...


class SystemClock:
    """The real wall clock."""

    def now(self) -> float:
        """Current Unix time."""
        return time.time()


class SimClock:
    """A clock the simulation driver advances explicitly."""

    def __init__(self, start: float) -> None:
        self._now = start

    def now(self) -> float:
        """Current simulated Unix time."""
        return self._now

    def set(self, ts: float) -> None:
        """Move simulated time forward (never backwards)."""
        self._now = max(self._now, ts)
