"""Statistics of the long-form table (read.py), as pure functions: the pairs of B against A, and per dataset x
configuration x class (and the foreground mean) x metric the case-level and fold-level statistics, per-fold
differences, differences by reference-structure size, the worst cases, classes a trainer lost, the verdict and its
warnings, and the random-effects verdict across datasets.

The pairs table may carry two optional columns that describe the cross-validation: ``repeat`` (which repeat of a
repeated k-fold cross-validation a fold belongs to; fold ids unique over the whole design; absent = one
cross-validation) and ``n_train`` (the fold's training-set size, from splits_final.json; absent = the cases the
repeat's other folds validate)."""
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from nnunet_attention.compare.metrics import METRICS, PRIMARY, Margins
from nnunet_attention.compare.report import (FOREGROUND, AcrossDatasets, FoldsNeeded, LostClass, MetricStatistics,
                                             Pairing, SequentialLook, Verdict)
from nnunet_attention.compare.statistics import (BOOTSTRAP_SAMPLES, CI_METHOD, ESTIMAND, POWER, assumed_correlation,
                                                 correlated_bayes, excludes_zero, folds_needed, holds_to_correlation,
                                                 Look, holm, interval_at, look_level, mean_across_datasets,
                                                 minimal_detectable_difference, overlap_variance_factor,
                                                 paired_statistics, row_rng, share_b_better, t975,
                                                 t_interval_of_folds, verdict)

MIN_FOLDS, MIN_PAIRS = 3, 30
ROW_KEY = ["dataset", "configuration", "class", "metric"]
SEQUENTIAL_METHOD = ("repeated cross-validation judged after each whole round: O'Brien-Fleming-type alpha spending "
                     "(Lan-DeMets) on the share of planned trainings, boundaries from the joint normal of the looks "
                     "with the corrected variance's information fractions, alpha shared by Bonferroni over the "
                     "study's rows; equivalence by repeated confidence intervals at the same levels; the estimate "
                     "at stopping is not adjusted (its bias: docs/sequential.md)")
LOST_DICE = 0.0  # a class is lost in a fold when every case with the class in its reference scores Dice at most this
HOLM_FAMILIES = {"headline": "the foreground-mean rows of the metric (every dataset x configuration)",
                 "per class": "the per-class rows of the metric (every dataset x configuration x class)"}


def with_foreground_mean(table: pd.DataFrame, leave_out: frozenset = frozenset()) -> pd.DataFrame:
    """The table plus, per case and metric, class "foreground_mean": the mean over classes (NaN classes left out,
    as nnU-Net's foreground mean does), with the reference volumes summed. leave_out: (dataset, configuration, fold,
    class) whose class does not enter that fold's mean (shared_losses: both trainers lost it there, so that a class
    neither learned adds no exact 0 to the fold's difference)."""
    per_case = ["dataset", "configuration", "trainer", "fold", "case", "metric"]
    kept = table
    if leave_out:
        keys = zip(table["dataset"], table["configuration"], table["fold"].astype(str), table["class"])
        kept = table[[key not in leave_out for key in keys]]
    mean = kept.groupby(per_case, sort=False).agg(value=("value", "mean"), reference_mm3=("reference_mm3", "sum"))
    mean = mean.reset_index().assign(**{"class": FOREGROUND, "empty": ""})
    return pd.concat([table, mean[table.columns]], ignore_index=True)


def shared_losses(table: pd.DataFrame, trainers: Sequence[str]) -> frozenset:
    """(dataset, configuration, fold, class) where both trainers lost the class (lost_in_folds: Dice at most
    LOST_DICE in every case that has it)."""
    dice = table[(table["metric"] == PRIMARY) & (table["reference_mm3"] > 0)]
    lost = set()
    for (d, c, fold, name), group in dice.groupby(["dataset", "configuration", "fold", "class"], sort=False):
        by_trainer = group.groupby("trainer")["value"].apply(lambda v: bool((v.fillna(0) <= LOST_DICE).all()))
        if all(by_trainer.get(t, False) for t in trainers):
            lost.add((d, c, str(fold), name))
    return frozenset(lost)


def pairs(table: pd.DataFrame, trainers: Sequence[str]) -> pd.DataFrame:
    """One row per dataset, configuration, class, metric, fold and case validated by both trainers: a and b (the
    two trainers' values, NaN kept), difference b - a, and the reference volume."""
    index = [*ROW_KEY, "fold", "case"]
    a, b = (table[table["trainer"] == t].set_index(index) for t in trainers)
    joined = a[["value", "reference_mm3"]].join(b[["value"]].add_suffix("_b"), how="inner")
    joined = joined.rename(columns={"value": "a", "value_b": "b"})
    return joined.assign(difference=joined["b"] - joined["a"]).reset_index()


def with_design(paired: pd.DataFrame, designs: Dict[str, Dict[str, dict]]) -> pd.DataFrame:
    """The pairs with the optional repeat and n_train columns, from each dataset's splits (read.read_design: dataset ->
    fold -> {"repeat", "n_train"}); folds the splits do not name (e.g. "all") get none, and analyse_pairs infers."""
    if not any(designs.values()):
        return paired
    keys = list(zip(paired["dataset"], paired["fold"].astype(str)))
    found = [designs.get(d, {}).get(f, {}) for d, f in keys]
    return paired.assign(repeat=[e.get("repeat", 0) for e in found],
                         n_train=[e.get("n_train", np.nan) for e in found])


def row_statistics(row: pd.DataFrame, metric: str, key: Sequence[str], seed: int,
                   bootstrap_samples: int = BOOTSTRAP_SAMPLES) -> MetricStatistics:
    """Case-level and fold-level statistics of one dataset x configuration x class x metric, seeded by its key."""
    higher_is_better, tie = METRICS[metric].higher_is_better, METRICS[metric].tie_tolerance
    kept = row.dropna(subset=["a", "b"])
    rng = row_rng(seed, *key)
    cases = paired_statistics(kept["difference"].to_numpy(), rng, tie, higher_is_better, bootstrap_samples)
    by_fold = {fold: group["difference"].to_numpy() for fold, group in kept.groupby("fold", sort=True)}
    design = fold_design(kept)
    factor = overlap_variance_factor(len(by_fold), design["validation_to_training"])
    corrected, trainings = (t_interval_of_folds(list(by_fold.values()), f) for f in (factor, 1.0))
    return MetricStatistics(
        **cases, estimate=corrected["estimate"], hierarchical_se=corrected["se"], df=corrected["df"],
        hierarchical_ci95=corrected["ci95"], t_p=corrected["p"], ci_method=CI_METHOD, estimand=ESTIMAND,
        trainings_ci95=trainings["ci95"], trainings_se=trainings["se"], trainings_t_p=trainings["p"],
        correction_factor=factor if len(by_fold) > 1 else None, **design,
        p_b_better=share_b_better(list(by_fold.values()), rng, higher_is_better, bootstrap_samples),
        mean_a=float(kept["a"].mean()) if len(kept) else None, mean_b=float(kept["b"].mean()) if len(kept) else None,
        excluded_nan_pairs=int(len(row) - len(kept)), n_folds=len(by_fold),
        per_fold_difference={str(f): float(d.mean()) for f, d in by_fold.items()},
        lost_in_folds=lost_in_folds(row) if metric == PRIMARY and key[2] != FOREGROUND else {"a": [], "b": []},
        size_terciles=size_terciles(row),
        worst_cases=worst_cases(row, higher_is_better) if key[2] == FOREGROUND else [],
        holm_family="headline" if key[2] == FOREGROUND else "per class")


def fold_design(kept: pd.DataFrame) -> dict:
    """The cross-validation behind a row's folds: repeats, folds per repeat, the mean n_val / n_train over folds
    (n_train from the optional column, else the cases the repeat's other folds validate: exact when every fold of a
    repeat is compared, larger than the truth, so conservative, when only some are), and, with two or more repeats,
    fold_correlation: the correlation between the per-fold differences of trainings in different repeats that
    validate the same case (what the data show of trainings agreeing beyond chance)."""
    if kept.empty:
        return {"n_repeats": 0, "design": "no paired folds", "validation_to_training": 0.0, "fold_correlation": None}
    kept = kept.assign(repeat=kept["repeat"].fillna(0).to_numpy() if "repeat" in kept else 0)
    folds = kept.groupby("fold", sort=True)
    repeats = folds["repeat"].first()
    n_val = folds["case"].nunique()
    cases_per_repeat = kept.groupby("repeat")["case"].nunique()
    inferred = repeats.map(cases_per_repeat) - n_val
    n_train = folds["n_train"].first().fillna(inferred) if "n_train" in kept else inferred
    ratio = float((n_val / n_train.clip(lower=1)).mean())
    sizes = repeats.value_counts(sort=False).sort_index()
    if len(sizes) == 1:
        design = f"one cross-validation, {sizes.iloc[0]} fold(s)"
    elif sizes.nunique() == 1:
        design = f"{len(sizes)} × {sizes.iloc[0]}-fold"
    else:
        design = f"{len(sizes)} repeats of {', '.join(map(str, sizes))} folds"
    return {"n_repeats": int(len(sizes)), "design": design, "validation_to_training": ratio,
            "fold_correlation": _fold_correlation(kept) if len(sizes) > 1 else None}


def _fold_correlation(kept: pd.DataFrame) -> Optional[float]:
    fold_mean = kept.groupby("fold")["difference"].transform("mean")
    by_case = kept.assign(fold_mean=fold_mean).pivot_table(index="case", columns="repeat", values="fold_mean")
    pairs_of_repeats = [by_case[[r, s]].dropna().to_numpy() for i, r in enumerate(by_case.columns)
                        for s in by_case.columns[i + 1:]]
    stacked = np.concatenate([p for p in pairs_of_repeats if len(p)] or [np.empty((0, 2))])
    if len(stacked) < 3 or np.ptp(stacked[:, 0]) == 0 or np.ptp(stacked[:, 1]) == 0:
        return None
    return float(np.corrcoef(stacked[:, 0], stacked[:, 1])[0, 1])


def lost_in_folds(row: pd.DataFrame) -> Dict[str, list]:
    """The folds in which each trainer (a, b) scored Dice at most LOST_DICE (or no value) in every case that has the
    class in its reference: a class that training did not learn."""
    present = row[row["reference_mm3"] > 0]
    lost = {"a": [], "b": []}
    for fold, group in present.groupby("fold", sort=True):
        for side in lost:
            if (group[side].fillna(0) <= LOST_DICE).all():
                lost[side].append(fold.item() if hasattr(fold, "item") else fold)
    return lost


def size_terciles(row: pd.DataFrame) -> List[dict]:
    """Mean difference by tercile of the reference structure's volume (cases with a reference only)."""
    kept = row.dropna(subset=["a", "b"])
    kept = kept[kept["reference_mm3"] > 0]
    if len(kept) < 3:
        return []
    groups = pd.qcut(kept["reference_mm3"].rank(method="first"), 3, labels=["small", "medium", "large"])
    return [{"tercile": str(name), "n": int(len(group)), "volume_mm3": [float(group["reference_mm3"].min()),
                                                                          float(group["reference_mm3"].max())],
             "mean_difference": float(group["difference"].mean()),
             "se_difference": float(group["difference"].std(ddof=1) / np.sqrt(len(group))) if len(group) > 1 else None}
            for name, group in kept.groupby(groups, observed=True)]


def worst_cases(row: pd.DataFrame, higher_is_better: bool, count: int = 10) -> List[dict]:
    """The count pairs where B falls furthest behind A."""
    kept = row.dropna(subset=["a", "b"])
    order = kept.sort_values("difference", ascending=higher_is_better).head(count)
    return [{"fold": r.fold, "case": r.case, "a": float(r.a), "b": float(r.b), "difference": float(r.difference)}
            for r in order.itertuples()]


@dataclass
class Analysis:
    """What analysis.py computes for one compare run: the pairs, the statistics per row key, each compared dataset x
    configuration's slices (its rows of the long table and of the pairs; compared: every trainer has folds), the
    verdicts and the across-datasets results."""
    paired: pd.DataFrame
    statistics: Dict[tuple, MetricStatistics]
    rows: Dict[Tuple[str, str], Tuple[pd.DataFrame, pd.DataFrame]]
    verdicts: List[Verdict]
    across_datasets: Dict[str, AcrossDatasets]


def analyse_results(results, trainers: Sequence[str], configurations: Sequence[str], seed: int, margins: Margins,
                    look: Optional[Tuple[int, ...]] = None) -> Analysis:
    """The statistics of read.read_results' results (the pairs made once, the foreground mean included)."""
    lost_by_both = shared_losses(results.table, trainers)
    paired = with_design(pairs(with_foreground_mean(results.table, lost_by_both), trainers), results.designs)
    statistics = analyse_pairs(paired, seed, margins, look=look)
    compared = [(d, c) for d in results.datasets for c in configurations if (d, c) in results.pairings]
    rows = {(d, c): (row_slice(results.table, d, c), row_slice(paired, d, c)) for d, c in compared}
    folds_found = {(d, c): [results.trainers[(d, c, t)].folds for t in trainers] for d, c in compared}
    return Analysis(paired, statistics, rows, verdicts(statistics, folds_found, results.pairings),
                    across_datasets(statistics, margins))


def analyse(table: pd.DataFrame, trainers: Sequence[str], seed: int = 0,
            margins: Margins = Margins()) -> Dict[tuple, MetricStatistics]:
    """analyse_pairs of the table's pairs, the foreground mean included."""
    return analyse_pairs(pairs(with_foreground_mean(table, shared_losses(table, trainers)), trainers), seed, margins)


def analyse_pairs(paired: pd.DataFrame, seed: int = 0, margins: Margins = Margins(),
                  bootstrap_samples: int = BOOTSTRAP_SAMPLES, look: Optional[Tuple[int, ...]] = None
                  ) -> Dict[tuple, MetricStatistics]:
    """(dataset, configuration, class, metric) -> statistics, with p_holm within the row's Holm family (HOLM_FAMILIES:
    a row's adjusted p depends only on the rows of its own family), the outcome against the metric's margin
    (metrics.Margins), what the study could detect, the folds that would settle it,
    the size terciles and, for the foreground mean, the ten worst cases. bootstrap_samples sets the descriptive
    bootstraps only (the case-level CI and p_b_better); the verdict does not resample. look = (k, K): the k-th of K
    sequential looks (grid --until-decided), or (k, K, rows) for one of the study's rows: the outcome is then judged
    at that look's level (statistics.look_level) with its repeated interval, recorded under "sequential"; the
    fixed-design outcome at 95% stays as "outcome_fixed_95"."""
    results = {key: row_statistics(row, key[3], key, seed, bootstrap_samples)
               for key, row in paired.groupby(ROW_KEY, sort=False)}
    for metric in METRICS:
        for family in HOLM_FAMILIES:
            keys = [k for k in results if k[3] == metric and results[k].holm_family == family]
            for k, p in zip(keys, holm([results[k].t_p for k in keys])):
                results[k].p_holm = p
    for (*_, metric), s in results.items():
        margin, higher_is_better = margins[metric], METRICS[metric].higher_is_better
        s.outcome = verdict(s.hierarchical_ci95, s.p_holm, s.estimate, higher_is_better, margin, s.n_folds)
        s.excludes_zero, s.margin, s.power = excludes_zero(s.hierarchical_ci95), margin, POWER
        s.minimal_detectable_difference = minimal_detectable_difference(s.hierarchical_se, s.df)
        s.folds_needed = FoldsNeeded(**folds_needed(s.estimate, s.hierarchical_se, s.n_folds, margin,
                                                    s.validation_to_training))
        s.assumed_correlation = assumed_correlation(s.validation_to_training)
        s.correlated_bayes = correlated_bayes(s.estimate, s.hierarchical_se, s.df, margin, higher_is_better)
        s.holds_to_correlation = holds_to_correlation(s.outcome, s.estimate, s.hierarchical_se, s.correction_factor,
                                                      s.n_folds, margin, higher_is_better,
                                                      holm_multiplier(s.t_p, s.p_holm))
        if look is not None:
            look = Look(*look)
            level = look_level(look, s.n_folds, s.validation_to_training)
            ci = interval_at(s.estimate, s.hierarchical_se, s.df, level)
            outcome = verdict(ci, s.p_holm, s.estimate, higher_is_better, margin, s.n_folds, alpha=level)
            s.outcome_fixed_95, s.outcome = s.outcome, outcome
            s.sequential = SequentialLook(look=look.index, looks=look.looks, rows=look.rows, level=level, ci=ci,
                                          outcome=outcome, method=SEQUENTIAL_METHOD)
    return results


def holm_multiplier(p: Optional[float], p_holm: Optional[float]) -> float:
    """How much Holm's step-down raised a row's p (1 without a test)."""
    return p_holm / p if p and p_holm is not None else 1.0


def row_slice(frame: pd.DataFrame, dataset: str, configuration: str) -> pd.DataFrame:
    """The rows of one dataset x configuration of the long table or of the pairs."""
    return frame[(frame["dataset"] == dataset) & (frame["configuration"] == configuration)]


def verdicts(results: Dict[tuple, MetricStatistics], folds_found: Dict[tuple, Sequence],
             pairings: Optional[Dict[tuple, Pairing]] = None) -> List[Verdict]:
    """Per dataset x configuration: the verdict per metric on the foreground mean, the classes a trainer lost, the
    trainings' pairing, and warnings when it stands on thin ground. folds_found: (dataset, configuration) -> (folds
    of A, folds of B); pairings: (dataset, configuration) -> how its trainings were paired (None: not stated)."""
    lines = []
    for (dataset, configuration), (folds_a, folds_b) in folds_found.items():
        by_metric = {metric: results[(dataset, configuration, FOREGROUND, metric)] for metric in METRICS
                     if (dataset, configuration, FOREGROUND, metric) in results}
        dice = by_metric.get(PRIMARY, MetricStatistics(n_folds=0, n_pairs=0))
        warnings = []
        if dice.n_folds < MIN_FOLDS:
            warnings.append(f"{dice.n_folds} fold(s) paired, fewer than {MIN_FOLDS}: training randomness not "
                            f"captured (one training per trainer can differ from the next as much as two trainers do)")
        if dice.n_pairs < MIN_PAIRS:
            warnings.append(f"{dice.n_pairs} paired cases, fewer than {MIN_PAIRS}: the case-level CIs are unreliable")
        one_sided = sorted(set(map(str, folds_a)) ^ set(map(str, folds_b)))
        if one_sided:
            warnings.append(f"fold(s) {', '.join(one_sided)} validated for one trainer only (left out of the pairs)")
        lost = lost_classes(results, dataset, configuration)
        warnings += [lost_class_warning(entry) for entry in lost]
        pairing = (pairings or {}).get((dataset, configuration))
        lines.append(Verdict(dataset, configuration, by_metric, warnings + (pairing.warnings if pairing else []), lost,
                             pairing.design if pairing else None))
    return lines


def lost_classes(results: Dict[tuple, MetricStatistics], dataset: str, configuration: str) -> List[LostClass]:
    """The classes that trainer A or B lost (Dice 0 in every case with the class) in at least one fold."""
    found = []
    for (d, c, name, metric), s in results.items():
        if (d, c) == (dataset, configuration) and metric == PRIMARY and name != FOREGROUND:
            lost = s.lost_in_folds
            if lost["a"] or lost["b"]:
                found.append(LostClass(name, [str(f) for f in lost["a"]], [str(f) for f in lost["b"]], s.n_folds))
    return found


def lost_class_warning(entry: LostClass) -> str:
    both = sorted(set(entry.folds_a) & set(entry.folds_b), key=str)
    text = (f"class {entry.class_name}: Dice 0 in every case that has it, A in fold(s) "
            f"{', '.join(entry.folds_a) or 'none'}, B in fold(s) {', '.join(entry.folds_b) or 'none'}")
    if len(both) == entry.n_folds:
        return text + (" — neither trainer learned it: the foreground-mean verdict leaves it out and judges the "
                       "classes they learned (look at its per-class row, and train longer)")
    if both:
        return text + (f" — both lost it in fold(s) {', '.join(both)}: there the foreground-mean verdict judges the "
                       f"classes both learned; elsewhere a lost class moves the foreground mean by a whole class; "
                       f"read the per-class rows")
    return text + " — a lost class moves the foreground mean by a whole class; read the per-class rows"


def across_datasets(results: Dict[tuple, MetricStatistics], margins: Margins = Margins()
                    ) -> Dict[str, AcrossDatasets]:
    """Per metric, the method across tasks from one value per dataset: the mean of its configurations'
    foreground-mean estimates (configurations of one dataset share its cases, so they are not separate datasets; its
    variance the mean of theirs, as if they agreed fully), then statistics.mean_across_datasets over the M datasets
    (a t interval with M - 1 degrees of freedom from the spread of the M values; tau by Paule-Mandel and the weighted
    Hartung-Knapp-Sidik-Jonkman figures beside it, descriptive); the outcome by the same rule and margins as a single
    dataset's. Rows without an interval (fewer than 2 folds) are left out and named. No prediction interval: with
    few datasets its coverage is not what it says (simulated: docs/compare.md)."""
    combined = {}
    for metric in METRICS:
        rows = {k: s for k, s in results.items() if k[2] == FOREGROUND and k[3] == metric}
        if not rows:
            continue
        used = {k: s for k, s in rows.items() if s.hierarchical_se is not None}
        by_dataset: Dict[str, List[MetricStatistics]] = {}
        for k, s in used.items():
            by_dataset.setdefault(k[0], []).append(s)
        pooled = mean_across_datasets([float(np.mean([s.estimate for s in group])) for group in by_dataset.values()],
                                      [float(np.mean([s.hierarchical_se ** 2 for s in group]))
                                       for group in by_dataset.values()])
        margin = margins[metric]
        n = len(by_dataset)
        outcome = (verdict(pooled["ci95"], pooled["p"], pooled["estimate"], METRICS[metric].higher_is_better,
                           margin, n) if n >= 2 else "inconclusive")
        several = {d: [k[1] for k in used if k[0] == d] for d in by_dataset}
        averaged = [f"{d} ({', '.join(c)})" for d, c in several.items() if len(c) > 1]
        note = (f"{n} datasets: the interval has {n - 1} degree(s) of freedom (t_0.975 = {t975(n - 1):.2f}), "
                f"wide with few datasets; it covers the spread of true effects between datasets (tau) as well as "
                f"each dataset's own uncertainty" if n >= 2 else
                "fewer than 2 datasets with an interval: no verdict across datasets (configurations of one dataset "
                "are not datasets)")
        if averaged:
            note += f"; one value per dataset, the mean over its configurations: {'; '.join(averaged)}"
        combined[metric] = AcrossDatasets(
            estimate=pooled["estimate"], ci95=pooled["ci95"], excludes_zero=excludes_zero(pooled["ci95"]),
            se=pooled["se"], df=pooled["df"], p=pooled["p"], tau=pooled["tau"], prediction95=None,
            outcome=outcome, margin=margin, weighted_estimate=pooled["weighted_estimate"],
            weighted_ci95=pooled["weighted_ci95"], n_datasets=n, datasets=list(by_dataset),
            left_out=[f"{k[0]} {k[1]}" for k in rows if k not in used],
            method="one value per dataset (the mean of its configurations' estimates); the unweighted mean of those "
                   "values with a t interval from their spread (M - 1 degrees of freedom); tau by Paule-Mandel; "
                   "weighted_*: inverse-variance random-effects mean with the modified Hartung-Knapp-Sidik-Jonkman "
                   "interval, descriptive",
            note=note)
    return combined
