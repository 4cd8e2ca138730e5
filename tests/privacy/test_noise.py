"""The exact discrete Laplace sampler: right distribution, integers only, no float in sight."""

from __future__ import annotations

import random
from collections import Counter
from fractions import Fraction

import pytest
from scipy import stats

from edge.privacy.noise import DiscreteLaplace, bernoulli_exp

ALPHA = 0.001  # fixed significance level of the goodness-of-fit test
N = 120_000


def _chi_square_p(samples: list[int], scale: Fraction) -> float:
    """p-value of a chi-square test of ``samples`` against DLap(scale), tails merged."""
    ref = DiscreteLaplace(scale)
    counts = Counter(samples)
    lo = hi = 0
    while N * ref.pmf(lo - 1) >= 5:
        lo -= 1
    while N * ref.pmf(hi + 1) >= 5:
        hi += 1
    observed, expected = [], []
    for k in range(lo, hi + 1):
        observed.append(counts.get(k, 0))
        expected.append(N * ref.pmf(k))
    tail_p = 1.0 - sum(ref.pmf(k) for k in range(lo, hi + 1))
    observed.append(sum(v for k, v in counts.items() if k < lo or k > hi))
    expected.append(N * tail_p)
    scale_exp = sum(observed) / sum(expected)
    expected = [e * scale_exp for e in expected]
    return float(stats.chisquare(observed, expected).pvalue)


@pytest.mark.parametrize("scale", [Fraction(3), Fraction(7, 2)])
def test_samples_fit_the_discrete_laplace_distribution(scale: Fraction) -> None:
    sampler = DiscreteLaplace(scale, random.Random(0).randrange)
    samples = [sampler.sample() for _ in range(N)]
    assert _chi_square_p(samples, scale) > ALPHA


def test_the_fit_test_rejects_a_wrong_scale() -> None:
    wrong = DiscreteLaplace(Fraction(33, 10), random.Random(0).randrange)  # 10 % too wide
    samples = [wrong.sample() for _ in range(N)]
    assert _chi_square_p(samples, Fraction(3)) < ALPHA


def test_sampling_uses_integers_only() -> None:
    rng = random.Random(5)
    seen_args: set[type] = set()

    def randbelow(n: int) -> int:
        seen_args.add(type(n))
        return rng.randrange(n)

    sampler = DiscreteLaplace(Fraction(2592), randbelow)
    values = [sampler.sample() for _ in range(2000)]
    assert seen_args == {int}
    assert {type(v) for v in values} == {int}
    with pytest.raises(TypeError):
        DiscreteLaplace(3.0)  # type: ignore[arg-type]


def test_bernoulli_exp_is_exact_in_expectation() -> None:
    rng = random.Random(9)
    for num, den in ((0, 1), (1, 2), (3, 2), (5, 1)):
        hits = sum(bernoulli_exp(num, den, rng.randrange) for _ in range(40_000))
        expected = pytest.approx(2.718281828459045 ** (-num / den), abs=0.01)
        assert hits / 40_000 == expected


def test_default_source_is_secrets() -> None:
    import secrets

    assert DiscreteLaplace(3)._randbelow is secrets.randbelow
