"""Time sources: the wall clock in production, a driven clock in the simulator.

Two readings: ``now()`` is Unix time (what timestamps, windows and local dates refer to) and
``monotonic()`` never steps backwards (what raw-data retention is measured against, so that
a wall-clock step, common on a Pi without an RTC, cannot extend how long raw data lives).
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """Unix time and a monotonic reading, in seconds."""

    def now(self) -> float:
        """Current Unix time."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never steps backwards."""
        ...


class SystemClock:
    """The real wall clock and the kernel's monotonic clock."""

    def now(self) -> float:
        """Current Unix time."""
        return time.time()

    def monotonic(self) -> float:
        """``time.monotonic()``."""
        return time.monotonic()


class SimClock:
    """A clock the simulation driver advances explicitly (both readings move together)."""

    def __init__(self, start: float) -> None:
        self._now = start

    def now(self) -> float:
        """Current simulated Unix time."""
        return self._now

    def monotonic(self) -> float:
        """Simulated time never steps backwards, so it is its own monotonic reading."""
        return self._now

    def set(self, ts: float) -> None:
        """Move simulated time forward (never backwards)."""
        self._now = max(self._now, ts)
