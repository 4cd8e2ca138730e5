"""The noise sampler's input checks and its reported variance, at their boundaries."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest

from edge.privacy.noise import DiscreteLaplace


@pytest.mark.parametrize("scale", [2.0, "2", None])
def test_a_scale_that_is_not_exact_is_refused_by_type(scale: object) -> None:
    with pytest.raises(TypeError) as err:
        DiscreteLaplace(scale)  # type: ignore[arg-type]
    assert str(err.value) == "scale must be an int or a Fraction (exact), not a float"


@pytest.mark.parametrize("scale", [0, -1, Fraction(-1, 3)])
def test_a_scale_that_is_not_positive_is_refused(scale: int | Fraction) -> None:
    with pytest.raises(ValueError) as err:
        DiscreteLaplace(scale)
    assert str(err.value) == "scale must be > 0"


@pytest.mark.parametrize("scale", [1, Fraction(1, 3), Fraction(7, 2)])
def test_the_smallest_positive_scales_are_taken_exactly(scale: int | Fraction) -> None:
    noise = DiscreteLaplace(scale)
    assert noise.scale == Fraction(scale)


@pytest.mark.parametrize("scale", [1, 2, Fraction(9, 2)])
def test_variance_is_the_second_moment_of_the_pmf(scale: int | Fraction) -> None:
    noise = DiscreteLaplace(scale)
    second_moment = sum(k * k * noise.pmf(k) for k in range(-400, 401))
    assert noise.variance() == pytest.approx(second_moment, rel=1e-9)
    q = math.exp(-1.0 / float(scale))
    assert noise.variance() == pytest.approx(2 * q / (1 - q) ** 2, rel=1e-12)
