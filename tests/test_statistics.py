"""compare's paired statistics on inputs whose answers are known by hand."""
import numpy as np
import pytest

from nnunet_attention.compare import TIE_TOLERANCE, _paired_statistics


def test_paired_statistics_against_hand_computed_values():
    d = np.array([0.1, 0.2, -0.05, 0.0005, 0.3])
    s = _paired_statistics(d, np.random.default_rng(0))
    assert s["n_pairs"] == 5
    assert s["mean_difference"] == pytest.approx(0.1101)
    assert s["median_difference"] == pytest.approx(0.1)
    assert (s["wins"], s["ties"], s["losses"]) == (3, 1, 1)  # 0.0005 <= tie tolerance
    assert TIE_TOLERANCE == 1e-3
    # exact Wilcoxon: ranks of |d| 1..5, W- = 2 (the -0.05); P(W- <= 2) = 3/32 one-sided, 6/32 two-sided
    assert s["wilcoxon_p"] == pytest.approx(6 / 32)
    low, high = s["bootstrap_ci95"]
    assert d.min() <= low < s["mean_difference"] < high <= d.max()


def test_paired_statistics_of_identical_results_and_of_too_few_pairs():
    same = _paired_statistics(np.zeros(4), np.random.default_rng(0))
    assert same["wilcoxon_p"] is None and same["ties"] == 4 and same["bootstrap_ci95"] == [0.0, 0.0]
    empty = _paired_statistics(np.array([]), np.random.default_rng(0))
    assert empty["n_pairs"] == 0 and empty["mean_difference"] is None and empty["bootstrap_ci95"] is None
