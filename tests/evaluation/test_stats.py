"""Benchmark statistics on hand-computed numbers: mean, sample std, paired differences with t-intervals."""

from __future__ import annotations

import math

import pytest

from msad.evaluation.stats import paired_difference, runs_needed, summarize, t_quantile


def test_summary_mean_and_sample_std() -> None:
    # 8.04, 9.05, 9.63: mean 26.72 / 3 = 8.906667; squared deviations 0.751111, 0.020544, 0.523211 -> 1.294867 / 2
    s = summarize([8.04, 9.05, 9.63])
    assert s.mean == pytest.approx(8.906667, abs=1e-6)
    assert s.std == pytest.approx(math.sqrt(1.294867 / 2), abs=1e-5)
    assert s.n == 3 and str(s) == "8.91 ± 0.80 (n=3)"
    one = summarize([5.0])
    assert one.mean == 5.0 and math.isnan(one.std) and str(one) == "5.00 (n=1)"
    with pytest.raises(ValueError, match="at least one"):
        summarize([])


@pytest.mark.parametrize(("df", "value"), [(1, 12.706), (2, 4.303), (4, 2.776), (9, 2.262), (29, 2.045)])
def test_t_quantile_matches_the_table(df: int, value: float) -> None:
    assert t_quantile(df) == pytest.approx(value, abs=1e-3)


def test_t_quantile_other_confidence_and_checks() -> None:
    assert t_quantile(2, 0.90) == pytest.approx(2.920, abs=1e-3)
    with pytest.raises(ValueError, match="degrees of freedom"):
        t_quantile(0)
    with pytest.raises(ValueError, match="confidence"):
        t_quantile(3, 1.0)


def test_paired_difference_by_hand() -> None:
    # differences 1, 2, 3: mean 2, sample std 1, half width 4.303 * 1 / sqrt(3) = 2.4843
    d = paired_difference([11.0, 22.0, 33.0], [10.0, 20.0, 30.0])
    assert (d.mean, d.std, d.n) == (2.0, 1.0, 3)
    half = 4.303 * 1.0 / math.sqrt(3)
    assert d.low == pytest.approx(2.0 - half, abs=1e-3) and d.high == pytest.approx(2.0 + half, abs=1e-3)
    assert d.verdict == "undecided"  # [-0.48, +4.48] contains 0
    assert str(d) == "+2.00 [-0.48, +4.48] (n=3)"


def test_paired_difference_decides_only_when_the_interval_excludes_zero() -> None:
    # differences 2.0, 2.2, 1.8: mean 2, std 0.2, half width 4.303 * 0.2 / sqrt(3) = 0.4969
    better = paired_difference([12.0, 12.2, 11.8], [10.0, 10.0, 10.0])
    assert better.low == pytest.approx(2.0 - 0.4969, abs=1e-3) and better.verdict == "> 0"
    worse = paired_difference([10.0, 10.0, 10.0], [12.0, 12.2, 11.8])
    assert worse.high == pytest.approx(-2.0 + 0.4969, abs=1e-3) and worse.verdict == "< 0"
    single = paired_difference([3.0], [1.0])
    assert single.mean == 2.0 and math.isnan(single.low) and single.verdict == "undecided"
    with pytest.raises(ValueError, match="same, non-zero length"):
        paired_difference([1.0, 2.0], [1.0])


def test_runs_needed_estimate() -> None:
    # mean 2, std 1: n = 3 gives 4.303/sqrt(3) = 2.48 > 2; n = 4 gives 3.182/2 = 1.59 < 2
    d = paired_difference([11.0, 22.0, 33.0], [10.0, 20.0, 30.0])
    assert runs_needed(d) == 4
    assert runs_needed(paired_difference([1.0, 1.0], [1.0, 1.0])) is None  # no effect measured
    assert runs_needed(paired_difference([1.0, -1.0, 1.0, -1.0], [0.9, -0.9, 1.1, -1.1]), limit=10) is None
