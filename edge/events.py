"""Typed events that flow between the stages of the pipeline.

Frozen, slotted dataclasses: cheap on the hot path and immutable. Events that carry a raw
signal (addresses, RSSI, tokens) are marked ``RAW`` in their docstring: they live in RAM only
and must never be logged, written to disk or published.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class SightingSource(enum.StrEnum):
    """Where a sighting came from; the presence stage treats all alike."""

    BLE = "ble"  # the phone's own token advertisement, heard by a receiver
    APP = "app"  # the phone's report of a reference beacon, over the store MQTT bus


@dataclass(frozen=True, slots=True, eq=False)
class Advertisement:
    """RAW. One BLE advertisement as a scanner (bleak or the simulator) delivers it."""

    address: str
    rssi: int
    ts: float
    receiver: str
    manufacturer_data: Mapping[int, bytes] = field(default_factory=dict)
    service_data: Mapping[str, bytes] = field(default_factory=dict)
    local_name: str | None = None
    tx_power: int | None = None


@dataclass(frozen=True, slots=True)
class Sighting:
    """RAW. A verified, opted-in phone seen near an anchor (reference beacon or receiver)."""

    token: bytes
    tier: int
    anchor: str
    rssi: int
    ts: float
    source: SightingSource


@dataclass(frozen=True, slots=True)
class BeaconSighting:
    """A fixed reference beacon heard by one of this device's receivers (health, calibration)."""

    beacon: str
    receiver: str
    rssi: int
    ts: float


class PresenceKind(enum.StrEnum):
    """What happened to a phone's visit."""

    ENTER = "enter"  # entered a zone
    DWELL = "dwell"  # still in the zone (periodic update)
    LEAVE = "leave"  # left the store (token expired)


@dataclass(frozen=True, slots=True)
class PresenceEvent:
    """RAW (carries the token). A phone's zone, dwell and pace, for the decision stage."""

    kind: PresenceKind
    token: bytes
    tier: int
    zone: str
    previous_zone: str | None
    dwell_s: float
    pace_per_min: float
    ts: float
    previous_dwell_s: float = 0.0  # time spent in previous_zone (ENTER only)


@dataclass(frozen=True, slots=True)
class Offer:
    """RAW (carries the token). An accepted coupon offer for one opted-in phone."""

    id: str
    token: bytes
    coupon_id: str
    expires_at: int
    zone: str
    model_ranked: bool

    def payload(self) -> dict[str, Any]:
        """The only fields that may leave the device, as published on ``offer``."""
        return {
            "id": self.id,
            "token": self.token.hex(),
            "coupon_id": self.coupon_id,
            "expires_at": self.expires_at,
        }


@dataclass(frozen=True, slots=True)
class OfferCue:
    """What the screen shows for an offer made in its zone: no personal data."""

    zone: str
    coupon_id: str
    headline: str
    url: str
    expires_at: int


@dataclass(frozen=True, slots=True)
class AggregateWindow:
    """One published window of privacy-protected aggregates (safe to leave the device)."""

    id: str
    site: str
    device: str
    start: int
    end: int
    payload: Mapping[str, Any]
