"""The privacy budget: per-window ε and per-person sensitivity derived from the config.

A person (in fact a token: the appliance cannot link rotations) contributes to at most
``max_zones_per_window`` zone cells of the visitor count and of the dwell histogram, to at
most ``policy.max_offers_per_visit`` offer cells and to one holdout cell per window, so the
L1 sensitivity of one window's counts is ``2·m + offers + 1``. With at most
``max_windows_per_day`` windows per person per day, each window gets
``ε_window = ε_day / max_windows_per_day`` and every count gets discrete Laplace noise of
scale ``sensitivity / ε_window``. See docs/PRIVACY.md for the derivation and assumptions.
"""

from __future__ import annotations

from dataclasses import dataclass

from edge.config.models import AppConfig


@dataclass(frozen=True, slots=True)
class Budget:
    """Derived privacy parameters, published in the device state."""

    epsilon_per_day: float
    epsilon_per_window: float
    sensitivity: int
    noise_scale: float
    k: int
    window_s: int
    max_windows_per_day: int

    @classmethod
    def from_config(cls, cfg: AppConfig) -> Budget:
        """Compute the budget for a config."""
        p = cfg.privacy
        sensitivity = 2 * p.max_zones_per_window + cfg.policy.max_offers_per_visit + 1
        eps_window = p.epsilon_per_day / p.max_windows_per_day
        return cls(
            epsilon_per_day=p.epsilon_per_day,
            epsilon_per_window=eps_window,
            sensitivity=sensitivity,
            noise_scale=sensitivity / eps_window,
            k=p.k,
            window_s=p.window_s,
            max_windows_per_day=p.max_windows_per_day,
        )

    def spent(self, windows_published_today: int) -> float:
        """Worst-case ε one person has spent today after this many published windows."""
        return min(windows_published_today, self.max_windows_per_day) * self.epsilon_per_window
