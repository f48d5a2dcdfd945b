"""Paired comparison of two trainers on the same cases, and Holm's correction across a table of tests."""
from typing import List, Optional, Sequence

import numpy as np

BOOTSTRAP_SAMPLES = 10000


def paired_statistics(differences: np.ndarray, rng: np.random.Generator, tie_tolerance: float,
                      higher_is_better: bool = True) -> dict:
    """Statistics of per-case differences B - A: mean and median, a percentile bootstrap 95% CI of the mean,
    wins / ties / losses of B (|difference| <= tie_tolerance is a tie; a win is a higher value, or a lower one when
    lower is better, as for distances) and the two-sided Wilcoxon signed-rank p (None when every difference is 0)."""
    from scipy.stats import wilcoxon

    differences = np.asarray(differences, dtype=float)
    n = differences.size
    better = differences if higher_is_better else -differences
    stats = {"n_pairs": int(n), "mean_difference": float(differences.mean()) if n else None,
             "median_difference": float(np.median(differences)) if n else None,
             "wins": int((better > tie_tolerance).sum()), "ties": int((np.abs(differences) <= tie_tolerance).sum()),
             "losses": int((better < -tie_tolerance).sum()), "wilcoxon_p": None, "bootstrap_ci95": None}
    if n >= 2:
        resampled = differences[rng.integers(0, n, size=(BOOTSTRAP_SAMPLES, n))].mean(axis=1)
        stats["bootstrap_ci95"] = [float(np.percentile(resampled, 2.5)), float(np.percentile(resampled, 97.5))]
    if n >= 1 and np.any(differences != 0):
        stats["wilcoxon_p"] = float(wilcoxon(differences).pvalue)
    return stats


def holm(p_values: Sequence[Optional[float]]) -> List[Optional[float]]:
    """Holm's step-down adjusted p-values, in the input's order; None (no test) stays None and is not counted."""
    tested = [(p, i) for i, p in enumerate(p_values) if p is not None]
    adjusted: List[Optional[float]] = [None] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(sorted(tested)):
        running = max(running, min(1.0, (len(tested) - rank) * p))
        adjusted[i] = running
    return adjusted
