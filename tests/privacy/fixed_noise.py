"""A noise source for release tests that always draws the same value.

The releases' suppression and payloads are decided on the noisy count; pinning the draw makes
the count at k, k − 1 and k + draw exact. The sampler itself is tested in test_noise.py.
"""

from __future__ import annotations

from edge.privacy.noise import DiscreteLaplace


class FixedNoise(DiscreteLaplace):
    """Discrete Laplace noise that always draws ``value``."""

    def __init__(self, value: int) -> None:
        super().__init__(1)
        self.value = value

    def sample(self) -> int:
        return self.value
