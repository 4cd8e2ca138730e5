"""Presence stage: verified sightings become zones, visits, dwell and leave events.

Owns the store geometry (anchors, zone distances) and the per-token presence state: smoothed
RSSI per anchor, zone choice with hysteresis, dwell and pace, TTL eviction and the raw
retention purge. Everything here is RAM only.
"""

from edge.presence.layout import Anchor, StoreLayout
from edge.presence.tracker import PresenceTracker, RawRetention

__all__ = ["Anchor", "PresenceTracker", "RawRetention", "StoreLayout"]
