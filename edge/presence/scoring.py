"""Scoring zone estimates against ground truth: the one rule the demo and the replay share.

Owns what "right", "latency" and "flap" mean, so ``shelfedge demo`` (per simulated second),
``shelfedge presence eval`` (per trace sighting) and any comparison of methods count the same
way:

- a sample is scored when it has both a true zone and an estimate; accuracy is the share of
  scored samples whose estimate equals the truth (a truth of ``None`` — walking between zones —
  is not scored; a missing estimate is counted as ``no_estimate``, not as wrong);
- latency after a true zone change: from the moment a subject leaves its true zone to the
  first sample whose estimate equals the (new) truth; a walk through an aisle (zone → none →
  zone) is one change, timed from leaving the first zone;
- a flap is a change of a subject's estimate with no change of its true zone since the
  subject's previous estimate change (a correction while standing still counts too: it is a
  switch nobody moved for); flaps per minute divide by the subjects' observed minutes (first
  to last sample with an estimate, summed over subjects).

Evaluation only: subjects are whatever the caller groups by (a simulated shopper, a trace walk,
a token); nothing here is part of the running daemon.
"""

from __future__ import annotations

import statistics
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank style percentile (``q`` in 0..1), rounded to 0.1 s; ``None`` if empty."""
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * (len(ordered) - 1) + 0.5))], 1)


def share(ok: int, n: int) -> float:
    """``ok / n`` rounded to 4 places; 0.0 when there is nothing to divide."""
    return round(ok / n, 4) if n else 0.0


@dataclass(slots=True)
class _Track:
    truth: str | None = None
    changed_at: float | None = None  # when the truth last left a zone, until caught up
    estimate: str | None = None
    truth_moved: bool = False  # the truth changed since the last estimate change
    first_t: float | None = None
    last_t: float = 0.0


@dataclass(slots=True)
class ZoneScorer:
    """Accumulates accuracy, zone-change latency and flaps over subjects and time."""

    ok: int = 0
    scored: int = 0
    no_estimate: int = 0
    estimate_changes: int = 0
    flaps: int = 0
    latencies: list[float] = field(default_factory=list)
    _tracks: dict[Hashable, _Track] = field(default_factory=dict)

    @staticmethod
    def correct(truth: str | None, estimate: str | None) -> bool | None:
        """The accuracy rule: ``None`` when the sample is not scored, else estimate == truth."""
        if truth is None or estimate is None:
            return None
        return estimate == truth

    def tally(self, truth: str | None, estimate: str | None) -> bool | None:
        """Count one sample for accuracy only (no per-subject tracking)."""
        verdict = self.correct(truth, estimate)
        if verdict is not None:
            self.scored += 1
            self.ok += int(verdict)
        return verdict

    def observe(
        self, subject: Hashable, t: float, truth: str | None, estimate: str | None
    ) -> bool | None:
        """One sample of one subject at time ``t`` (non-decreasing per subject).

        Returns the accuracy verdict (``None`` when not scored), so a caller can split the
        counts further (the demo's standing vs walking).
        """
        track = self._tracks.get(subject)
        if track is None:
            track = self._tracks[subject] = _Track(truth=truth)
        elif truth != track.truth:
            if track.truth is not None:
                track.changed_at = t
            track.truth = truth
            track.truth_moved = True
        if estimate is None:
            if truth is not None:
                self.no_estimate += 1
            return None
        if track.first_t is None:
            track.first_t = t
        track.last_t = t
        if track.estimate is not None and estimate != track.estimate:
            self.estimate_changes += 1
            if not track.truth_moved:
                self.flaps += 1
            track.truth_moved = False
        track.estimate = estimate
        verdict = self.tally(truth, estimate)
        if verdict and track.changed_at is not None:
            self.latencies.append(t - track.changed_at)
            track.changed_at = None
        return verdict

    @property
    def subjects(self) -> int:
        """How many subjects were observed."""
        return len(self._tracks)

    def observed_minutes(self) -> float:
        """Minutes from first to last estimated sample, summed over subjects."""
        return (
            sum(tr.last_t - tr.first_t for tr in self._tracks.values() if tr.first_t is not None)
            / 60.0
        )

    def accuracy(self) -> float:
        """Share of scored samples that were right (0.0 when none was scored)."""
        return share(self.ok, self.scored)

    def flaps_per_min(self) -> float | None:
        """Flaps per observed subject-minute (``None`` before a minute was observed)."""
        minutes = self.observed_minutes()
        return round(self.flaps / minutes, 3) if minutes > 0 else None

    def latency_median(self) -> float | None:
        """Median latency after a true zone change, 0.1 s (``None`` without a caught change)."""
        return None if not self.latencies else round(statistics.median(self.latencies), 1)

    def latency_p90(self) -> float | None:
        """90th percentile of the latency after a true zone change."""
        return percentile(self.latencies, 0.9)

    def summary(self) -> dict[str, Any]:
        """The metrics, rounded, with the names ``presence eval --json`` prints."""
        return {
            "samples": self.scored,
            "accuracy": self.accuracy(),
            "no_estimate": self.no_estimate,
            "flaps": self.flaps,
            "flaps_per_min": self.flaps_per_min(),
            "estimate_changes": self.estimate_changes,
            "observed_minutes": round(self.observed_minutes(), 2),
            "latency_median_s": self.latency_median(),
            "latency_p90_s": self.latency_p90(),
            "zone_changes_caught": len(self.latencies),
        }
