"""A simulated trading day of aggregate messages, with its truth, for the fleet tests.

Shoppers arrive (Poisson, the demo store's opted-in rate) and visit zones with fixed,
distinct popularities, so the true footfall ranking is known. Their presence events go
through the device's real ``WindowAggregator`` (bounded contributions, exact discrete
Laplace noise, k-suppression, ε ledger), which publishes the ``window`` messages; a ``day``
message (contract release ``day``) is built from the same truth with the same exact noise
(seeded here, so a test's numbers are reproducible).
This stands in for a store full of people, the one thing that cannot exist here.
"""

from __future__ import annotations

import datetime as dt
import random
import uuid
from collections import Counter
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any
from zoneinfo import ZoneInfo

import yaml

from edge.config import load_config
from edge.events import PresenceEvent, PresenceKind
from edge.privacy.aggregates import DWELL_LABELS, WindowAggregator, dwell_bucket
from edge.privacy.noise import DiscreteLaplace
from tests.helpers import DEMO_STORE

# Share of opted-in shoppers who visit each zone: distinct, so the true ranking is clear.
POPULARITY: dict[str, float] = {
    "entrance": 0.95,
    "checkout": 0.85,
    "produce": 0.70,
    "bakery": 0.55,
    "dairy": 0.45,
    "beverages": 0.36,
    "snacks": 0.28,
    "coffee": 0.20,
    "frozen": 0.14,
    "household": 0.09,
    "pharmacy": 0.05,
}
OPTED_IN_PER_H = 150 * 0.35


@dataclass(slots=True)
class Day:
    """The messages of one simulated day and the truth behind them."""

    site: str
    device: str
    windows: list[dict[str, Any]] = field(default_factory=list)
    day: dict[str, Any] | None = None
    footfall: Counter[str] = field(default_factory=Counter)  # distinct visitors per zone
    hourly: Counter[str] = field(default_factory=Counter)  # arrivals per local hour

    def messages(self) -> list[dict[str, Any]]:
        return [*self.windows, *([self.day] if self.day else [])]


def simulate_day(
    tmp_config: Any,
    *,
    site: str = "demo-site",
    device: str = "shelf-coffee",
    seed: int = 0,
    open_h: int = 8,
    close_h: int = 20,
    date: dt.date = dt.date(2027, 1, 15),
) -> Day:
    """Run a day from ``open_h`` to ``close_h`` (site-local); ``tmp_config`` is a Path dir."""
    data = yaml.safe_load(DEMO_STORE.read_text())
    data.update(site=site, device=device, state_dir=str(tmp_config / "state"))
    cfg_path = tmp_config / "day.yaml"
    cfg_path.write_text(yaml.safe_dump(data, sort_keys=False))
    cfg = load_config(cfg_path)
    tz = ZoneInfo(cfg.timezone)
    start = dt.datetime.combine(date, dt.time(open_h), tz).timestamp()
    end = dt.datetime.combine(date, dt.time(close_h), tz).timestamp()
    rng = random.Random(f"fleet-day/{seed}")
    clock = [start]
    agg = WindowAggregator(
        cfg,
        local_day=lambda ts: dt.datetime.fromtimestamp(ts, tz).date().isoformat(),
        monotonic=lambda: clock[0],
    )
    out = Day(site, device)
    events: list[PresenceEvent] = []
    dwell_truth: dict[str, Counter[str]] = {z: Counter() for z in POPULARITY}
    t = start
    while True:
        t += rng.expovariate(OPTED_IN_PER_H / 3600.0)
        if t >= end - 1800:
            break
        token = rng.randbytes(16)
        out.hourly[f"{dt.datetime.fromtimestamp(t, tz).hour:02d}"] += 1
        zones = [z for z, p in POPULARITY.items() if rng.random() < p]
        ts, prev, prev_dwell = t, None, 0.0
        for zone in zones:
            out.footfall[zone] += 1
            events.append(
                PresenceEvent(PresenceKind.ENTER, token, 1, zone, prev, 0.0, 1.0, ts, prev_dwell)
            )
            prev_dwell = rng.expovariate(1 / 90.0)
            dwell_truth[zone][DWELL_LABELS[dwell_bucket(prev_dwell)]] += 1
            prev = zone
            ts += prev_dwell + 10.0
        if prev is not None:
            events.append(
                PresenceEvent(PresenceKind.LEAVE, token, 1, prev, None, prev_dwell, 1.0, ts)
            )
    events.sort(key=lambda e: e.ts)
    for ev in events:
        while agg.due(ev.ts):
            clock[0] = ev.ts
            window = agg.close(ev.ts)
            if window is not None:
                out.windows.append(window.payload)
        clock[0] = ev.ts
        agg.presence(ev)
    final = agg.close(end)
    if final is not None:
        out.windows.append(final.payload)
    out.day = _day_message(out, dwell_truth, start, end, date, cfg.privacy.k, rng)
    return out


def _day_message(
    day: Day,
    dwell: dict[str, Counter[str]],
    start: float,
    end: float,
    date: dt.date,
    k: int,
    rng: random.Random,
) -> dict[str, Any]:
    """A contract ``day`` release of the same truth: footfall, dwell and hourly arrivals."""
    suppressed = total = 0

    def noisy(stat_scale: int, value: int) -> int | None:
        nonlocal suppressed, total
        total += 1
        n = value + DiscreteLaplace(Fraction(stat_scale), rng.randrange).sample()
        if n < k:
            suppressed += 1
            return None
        return n

    stats = {
        "footfall": {
            "epsilon": 0.5,
            "sensitivity": 11,
            "noise_scale": 22.0,
            "values": {z: {"visitors": noisy(22, day.footfall[z])} for z in POPULARITY},
        },
        "dwell": {
            "epsilon": 0.25,
            "sensitivity": 11,
            "noise_scale": 44.0,
            "values": {
                z: {label: noisy(44, dwell[z][label]) for label in DWELL_LABELS} for z in POPULARITY
            },
        },
        "hourly": {
            "epsilon": 0.25,
            "sensitivity": 1,
            "noise_scale": 4.0,
            "values": {"*": {f"{h:02d}": noisy(4, day.hourly[f"{h:02d}"]) for h in range(24)}},
        },
    }
    return {
        "release": "day",
        "id": str(uuid.uuid4()),
        "site": day.site,
        "device": day.device,
        "day": date.isoformat(),
        "period_start": int(start),
        "period_end": int(end),
        "partial": False,
        "stats": stats,
        "cells": total,
        "cells_suppressed": suppressed,
        "privacy": {"k": k, "epsilon": 1.0, "noise": "discrete_laplace", "tokens_per_person": 1},
    }
