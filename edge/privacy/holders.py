"""The privacy boundary in code: every structure that holds a raw datum is a ``RawHolder``.

A raw datum is a token (RPI), a BLE address, an RSSI sample or a payload that carries one.
Every holder is registered in one ``RawRegistry``; ``tick`` purges them all, ``forget``
reaches them all and ``status`` lists what each holds (counts and the oldest age only,
never a value). Ages are measured on a monotonic clock so a wall-clock step cannot extend
retention.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class Holding:
    """What one holder holds right now: a count and the age of its oldest record."""

    records: int
    oldest_age_s: float = 0.0
    limit_s: float = 0.0  # retention bound for this holder; 0 = privacy.raw_retention_s

    def as_dict(self) -> dict[str, float | int]:
        """JSON-ready form (counts and ages only)."""
        return {"records": self.records, "oldest_age_s": round(self.oldest_age_s, 1)}


EMPTY = Holding(0, 0.0)


@runtime_checkable
class RawHolder(Protocol):
    """Anything that holds tokens, addresses or RSSI samples in RAM."""

    @property
    def holder_name(self) -> str:
        """Stable name shown in ``status`` (e.g. ``presence.tracker``)."""
        ...

    def purge(self, mono_now: float) -> None:
        """Drop every record older than the raw retention (monotonic seconds)."""
        ...

    def forget(self, token: bytes) -> int:
        """Drop everything held for one token at once; return how many records went."""
        ...

    def held(self, mono_now: float) -> Holding:
        """How many records are held and the age of the oldest (monotonic seconds)."""
        ...


class RawRegistry:
    """The one place every raw holder is registered."""

    def __init__(self) -> None:
        self._holders: dict[str, RawHolder] = {}

    def register(self, holder: RawHolder) -> None:
        """Add a holder (a name may be registered once; a new instance replaces the old)."""
        self._holders[holder.holder_name] = holder

    def unregister(self, name: str) -> None:
        """Remove a holder (a component that is gone for good)."""
        self._holders.pop(name, None)

    def __iter__(self) -> Iterator[RawHolder]:
        return iter(list(self._holders.values()))

    def names(self) -> list[str]:
        """Registered holder names, in registration order."""
        return list(self._holders)

    def purge(self, mono_now: float) -> None:
        """Purge every holder."""
        for holder in self:
            holder.purge(mono_now)

    def forget(self, token: bytes) -> dict[str, int]:
        """Forget a token in every holder; records dropped per holder."""
        return {h.holder_name: h.forget(token) for h in self}

    def holdings(self, mono_now: float) -> dict[str, Holding]:
        """What each holder holds."""
        return {h.holder_name: h.held(mono_now) for h in self}

    def total(self, mono_now: float) -> int:
        """All raw records together (must be 0 after shutdown)."""
        return sum(h.records for h in self.holdings(mono_now).values())
