"""Scoring the demo against the simulator's ground truth (the demo only; never the daemon).

One number hides too much: most seconds of a visit are spent standing in a zone, where any
tracker looks good. So the evaluation reports, per simulated second:

- zone accuracy while standing and while walking (the shopper moved in the last second),
  scored only for each shopper's *current* token; a token that has rotated out but is still
  tracked is counted separately (``rotation_tail_share``);
- the latency from a true zone change to the first correct estimate (median and p90);
- the time from arrival to first detection (median) and the share of opted-in shopper-seconds
  with any estimate (coverage);
- the largest age of a raw record seen while running, over every raw holder.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any

from edge.presence.scoring import ZoneScorer, share
from edge.sim import StoreSimulator
from edge.sim import advertise as air

MOVING_M_PER_S = 0.2


@dataclass(slots=True)
class DemoEvaluation:
    """Accumulates the ground-truth comparison second by second."""

    sim: StoreSimulator
    start_ts: float
    counts: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(
            ("still_ok", "still_n", "moving_ok", "moving_n", "tail", "scored"), 0
        )
    )
    scorer: ZoneScorer = field(default_factory=ZoneScorer)  # per shopper: latency, flaps
    detection: list[float] = field(default_factory=list)
    covered: int = 0
    shopper_seconds: int = 0
    max_raw_age_s: float = 0.0
    _detected: set[int] = field(default_factory=set)

    def observe(self, t: float, estimates: dict[bytes, str | None], raw_age_s: float) -> None:
        """One simulated second: the tracker's estimates by token, the oldest raw record age."""
        self.max_raw_age_s = max(self.max_raw_age_s, raw_age_s)
        zones = self.sim.zones
        epoch = air.rpi_interval(t)
        by_shopper: dict[int, str | None] = {}
        for token, est in estimates.items():
            shopper = self.sim.shopper(token)
            if shopper is None or est is None:
                continue
            if token != air.rpi(shopper.key, epoch):
                self.counts["tail"] += 1  # a rotated-out token still tracked
                continue
            by_shopper[shopper.id] = est
        for shopper in self.sim.shoppers_in_store():
            if not shopper.opted_in:
                continue
            pos, before = shopper.path.position(t), shopper.path.position(t - 1.0)
            if pos is None:
                continue
            truth = zones.containing(*pos)
            est = by_shopper.get(shopper.id)
            verdict = self.scorer.observe(shopper.id, t, truth, est)
            self.shopper_seconds += 1
            if est is None:
                continue
            self.covered += 1
            if shopper.id not in self._detected:
                self._detected.add(shopper.id)
                if shopper.arrival >= self.start_ts:
                    self.detection.append(t - shopper.arrival)
            if verdict is None:
                continue
            self.counts["scored"] += 1
            moving = before is not None and math.dist(pos, before) > MOVING_M_PER_S
            key = "moving" if moving else "still"
            self.counts[f"{key}_n"] += 1
            self.counts[f"{key}_ok"] += int(verdict)

    def summary(self) -> dict[str, Any]:
        """The metrics (rounded) for the demo summary."""
        c = self.counts
        scorer = self.scorer
        return {
            "zone_accuracy_still": share(c["still_ok"], c["still_n"]),
            "zone_accuracy_moving": share(c["moving_ok"], c["moving_n"]),
            "moving_share": share(c["moving_n"], c["still_n"] + c["moving_n"]),
            "zone_change_latency_s": {
                "median": scorer.latency_median(),
                "p90": scorer.latency_p90(),
                "changes": len(scorer.latencies),
            },
            "flaps_per_min": scorer.flaps_per_min(),
            "first_detection_s_median": (
                None if not self.detection else round(statistics.median(self.detection), 1)
            ),
            "coverage": share(self.covered, self.shopper_seconds),
            "rotation_tail_share": share(c["tail"], c["tail"] + c["scored"]),
            "max_raw_age_running_s": round(self.max_raw_age_s, 1),
        }
