"""Privacy stage: what may leave the device and how it is protected.

Owns the privacy budget (per-window ε, per-person sensitivity), the discrete Laplace noise
sampler and the window aggregator that bounds contributions and suppresses cells below k.
"""

from edge.privacy.aggregates import DWELL_LABELS, WindowAggregator
from edge.privacy.budget import Budget
from edge.privacy.noise import DiscreteLaplace

__all__ = ["DWELL_LABELS", "Budget", "DiscreteLaplace", "WindowAggregator"]
