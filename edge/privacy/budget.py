"""The privacy budget: per-window ε, per-token sensitivity and the noise scale, exactly.

A token contributes to at most ``m = max_zones_per_window`` visitor cells and ``m`` dwell
cells, ``policy.max_offers_per_visit`` offer cells and one holdout cell per window — also
across leave/return, because the bookkeeping lives for the whole window — so one token's L1
sensitivity per window is ``Δ = 2·m + offers + 1``. A phone rotates its token every
``token_rotation_s`` and the appliance cannot link rotations, so one person can appear as up
to ``T = ceil(window_s / token_rotation_s) + 1`` tokens in one window: ``T·Δ`` per person.
The device publishes at most ``max_windows_per_day`` windows per local day (the ε ledger
enforces it across restarts), and a person may be present in all of them, so with
``ε_w = ε_day / max_windows_per_day`` and noise scale ``b = T·Δ / ε_w`` the worst case per
person per day is ``max_windows_per_day · ε_w = ε_day``. No assumption about visit length is
needed. Everything is exact (``Fraction``); see docs/PRIVACY.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from edge.config.models import AppConfig


def exact(value: float | int) -> Fraction:
    """A config number as the exact decimal the technician wrote (0.1 → 1/10)."""
    return Fraction(str(value))


@dataclass(frozen=True, slots=True)
class Budget:
    """Derived privacy parameters, published in the device state."""

    epsilon_per_day: Fraction
    epsilon_per_window: Fraction
    sensitivity: int  # per token per window
    tokens_per_window: int  # per person per window (rotation)
    noise_scale: Fraction
    k: int
    window_s: int
    max_windows_per_day: int

    @classmethod
    def from_config(cls, cfg: AppConfig) -> Budget:
        """Compute the budget for a config."""
        p = cfg.privacy
        sensitivity = 2 * p.max_zones_per_window + cfg.policy.max_offers_per_visit + 1
        tokens = math.ceil(p.window_s / p.token_rotation_s) + 1
        eps_day = exact(p.epsilon_per_day)
        eps_window = eps_day / p.max_windows_per_day
        return cls(
            epsilon_per_day=eps_day,
            epsilon_per_window=eps_window,
            sensitivity=sensitivity,
            tokens_per_window=tokens,
            noise_scale=tokens * sensitivity / eps_window,
            k=p.k,
            window_s=p.window_s,
            max_windows_per_day=p.max_windows_per_day,
        )

    @property
    def worst_case_per_day(self) -> Fraction:
        """ε one person can lose in a day at most: every publishable window, T tokens each."""
        per_window = self.tokens_per_window * self.sensitivity / self.noise_scale
        return per_window * self.max_windows_per_day


@dataclass(frozen=True, slots=True)
class PrivacyFigures:
    """The ε accounting reported in the device state (from the ledger)."""

    k: int
    window_s: int
    epsilon_per_day: float
    epsilon_per_window: float
    epsilon_worst_case_per_day: float
    spent_today: float
    remaining_today: float
    windows_today: int
