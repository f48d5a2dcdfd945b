"""Paired comparison of two trainers on the same cases: the verdict's t interval on per-fold mean differences,
case-level bootstrap and Wilcoxon (descriptive), the two-level bootstrap's share of resamples in which B is better,
Holm's correction within a family of rows, and the verdict rule.

Why a t interval on the folds: a training is the unit that varies (nnU-Net's folds are separate trainings), and with
k folds the mean of the k per-fold differences has k - 1 degrees of freedom. The percentile two-level bootstrap used
before covered the truth in only 74-89% of simulated studies at 2-5 folds; this interval keeps 95% (docs/compare.md,
scripts/calibrate_compare.py)."""
import math
import zlib
from typing import Dict, List, Optional, Sequence

import numpy as np

BOOTSTRAP_SAMPLES = 10000
ALPHA = 0.05
POWER = 0.8
# The equivalence margin per metric when none is given: B - A within +-margin is "no difference that matters".
DEFAULT_MARGINS = {"dice": 0.01, "nsd": 0.01, "hd95": 1.0}
OUTCOMES = ("better", "worse", "equivalent", "inconclusive")
CI_METHOD = "t interval on the per-fold mean differences B - A, k - 1 degrees of freedom"


def verdict_rule(margins: Dict[str, float]) -> str:
    """The four-outcome rule, with the margins it was judged against."""
    stated = ", ".join(f"{m} ±{v:g}" for m, v in margins.items())
    return (f"Per training (fold) the mean difference B - A over its validation cases; the estimate is the mean of "
            f"those k per-fold differences and its 95% CI a t interval with k - 1 degrees of freedom (folds taken as "
            f"independent trainings: docs/compare.md). B is **better** (or **worse**) when the two-sided t test of "
            f"that estimate against 0, Holm-adjusted within its family (the headline rows of a metric, or its "
            f"per-class rows), gives p < {ALPHA}, in the estimate's direction; **equivalent** when the 95% CI lies "
            f"inside [-margin, +margin] (two one-sided tests at 2.5% each; margins fixed before the run: {stated}); "
            f"**inconclusive** otherwise, and always from fewer than 2 folds. Detectable: the smallest difference "
            f"this study would detect at the 5% level with {POWER:.0%} power, (t_0.975 + t_0.80) x the standard "
            f"error at its degrees of freedom. Folds needed: the fewest folds (trainings per trainer) whose t "
            f"interval, at the observed spread between folds, would lie inside ±margin (or exclude 0 at the observed "
            f"difference). Headline on the foreground mean (per case, the mean over classes); per class in the "
            f"tables. A class empty in both reference and prediction scores as perfect in every metric.")


def row_rng(seed: int, *key: str) -> np.random.Generator:
    """A generator seeded from the row's own key, so that one row's resampling never depends on other rows."""
    return np.random.default_rng([seed, zlib.crc32("|".join(map(str, key)).encode())])


def paired_statistics(differences: np.ndarray, rng: np.random.Generator, tie_tolerance: float,
                      higher_is_better: bool = True, samples: int = BOOTSTRAP_SAMPLES) -> dict:
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
        resampled = differences[rng.integers(0, n, size=(samples, n))].mean(axis=1)
        stats["bootstrap_ci95"] = _percentile_ci(resampled)
    if n >= 1 and np.any(differences != 0):
        stats["wilcoxon_p"] = float(wilcoxon(differences).pvalue)
    return stats


def _percentile_ci(samples: np.ndarray) -> List[float]:
    return [float(np.percentile(samples, 2.5)), float(np.percentile(samples, 97.5))]


def two_level_bootstrap(differences_by_fold: Sequence[np.ndarray], rng: np.random.Generator,
                        samples: int = BOOTSTRAP_SAMPLES) -> np.ndarray:
    """Bootstrap means of B - A when both the trainings (folds) and the cases vary (the verdict's interval before the
    t interval; kept for share_b_better and for contrast in the calibration study): each sample draws as many folds
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


def fold_t_interval(differences_by_fold: Sequence[np.ndarray]) -> dict:
    """The verdict's statistics from per-fold differences: estimate (the mean of the per-fold mean differences), its
    standard error, degrees of freedom (folds - 1), the 95% t interval and the two-sided t-test p against 0. Without
    two folds with cases only the estimate; with no spread between folds the interval is the estimate itself and p
    is 0 (or None when the estimate is 0 too)."""
    from scipy.stats import t

    means = np.array([np.mean(d) for d in differences_by_fold if len(d)], dtype=float)
    k = means.size
    result = {"estimate": float(means.mean()) if k else None, "hierarchical_se": None, "df": None,
              "hierarchical_ci95": None, "t_p": None}
    if k < 2:
        return result
    estimate, se = float(means.mean()), float(means.std(ddof=1) / math.sqrt(k))
    half = float(t.ppf(1 - ALPHA / 2, k - 1)) * se
    p = (None if estimate == 0 else 0.0) if se == 0 else float(2 * t.sf(abs(estimate) / se, k - 1))
    return {**result, "hierarchical_se": se, "df": k - 1, "hierarchical_ci95": [estimate - half, estimate + half],
            "t_p": p}


def share_b_better(differences_by_fold: Sequence[np.ndarray], rng: np.random.Generator, higher_is_better: bool,
                   samples: int = BOOTSTRAP_SAMPLES) -> Optional[float]:
    """The share of two-level bootstrap resamples (folds, then cases) whose mean favours B: descriptive, not a
    probability that B is better, and not used by the verdict. None from fewer than two folds."""
    if sum(len(d) > 0 for d in differences_by_fold) < 2:
        return None
    means = two_level_bootstrap(differences_by_fold, rng, samples)
    return float((means > 0 if higher_is_better else means < 0).mean())


def verdict(ci: Optional[Sequence[float]], p_holm: Optional[float], estimate: Optional[float],
            higher_is_better: bool, margin: float, n_folds: int) -> str:
    """verdict_rule for one row: "better", "worse", "equivalent" or "inconclusive" (B against A)."""
    if ci is None or estimate is None or n_folds < 2:
        return "inconclusive"
    if p_holm is not None and p_holm < ALPHA and estimate != 0:
        return "better" if (estimate > 0) == higher_is_better else "worse"
    if -margin <= ci[0] and ci[1] <= margin:
        return "equivalent"
    return "inconclusive"


def minimal_detectable_difference(se: Optional[float], df: Optional[int]) -> Optional[float]:
    """The smallest true difference a study with this standard error and degrees of freedom detects with a
    two-sided 5% t test and 80% power ((t_0.975 + t_0.80) x SE, the usual approximation)."""
    from scipy.stats import t

    if se is None or df is None:
        return None
    return float((t.ppf(1 - ALPHA / 2, df) + t.ppf(POWER, df)) * se)


def folds_needed(estimate: Optional[float], se: Optional[float], n_folds: int, margin: float) -> dict:
    """The fewest folds (trainings per trainer) that would settle the question if the spread between per-fold
    differences and the estimate stay as observed, with the t quantile of each candidate's own degrees of freedom:
    "equivalence" (95% CI inside ±margin; None when the estimate is at or beyond the margin) and "exclude_zero" (95%
    CI excludes 0; None when the estimate is 0). None for both without a standard error."""
    from scipy.stats import t

    if estimate is None or se is None or se == 0:
        return {"equivalence": None, "exclude_zero": None}
    spread = se * math.sqrt(n_folds)

    def settles(k: int, target: float) -> bool:
        return t.ppf(1 - ALPHA / 2, k - 1) * spread / math.sqrt(k) < target

    def fewest(target: float) -> Optional[int]:
        if target <= 0:
            return None
        low, high = 1, 2  # settles(low) is false (one fold: no interval), settles(high) is searched for
        while not settles(high, target):
            low, high = high, 2 * high
        while high - low > 1:  # the half-width falls as the folds grow
            middle = (low + high) // 2
            low, high = (low, middle) if settles(middle, target) else (middle, high)
        return high

    return {"equivalence": fewest(margin - abs(estimate)) if abs(estimate) < margin else None,
            "exclude_zero": fewest(abs(estimate)) if estimate != 0 else None}


def holm(p_values: Sequence[Optional[float]]) -> List[Optional[float]]:
    """Holm's step-down adjusted p-values, in the input's order; None (no test) stays None and is not counted."""
    tested = [(p, i) for i, p in enumerate(p_values) if p is not None]
    adjusted: List[Optional[float]] = [None] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(sorted(tested)):
        running = max(running, min(1.0, (len(tested) - rank) * p))
        adjusted[i] = running
    return adjusted
