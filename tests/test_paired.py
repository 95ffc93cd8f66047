"""pgan.bench.paired: paired differences over seeds, their t-interval and the seed count a target needs."""

import math

import numpy as np
import pytest

from pgan.bench.paired import paired_difference, seeds_for_half_width, t975, t_interval


def test_t_quantiles_match_tables_and_approach_the_normal():
    assert t975(1) == 12.706 and t975(4) == 2.776 and t975(30) == 2.042
    assert t975(40) == pytest.approx(2.021, abs=1e-3)  # tables: t_0.975(40) = 2.021
    assert t975(120) == pytest.approx(1.980, abs=1e-3)
    with pytest.raises(ValueError):
        t975(0)


def test_interval_of_paired_differences():
    lo, hi = t_interval([0.01, 0.02, 0.03])
    half = 4.303 * 0.01 / math.sqrt(3)
    assert (lo, hi) == (pytest.approx(0.02 - half), pytest.approx(0.02 + half))
    assert all(math.isnan(v) for v in t_interval([0.5]))


def test_paired_difference_uses_only_seeds_both_variants_have():
    values = {("a", 0): 0.60, ("b", 0): 0.58, ("a", 1): 0.62, ("b", 1): 0.61, ("a", 2): 0.70}
    d = paired_difference(values, "a", "b")
    assert d["seeds"] == [0, 1] and d["diffs"] == pytest.approx([0.02, 0.01])
    assert d["diff_mean"] == pytest.approx(0.015) and d["diff_sd"] == pytest.approx(np.std([0.02, 0.01], ddof=1))
    lo, hi = d["diff_ci95"]
    assert lo < 0.015 < hi
    assert paired_difference(values, "a", "missing") is None


def test_seed_count_for_a_target_half_width():
    n = seeds_for_half_width(0.035, 0.01)  # the hard setting's PGAN - nopam spread, +-1 mAP
    assert t975(n - 1) * 0.035 / math.sqrt(n) <= 0.01 < t975(n - 2) * 0.035 / math.sqrt(n - 1)
    assert 45 <= n <= 55
    assert seeds_for_half_width(0.0, 0.01) == 2
    assert seeds_for_half_width(1.0, 0.001, max_seeds=10) == 11
