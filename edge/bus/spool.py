"""Closed aggregate windows waiting for the outbox: a bounded spool in RAM.

A window is written to the SQLite outbox as soon as it closes. When that fails (a full disk,
a broken file system) the window waits here and is retried on every flush, in order. At most
``max_windows`` wait; past that the oldest unwritten one is dropped and counted, never
anything the outbox already committed. Failures are logged at most once per ``log_every_s``
with the number of repeats in between, and once more when writing recovers. Windows hold
only noisy, k-suppressed aggregates, so keeping them in RAM is not a privacy concern.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from edge.events import AggregateWindow

_LOGGER = logging.getLogger(__name__)
DEFAULT_MAX_WINDOWS = 96  # one day of 15-minute windows


class WindowSpool:
    """Ordered, bounded hand-off of closed windows to ``put(id, topic, body)``."""

    def __init__(
        self,
        put: Callable[[str, str, bytes], object],
        *,
        max_windows: int = DEFAULT_MAX_WINDOWS,
        log_every_s: float = 60.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_windows < 1:
            raise ValueError("max_windows must be >= 1")
        self._put = put
        self._max = max_windows
        self._log_every_s = log_every_s
        self._mono = monotonic
        self._pending: deque[AggregateWindow] = deque()
        self._last_log: float | None = None
        self._suppressed = 0
        self._failing = False
        self.written = 0
        self.dropped = 0
        self.failures = 0
        self.last_error: str | None = None

    def add(self, window: AggregateWindow) -> None:
        """Queue a closed window; the oldest unwritten one goes when the spool is full."""
        self._pending.append(window)
        while len(self._pending) > self._max:
            self._pending.popleft()
            self.dropped += 1

    @property
    def pending(self) -> int:
        """Windows not yet in the outbox."""
        return len(self._pending)

    async def flush(self) -> int:
        """Write pending windows in order; stop at the first failure. Returns how many."""
        done = 0
        while self._pending:
            window = self._pending[0]
            body = json.dumps(window.payload, separators=(",", ":")).encode()
            try:
                await asyncio.to_thread(self._put, window.id, "agg", body)
            except Exception as exc:
                self._failed(exc)
                return done
            if self._pending and self._pending[0] is window:
                self._pending.popleft()
            done += 1
            self.written += 1
        if done and self._failing:
            self._failing = False
            _LOGGER.warning(
                "outbox writable again; %d window(s) written, %d dropped while it failed",
                done,
                self.dropped,
            )
        return done

    def _failed(self, exc: Exception) -> None:
        self.failures += 1
        self.last_error = type(exc).__name__
        self._failing = True
        now = self._mono()
        if self._last_log is not None and now - self._last_log < self._log_every_s:
            self._suppressed += 1
            return
        repeats = (
            f" ({self._suppressed} more failures since the last report)"
            if (self._suppressed)
            else ""
        )
        _LOGGER.error(
            "outbox write failed (%s); %d window(s) kept in RAM (at most %d)%s",
            self.last_error,
            len(self._pending),
            self._max,
            repeats,
        )
        self._last_log = now
        self._suppressed = 0

    def stats(self) -> dict[str, Any]:
        """Counters for status (error class only, never its text)."""
        return {
            "pending": len(self._pending),
            "written": self.written,
            "dropped": self.dropped,
            "failures": self.failures,
            "last_error": self.last_error,
        }
