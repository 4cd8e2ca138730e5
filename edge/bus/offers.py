"""Offers waiting in RAM for the broker: bounded, expiring, and a raw holder (tokens).

An offer never touches disk (it carries a token). While the link is offline it waits here;
the oldest is dropped when the queue is full, and it is dropped when its ``expires_at``
passes or ``raw_retention_s`` after it was made, whichever comes first. Every drop is counted.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass

QUEUE_MAX = 256


@dataclass(frozen=True, slots=True)
class PendingOffer:
    """One offer's wire body and what the queue needs to expire and forget it."""

    body: bytes
    expires_at: float  # wall clock (the offer's own expiry)
    token: bytes
    made_mono: float  # monotonic (raw retention)


class OfferQueue:
    """FIFO of offers not yet handed to the broker."""

    def __init__(
        self,
        *,
        clock: Callable[[], float],
        retention_s: float,
        max_len: int = QUEUE_MAX,
    ) -> None:
        self._clock = clock
        self._retention_s = retention_s
        self._max = max_len
        self._q: deque[PendingOffer] = deque()
        self.expired = 0
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._q)

    def __iter__(self) -> Iterator[PendingOffer]:
        return iter(list(self._q))

    def push(self, offers: list[PendingOffer], *, front: bool = False) -> None:
        """Queue offers (at the front when they were in flight on a lost connection)."""
        if front:
            self._q.extendleft(reversed(offers))
        else:
            self._q.extend(offers)
        while len(self._q) > self._max:
            self._q.popleft()
            self.dropped += 1

    def pop(self) -> PendingOffer | None:
        """The oldest offer, or None."""
        return self._q.popleft() if self._q else None

    def unpop(self, offer: PendingOffer) -> None:
        """Put an offer back at the front (it could not be sent)."""
        self._q.appendleft(offer)

    def expire(self) -> None:
        """Drop offers whose ``expires_at`` has passed."""
        now = self._clock()
        if any(o.expires_at <= now for o in self._q):
            kept = [o for o in self._q if o.expires_at > now]
            self.expired += len(self._q) - len(kept)
            self._q = deque(kept)

    def purge(self, mono_now: float) -> None:
        """Drop offers older than the raw retention (they carry a token)."""
        cutoff = mono_now - self._retention_s
        kept = [o for o in self._q if o.made_mono >= cutoff]
        self.expired += len(self._q) - len(kept)
        self._q = deque(kept)

    def forget(self, token: bytes) -> int:
        """Drop queued offers for a token."""
        kept = [o for o in self._q if o.token != token]
        gone = len(self._q) - len(kept)
        self._q = deque(kept)
        return gone
