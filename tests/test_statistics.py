"""Paired statistics and Holm's correction on inputs whose answers are known by hand."""
import numpy as np
import pytest

from nnunet_attention.compare.statistics import holm, paired_statistics


def test_paired_statistics_against_hand_computed_values():
    d = np.array([0.1, 0.2, -0.05, 0.0005, 0.3])
    s = paired_statistics(d, np.random.default_rng(0), tie_tolerance=1e-3)
    assert s["n_pairs"] == 5
    assert s["mean_difference"] == pytest.approx(0.1101)
    assert s["median_difference"] == pytest.approx(0.1)
    assert (s["wins"], s["ties"], s["losses"]) == (3, 1, 1)  # 0.0005 <= tie tolerance
    # exact Wilcoxon: ranks of |d| 1..5, W- = 2 (the -0.05); P(W- <= 2) = 3/32 one-sided, 6/32 two-sided
    assert s["wilcoxon_p"] == pytest.approx(6 / 32)
    low, high = s["bootstrap_ci95"]
    assert d.min() <= low < s["mean_difference"] < high <= d.max()


def test_for_distances_a_lower_value_is_the_win():
    s = paired_statistics(np.array([-2.0, -1.0, 0.5]), np.random.default_rng(0), tie_tolerance=0.01,
                          higher_is_better=False)
    assert (s["wins"], s["ties"], s["losses"]) == (2, 0, 1)


def test_paired_statistics_of_identical_results_and_of_too_few_pairs():
    same = paired_statistics(np.zeros(4), np.random.default_rng(0), 1e-3)
    assert same["wilcoxon_p"] is None and same["ties"] == 4 and same["bootstrap_ci95"] == [0.0, 0.0]
    empty = paired_statistics(np.array([]), np.random.default_rng(0), 1e-3)
    assert empty["n_pairs"] == 0 and empty["mean_difference"] is None and empty["bootstrap_ci95"] is None


def test_holm_against_hand_computed_values():
    # sorted 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1 = 0.02, 0.03, 0.06, 0.04 -> monotone 0.02, 0.03, 0.06, 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, None, 0.6]) == [pytest.approx(1.0), None, pytest.approx(1.0)]
    assert holm([]) == []
