"""Statistics of the long-form table (read.py), as pure functions: the pairs of B against A, and per dataset x
configuration x class (and the foreground mean) x metric the case-level and two-level statistics, per-fold
differences, differences by reference-structure size, the worst cases, the verdict and its warnings."""
from typing import Dict, List, Optional, Sequence

import pandas as pd

from nnunet_attention.compare.read import METRICS
from nnunet_attention.compare.statistics import (BOOTSTRAP_SAMPLES, CI_METHOD, DEFAULT_MARGINS, fold_t_interval,
                                         folds_needed, holm, minimal_detectable_difference, paired_statistics,
                                         row_rng, share_b_better, verdict)

FOREGROUND = "foreground_mean"
MIN_FOLDS, MIN_PAIRS = 3, 30
ROW_KEY = ["dataset", "configuration", "class", "metric"]
VERDICT_KEYS = ("mean_difference", "estimate", "hierarchical_ci95", "ci_method", "df", "bootstrap_ci95", "t_p",
                "p_holm", "holm_family", "p_b_better", "margin", "hierarchical_se", "minimal_detectable_difference",
                "folds_needed", "n_folds", "n_pairs", "excluded_nan_pairs")
HOLM_FAMILIES = {"headline": "the foreground-mean rows of the metric (every dataset x configuration)",
                 "per class": "the per-class rows of the metric (every dataset x configuration x class)"}


def with_foreground_mean(table: pd.DataFrame) -> pd.DataFrame:
    """The table plus, per case and metric, class "foreground_mean": the mean over classes (NaN classes left out,
    as nnU-Net's foreground mean does), with the reference volumes summed."""
    per_case = ["dataset", "configuration", "trainer", "fold", "case", "metric"]
    mean = table.groupby(per_case, sort=False).agg(value=("value", "mean"), reference_mm3=("reference_mm3", "sum"))
    mean = mean.reset_index().assign(**{"class": FOREGROUND, "empty": ""})
    return pd.concat([table, mean[table.columns]], ignore_index=True)


def pairs(table: pd.DataFrame, trainers: Sequence[str]) -> pd.DataFrame:
    """One row per dataset, configuration, class, metric, fold and case validated by both trainers: a and b (the
    two trainers' values, NaN kept), difference b - a, and the reference volume."""
    index = [*ROW_KEY, "fold", "case"]
    a, b = (table[table["trainer"] == t].set_index(index) for t in trainers)
    joined = a[["value", "reference_mm3"]].join(b[["value"]].add_suffix("_b"), how="inner")
    joined = joined.rename(columns={"value": "a", "value_b": "b"})
    return joined.assign(difference=joined["b"] - joined["a"]).reset_index()


def row_statistics(row: pd.DataFrame, metric: str, key: Sequence[str], seed: int,
                   bootstrap_samples: int = BOOTSTRAP_SAMPLES) -> dict:
    """Case-level and fold-level statistics of one dataset x configuration x class x metric, seeded by its key."""
    _, higher_is_better, tie = METRICS[metric]
    kept = row.dropna(subset=["a", "b"])
    rng = row_rng(seed, *key)
    stats = paired_statistics(kept["difference"].to_numpy(), rng, tie, higher_is_better, bootstrap_samples)
    by_fold = {fold: group["difference"].to_numpy() for fold, group in kept.groupby("fold", sort=True)}
    stats.update(fold_t_interval(list(by_fold.values())), ci_method=CI_METHOD,
                 p_b_better=share_b_better(list(by_fold.values()), rng, higher_is_better, bootstrap_samples))
    stats.update(mean_a=float(kept["a"].mean()) if len(kept) else None,
                 mean_b=float(kept["b"].mean()) if len(kept) else None,
                 excluded_nan_pairs=int(len(row) - len(kept)), n_folds=len(by_fold),
                 per_fold_difference={str(f): float(d.mean()) for f, d in by_fold.items()})
    return stats


def size_terciles(row: pd.DataFrame) -> List[dict]:
    """Mean difference by tercile of the reference structure's volume (cases with a reference only)."""
    kept = row.dropna(subset=["a", "b"])
    kept = kept[kept["reference_mm3"] > 0]
    if len(kept) < 3:
        return []
    groups = pd.qcut(kept["reference_mm3"].rank(method="first"), 3, labels=["small", "medium", "large"])
    return [{"tercile": str(name), "n": int(len(group)), "volume_mm3": [float(group["reference_mm3"].min()),
                                                                          float(group["reference_mm3"].max())],
             "mean_difference": float(group["difference"].mean())}
            for name, group in kept.groupby(groups, observed=True)]


def worst_cases(row: pd.DataFrame, higher_is_better: bool, count: int = 10) -> List[dict]:
    """The count pairs where B falls furthest behind A."""
    kept = row.dropna(subset=["a", "b"])
    order = kept.sort_values("difference", ascending=higher_is_better).head(count)
    return [{"fold": r.fold, "case": r.case, "a": float(r.a), "b": float(r.b), "difference": float(r.difference)}
            for r in order.itertuples()]


def analyse(table: pd.DataFrame, trainers: Sequence[str], seed: int = 0,
            margins: Optional[Dict[str, float]] = None) -> Dict[tuple, dict]:
    """analyse_pairs of the table's pairs, the foreground mean included."""
    return analyse_pairs(pairs(with_foreground_mean(table), trainers), seed, margins)


def analyse_pairs(paired: pd.DataFrame, seed: int = 0, margins: Optional[Dict[str, float]] = None,
                  bootstrap_samples: int = BOOTSTRAP_SAMPLES) -> Dict[tuple, dict]:
    """(dataset, configuration, class, metric) -> statistics, with p_holm within the row's Holm family (HOLM_FAMILIES:
    a row's adjusted p depends only on the rows of its own family), the outcome against the metric's margin
    (DEFAULT_MARGINS where margins does not name it), what the study could detect, the folds that would settle it,
    the size terciles and, for the foreground mean, the ten worst cases. bootstrap_samples sets the descriptive
    bootstraps only (the case-level CI and p_b_better); the verdict does not resample."""
    margins = {**DEFAULT_MARGINS, **(margins or {})}
    results = {}
    for key, row in paired.groupby(ROW_KEY, sort=False):
        metric = key[3]
        results[key] = {**row_statistics(row, metric, key, seed, bootstrap_samples),
                        "size_terciles": size_terciles(row),
                        "worst_cases": worst_cases(row, METRICS[metric][1]) if key[2] == FOREGROUND else [],
                        "holm_family": "headline" if key[2] == FOREGROUND else "per class"}
    for metric in METRICS:
        for family in HOLM_FAMILIES:
            keys = [k for k in results if k[3] == metric and results[k]["holm_family"] == family]
            for k, p in zip(keys, holm([results[k]["t_p"] for k in keys])):
                results[k]["p_holm"] = p
    for (*_, metric), s in results.items():
        margin = margins[metric]
        s.update(outcome=verdict(s["hierarchical_ci95"], s["p_holm"], s["estimate"], METRICS[metric][1], margin,
                                 s["n_folds"]),
                 margin=margin, minimal_detectable_difference=minimal_detectable_difference(s["hierarchical_se"],
                                                                                           s["df"]),
                 folds_needed=folds_needed(s["estimate"], s["hierarchical_se"], s["n_folds"], margin))
    return results


def verdicts(results: Dict[tuple, dict], folds_found: Dict[tuple, Sequence]) -> List[dict]:
    """Per dataset x configuration: the verdict per metric on the foreground mean, and warnings when it stands on
    thin ground. folds_found: (dataset, configuration) -> (folds of A, folds of B)."""
    lines = []
    for (dataset, configuration), (folds_a, folds_b) in folds_found.items():
        by_metric, warnings = {}, []
        for metric in METRICS:
            s = results.get((dataset, configuration, FOREGROUND, metric))
            if s is None:
                continue
            by_metric[metric] = {"verdict": s["outcome"], **{k: s[k] for k in VERDICT_KEYS}}
        stats = results.get((dataset, configuration, FOREGROUND, "dice"), {})
        if stats.get("n_folds", 0) < MIN_FOLDS:
            warnings.append(f"{stats.get('n_folds', 0)} fold(s) paired, fewer than {MIN_FOLDS}: training randomness "
                            f"not captured (one training per trainer can differ from the next as much as two "
                            f"trainers do)")
        if stats.get("n_pairs", 0) < MIN_PAIRS:
            warnings.append(f"{stats.get('n_pairs', 0)} paired cases, fewer than {MIN_PAIRS}: the case-level "
                            f"CIs are unreliable")
        one_sided = sorted(set(map(str, folds_a)) ^ set(map(str, folds_b)))
        if one_sided:
            warnings.append(f"fold(s) {', '.join(one_sided)} validated for one trainer only (left out of the pairs)")
        lines.append({"dataset": dataset, "configuration": configuration, "metrics": by_metric,
                      "warnings": warnings})
    return lines
