"""Presence stage: verified sightings become zones, visits, dwell and leave events.

Owns the store geometry (anchors, zone cells) and the per-token presence state: the zone
filter (``zonefilter``, numpy), dwell and pace, TTL eviction and the raw retention purge.
Everything here is RAM only. The tracker is imported lazily so that ``edge.decide``, which
needs only the layout, does not pull numpy in.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from edge.presence.layout import Anchor, StoreLayout

if TYPE_CHECKING:
    from edge.presence.tracker import PresenceTracker, RawRetention

__all__ = ["Anchor", "PresenceTracker", "RawRetention", "StoreLayout"]


def __getattr__(name: str) -> Any:
    if name in ("PresenceTracker", "RawRetention"):
        from edge.presence import tracker

        return getattr(tracker, name)
    raise AttributeError(f"module 'edge.presence' has no attribute {name!r}")
