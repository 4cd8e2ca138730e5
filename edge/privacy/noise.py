"""Discrete Laplace (two-sided geometric) noise for published counts.

Sampled as the difference of two geometric variables with success probability
``1 - exp(-1/scale)`` from a cryptographically secure source (``secrets.SystemRandom``).
The skeleton samples the geometric variables by inversion with floating point; issue 4
replaces this with an exact integer sampler (Canonne–Kamath–Steinke). A seeded
``random.Random`` may be injected for reproducible tests only.
"""

from __future__ import annotations

import math
import random
import secrets


class DiscreteLaplace:
    """Sampler of integer noise with P(k) ∝ exp(-|k| / scale)."""

    def __init__(self, scale: float, rng: random.Random | None = None) -> None:
        if scale <= 0:
            raise ValueError("scale must be > 0")
        self.scale = scale
        self._rng = rng or secrets.SystemRandom()
        self._log_q = -1.0 / scale  # log of the geometric ratio q = exp(-1/scale)

    def _geometric(self) -> int:
        u = 1.0 - self._rng.random()  # (0, 1]
        return math.floor(math.log(u) / self._log_q)

    def sample(self) -> int:
        """One noise value."""
        return self._geometric() - self._geometric()

    def variance(self) -> float:
        """Analytic variance 2q / (1 - q)^2."""
        q = math.exp(self._log_q)
        return 2 * q / (1 - q) ** 2
