"""The decision stage as a supervised component: a bounded queue in, decisions out.

ENTER and DWELL events wait in a bounded queue (a raw holder: each item carries a token)
for the decision loop; when the queue is full the event is dropped and counted, which only
costs an offer opportunity. LEAVE events never queue: the composition root forgets the token
in the policy at once, so a full queue can never keep a departed token's counters alive, and
queued events of a token that has left are skipped rather than decided.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable

from edge.config.models import AppConfig
from edge.decide.engine import Decision, DecisionEngine
from edge.decide.policy import Reason
from edge.events import PresenceEvent, PresenceKind
from edge.lifecycle import ComponentHealth, Progress
from edge.privacy.holders import Holding

QUEUE_MAX = 4096
IDLE_BEAT_S = 1.0


class DecisionWorker:
    """Owns the decision queue and the loop that decides each queued event."""

    name = "decide"
    essential = True
    holder_name = "decide.queue"

    def __init__(
        self,
        engine: DecisionEngine,
        on_decision: Callable[[PresenceEvent, Decision], Awaitable[None]],
        is_live: Callable[[bytes], bool],
        *,
        retention_s: float,
        max_queue: int = QUEUE_MAX,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._engine = engine
        self._on_decision = on_decision
        self._is_live = is_live
        self._retention_s = retention_s
        self._max = max_queue
        self._mono = monotonic
        self._items: deque[tuple[PresenceEvent, float]] = deque()
        self._ready = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._busy = False
        self.dropped = 0
        self.decided = 0
        self.errors = 0
        self.last_error: str | None = None

    # -- input (event loop thread) -------------------------------------------------------

    def submit(self, ev: PresenceEvent) -> bool:
        """Queue an ENTER/DWELL event; False (and counted) when the queue is full."""
        if ev.kind is PresenceKind.LEAVE:
            raise ValueError("LEAVE events are handled at once, never queued")
        if len(self._items) >= self._max:
            self.dropped += 1
            return False
        self._items.append((ev, self._mono()))
        self._idle.clear()
        self._ready.set()
        return True

    async def drain(self) -> None:
        """Wait until every queued event has been decided."""
        await self._idle.wait()

    # -- Component ----------------------------------------------------------------------

    async def run(self, progress: Progress) -> None:
        """Decide queued events until cancelled."""
        while True:
            progress()
            if not self._items:
                self._busy = False
                self._idle.set()
                self._ready.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._ready.wait(), IDLE_BEAT_S)
                continue
            self._busy = True
            ev, _queued = self._items.popleft()
            if not self._is_live(ev.token):
                self._engine.count(Reason.DEPARTED)
                continue
            try:
                decision = await self._engine.decide(ev)
                await self._on_decision(ev, decision)
                self.decided += 1
            except Exception as exc:  # one bad event must not stop deciding the rest
                self.errors += 1
                self.last_error = type(exc).__name__

    def health(self) -> ComponentHealth:
        """Queue depth and counters."""
        return ComponentHealth(
            self.last_error is None,
            {
                "queued": len(self._items),
                "dropped": self.dropped,
                "errors": self.errors,
                "last_error": self.last_error,
            },
        )

    def apply_config(self, cfg: AppConfig) -> bool:
        """Policy and campaigns are applied by the engine; nothing here needs a restart."""
        self._retention_s = cfg.privacy.raw_retention_s
        return False

    # -- RawHolder ----------------------------------------------------------------------

    def purge(self, mono_now: float) -> None:
        """Drop queued events older than the raw retention (a stalled loop must not hoard)."""
        cutoff = mono_now - self._retention_s
        while self._items and self._items[0][1] < cutoff:
            self._items.popleft()
            self.dropped += 1
        if not self._items and not self._busy:
            self._idle.set()

    def forget(self, token: bytes) -> int:
        """Drop the token's queued events."""
        before = len(self._items)
        self._items = deque(item for item in self._items if item[0].token != token)
        return before - len(self._items)

    def held(self, mono_now: float) -> Holding:
        """Queued events and the age of the oldest."""
        if not self._items:
            return Holding(0, 0.0)
        return Holding(len(self._items), max(0.0, mono_now - self._items[0][1]))

    def clear(self) -> int:
        """Drop everything queued (shutdown); return how many went."""
        n = len(self._items)
        self._items.clear()
        self._idle.set()
        return n
