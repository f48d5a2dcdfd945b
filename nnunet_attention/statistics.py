"""Paired comparison of two trainers on the same cases: case-level and two-level (fold, then case) bootstrap,
Wilcoxon, Holm's correction across a table of tests, and the verdict rule."""
import zlib
import math
from typing import Dict, List, Optional, Sequence

import numpy as np

BOOTSTRAP_SAMPLES = 10000
ALPHA = 0.05
# The equivalence margin per metric when none is given: B - A within +-margin is "no difference that matters".
DEFAULT_MARGINS = {"dice": 0.01, "nsd": 0.01, "hd95": 1.0}
# (z_{1-alpha/2} + z_{power}) for a two-sided 5% test at 80% power: the minimal detectable difference is this x SE
DETECTABLE_FACTOR = 1.959964 + 0.841621
Z_95 = 1.959964
OUTCOMES = ("better", "worse", "equivalent", "inconclusive")


def verdict_rule(margins: Dict[str, float]) -> str:
    """The four-outcome rule, with the margins it was judged against."""
    stated = ", ".join(f"{m} +-{v:g}" for m, v in margins.items())
    return (f"B is **better** (or **worse**) on a metric when the 95% two-level bootstrap CI of the mean difference "
            f"B - A (folds resampled, then cases within each drawn fold) excludes 0 in B's favour (or against it) "
            f"**and** the Holm-adjusted Wilcoxon p < {ALPHA}; **equivalent** when that CI lies inside "
            f"[-margin, +margin] (margins fixed before the run: {stated}; never from fewer than 2 folds paired); "
            f"**inconclusive** otherwise (this study cannot tell). Detectable: the smallest difference this study "
            f"would detect at the 5% level with 80% power, {DETECTABLE_FACTOR:.1f} x the two-level standard error. "
            f"Folds needed: trainings per trainer that would bring the CI inside +-margin (or exclude 0 at the "
            f"observed difference), assuming the standard error shrinks with the square root of the folds. "
            f"Headline on the foreground mean (per case, the mean over classes); per class in the tables.")


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
    """The two-level bootstrap's 95% CI of the mean difference, its standard error (the samples' sd) and the
    share of samples in which B is better; None each from fewer than two folds (no training randomness seen)."""
    means = two_level_bootstrap(differences_by_fold, rng)
    if means.size == 0 or sum(len(d) > 0 for d in differences_by_fold) < 2:
        return {"hierarchical_ci95": None, "hierarchical_se": None, "p_b_better": None}
    better = means > 0 if higher_is_better else means < 0
    return {"hierarchical_ci95": _percentile_ci(means), "hierarchical_se": float(means.std(ddof=1)),
            "p_b_better": float(better.mean())}


def verdict(ci: Optional[Sequence[float]], p_holm: Optional[float], higher_is_better: bool, margin: float,
            n_folds: int) -> str:
    """verdict_rule for one metric: "better", "worse", "equivalent" or "inconclusive" (B against A)."""
    if ci is None:
        return "inconclusive"
    if p_holm is not None and p_holm < ALPHA and not ci[0] <= 0 <= ci[1]:
        return "better" if (ci[0] > 0) == higher_is_better else "worse"
    if n_folds >= 2 and -margin <= ci[0] and ci[1] <= margin:
        return "equivalent"
    return "inconclusive"


def minimal_detectable_difference(se: Optional[float]) -> Optional[float]:
    """The smallest true difference a study with this standard error detects at the 5% level with 80% power."""
    return None if se is None else DETECTABLE_FACTOR * se


def folds_needed(mean: Optional[float], se: Optional[float], n_folds: int, margin: float) -> dict:
    """About how many folds (trainings per trainer) would settle the question, if the standard error shrinks with
    the square root of the folds and the mean difference stays as observed: "equivalence" (95% CI inside
    +-margin; None when the observed difference is already at or beyond the margin) and "exclude_zero" (95% CI
    excludes 0; None when the observed difference is 0). None for both without a standard error."""
    def scaled(target_se: float) -> Optional[int]:
        return max(2, math.ceil(n_folds * (se / target_se) ** 2)) if target_se > 0 else None

    if mean is None or se is None or se == 0:
        return {"equivalence": None, "exclude_zero": None}
    return {"equivalence": scaled((margin - abs(mean)) / Z_95) if abs(mean) < margin else None,
            "exclude_zero": scaled(abs(mean) / Z_95) if mean != 0 else None}


def holm(p_values: Sequence[Optional[float]]) -> List[Optional[float]]:
    """Holm's step-down adjusted p-values, in the input's order; None (no test) stays None and is not counted."""
    tested = [(p, i) for i, p in enumerate(p_values) if p is not None]
    adjusted: List[Optional[float]] = [None] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(sorted(tested)):
        running = max(running, min(1.0, (len(tested) - rank) * p))
        adjusted[i] = running
    return adjusted
