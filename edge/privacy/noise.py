"""Exact discrete Laplace noise for published counts (Canonne, Kamath & Steinke 2020).

``P(k) ∝ exp(-|k| / scale)`` for integer ``k``. Sampled with integer arithmetic only: the
scale is a ``Fraction`` ``t/s``, Bernoulli(exp(-n/d)) trials are decided by comparing
``randbelow`` draws with integers (CKS Algorithm 1), and the two-sided geometric is built
from them (CKS Algorithm 2). There is no floating point in the sampling path, so there are
no rounding artefacts or timing leaks from ``log``/``exp`` (Mironov 2012). Randomness comes
from ``secrets.randbelow``; a deterministic ``randbelow`` may be injected for tests only.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Callable
from fractions import Fraction

RandBelow = Callable[[int], int]


def _bernoulli(num: int, den: int, randbelow: RandBelow) -> bool:
    """True with probability num/den (0 ≤ num ≤ den)."""
    return randbelow(den) < num


def _bernoulli_exp_le1(num: int, den: int, randbelow: RandBelow) -> bool:
    """True with probability exp(-num/den) for 0 ≤ num/den ≤ 1 (CKS Algorithm 1, first part)."""
    k = 1
    while _bernoulli(num, den * k, randbelow):
        k += 1
    return k % 2 == 1


def bernoulli_exp(num: int, den: int, randbelow: RandBelow) -> bool:
    """True with probability exp(-num/den) for any rational num/den ≥ 0."""
    whole, rest = divmod(num, den)
    for _ in range(whole):
        if not _bernoulli_exp_le1(1, 1, randbelow):
            return False
    return _bernoulli_exp_le1(rest, den, randbelow)


class DiscreteLaplace:
    """Exact sampler of integer noise with P(k) ∝ exp(-|k| / scale)."""

    def __init__(self, scale: Fraction | int, randbelow: RandBelow | None = None) -> None:
        if isinstance(scale, float) or not isinstance(scale, Fraction | int):
            raise TypeError("scale must be an int or a Fraction (exact), not a float")
        scale = Fraction(scale)
        if scale <= 0:
            raise ValueError("scale must be > 0")
        self.scale = scale
        self._t = scale.numerator  # scale = t / s
        self._s = scale.denominator
        self._randbelow = randbelow or secrets.randbelow

    def sample(self) -> int:
        """One noise value (CKS Algorithm 2)."""
        t, s, rb = self._t, self._s, self._randbelow
        while True:
            u = rb(t)
            if not bernoulli_exp(u, t, rb):
                continue
            v = 0
            while bernoulli_exp(1, 1, rb):
                v += 1
            y = (u + t * v) // s
            negative = rb(2) == 1
            if negative and y == 0:
                continue
            return -y if negative else y

    def variance(self) -> float:
        """Analytic variance 2q / (1 - q)^2 with q = exp(-1/scale) (for reports only)."""
        q = math.exp(-1.0 / float(self.scale))
        return 2 * q / (1 - q) ** 2

    def pmf(self, k: int) -> float:
        """Analytic probability of ``k`` (for goodness-of-fit tests and reports only)."""
        q = math.exp(-1.0 / float(self.scale))
        return (1 - q) / (1 + q) * q ** abs(k)
