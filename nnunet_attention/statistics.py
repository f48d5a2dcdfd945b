"""Paired comparison of two trainers on the same cases: case-level and two-level (fold, then case) bootstrap,
Wilcoxon, Holm's correction across a table of tests, and the verdict rule."""
import zlib
from typing import List, Optional, Sequence

import numpy as np

BOOTSTRAP_SAMPLES = 10000
ALPHA = 0.05
VERDICT_RULE = (f"B is **better** (or **worse**) on a metric when the 95% two-level bootstrap CI of the mean "
                f"difference B - A (folds resampled, then cases within each drawn fold) excludes 0 in B's favour "
                f"(or against it) **and** the Holm-adjusted Wilcoxon p < {ALPHA}; otherwise **no detectable "
                f"difference**. Judged on the foreground mean (per case, the mean over classes).")


def row_rng(seed: int, *key: str) -> np.random.Generator:
    """A generator seeded from the row's own key, so that one row's resampling never depends on other rows."""
    return np.random.default_rng([seed, zlib.crc32("|".join(map(str, key)).encode())])


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
        stats["bootstrap_ci95"] = _percentile_ci(resampled)
    if n >= 1 and np.any(differences != 0):
        stats["wilcoxon_p"] = float(wilcoxon(differences).pvalue)
    return stats


def _percentile_ci(samples: np.ndarray) -> List[float]:
    return [float(np.percentile(samples, 2.5)), float(np.percentile(samples, 97.5))]


def two_level_bootstrap(differences_by_fold: Sequence[np.ndarray], rng: np.random.Generator,
                        samples: int = BOOTSTRAP_SAMPLES) -> np.ndarray:
    """Bootstrap means of B - A when both the trainings (folds) and the cases vary: each sample draws as many folds
    as there are, with replacement, then within each drawn fold as many cases as it has, with replacement, and
    takes the mean over all drawn cases. Folds without cases are left out; no folds give an empty array."""
    folds = [np.asarray(d, dtype=float) for d in differences_by_fold if len(d)]
    k = len(folds)
    if k == 0:
        return np.empty(0)
    chosen = rng.integers(0, k, size=(samples, k))
    totals, counts = np.zeros(samples), np.zeros(samples)
    for slot in range(k):
        for index, fold in enumerate(folds):
            drawn = chosen[:, slot] == index
            cases = rng.integers(0, fold.size, size=(int(drawn.sum()), fold.size))
            totals[drawn] += fold[cases].sum(axis=1)
            counts[drawn] += fold.size
    return totals / counts


def hierarchical_statistics(differences_by_fold: Sequence[np.ndarray], rng: np.random.Generator,
                            higher_is_better: bool = True) -> dict:
    """The two-level bootstrap's 95% CI of the mean difference and the share of samples in which B is better."""
    means = two_level_bootstrap(differences_by_fold, rng)
    if means.size == 0 or sum(len(d) > 0 for d in differences_by_fold) < 2:
        return {"hierarchical_ci95": None, "p_b_better": None}
    better = means > 0 if higher_is_better else means < 0
    return {"hierarchical_ci95": _percentile_ci(means), "p_b_better": float(better.mean())}


def verdict(ci: Optional[Sequence[float]], p_holm: Optional[float], higher_is_better: bool) -> str:
    """VERDICT_RULE for one metric: "better", "worse" or "no detectable difference" (B against A)."""
    if ci is None or p_holm is None or p_holm >= ALPHA or ci[0] <= 0 <= ci[1]:
        return "no detectable difference"
    return "better" if (ci[0] > 0) == higher_is_better else "worse"


def holm(p_values: Sequence[Optional[float]]) -> List[Optional[float]]:
    """Holm's step-down adjusted p-values, in the input's order; None (no test) stays None and is not counted."""
    tested = [(p, i) for i, p in enumerate(p_values) if p is not None]
    adjusted: List[Optional[float]] = [None] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(sorted(tested)):
        running = max(running, min(1.0, (len(tested) - rank) * p))
        adjusted[i] = running
    return adjusted
