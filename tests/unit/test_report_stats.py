"""Interval and test statistics of the weekly report, against published values and a hand example."""

import math

import pytest

from semtel_dagster.core.insights.stats import benjamini_hochberg, mean_interval, two_proportion_p, wilson_interval


@pytest.mark.parametrize(
    ("x", "n", "low", "high"),
    [
        (81, 263, 0.2553, 0.3662),  # Wilson (1927) as tabulated by Newcombe (1998), Table I, example 1 (95 %)
        (15, 148, 0.0624, 0.1605),  # Newcombe (1998), example 2
        (0, 20, 0.0, 0.1611),  # Newcombe (1998), example 3: zero events
        (1, 29, 0.0061, 0.1718),  # Newcombe (1998), example 4
    ],
)
def test_wilson_matches_newcombe(x, n, low, high):
    got = wilson_interval(x, n)
    assert got == pytest.approx((low, high), abs=1e-4)


def test_wilson_without_trials_is_uninformative():
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_two_proportion_p_matches_the_z_test():
    # 60/100 vs 45/100: pooled 0.525, z = 0.15 / sqrt(0.525 * 0.475 * 0.02) = 2.1243, p = 0.03365
    assert two_proportion_p(60, 100, 45, 100) == pytest.approx(0.03365, abs=1e-4)
    assert two_proportion_p(0, 50, 0, 80) == 1.0  # both zero: nothing to detect


def test_benjamini_hochberg_by_hand():
    # p sorted: 0.01 0.02 0.03 0.04 0.20 (m = 5); p * m / rank = 0.05 0.05 0.05 0.05 0.20, minimum from the top
    p = [0.04, 0.01, 0.20, 0.03, 0.02]
    assert benjamini_hochberg(p) == pytest.approx([0.05, 0.05, 0.20, 0.05, 0.05])
    # 0.001 0.008 0.039 0.041 0.042 0.06 (m = 6) -> 0.006 0.024 0.0504 0.0504 0.0504 0.06
    assert benjamini_hochberg([0.041, 0.001, 0.06, 0.008, 0.039, 0.042]) == pytest.approx(
        [0.0504, 0.006, 0.06, 0.024, 0.0504, 0.0504]
    )
    assert benjamini_hochberg([]) == []


def test_mean_interval():
    mean, low, high = mean_interval([1.0, 2.0, 3.0, 4.0])
    half = 1.959963984540054 * math.sqrt(5 / 3) / 2
    assert (mean, low, high) == pytest.approx((2.5, 2.5 - half, 2.5 + half))
    assert mean_interval([7.0]) == (7.0, 7.0, 7.0)
