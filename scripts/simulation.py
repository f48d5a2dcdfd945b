"""Simulated studies with a known answer, passed through compare's own analysis (analyse_pairs, across_datasets), to
measure how often its verdict is wrong: the evidence behind the stated 95% (scripts/calibrate_compare.py writes the
table in docs/compare.md, scripts/calibrate_sequential.py docs/sequential.md; a fast test runs small cells). A study
tool, not part of the installed package: the two calibration scripts share its models, its pool of worker processes
(run_cells) and the provenance they write (provenance).

Two models. ``Cell``: k independent trainings (folds) per trainer, n validation cases each; the difference B - A of a
case is true_difference + u_fold + e_case (the interval's own assumptions, kept for contrast). ``CrossValidation``:
cross-validation as it is: N cases split into k folds (repeated R times with new splits), each training's effect
depends on its training set (trainings that share training cases agree: the fold correlation), a case keeps a
persistent part across repeats, case noise is skewed with rare catastrophic failures, folds may be unequal.
``Datasets``: several such tasks whose true differences scatter around a shared mean, judged by across_datasets.
"""
import json
import os
import platform
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
import pandas as pd

from nnunet_attention.compare.analysis import FOREGROUND, across_datasets, analyse_pairs
from nnunet_attention.compare.metrics import Margins
from nnunet_attention.compare.statistics import two_level_bootstrap

SIMULATION_BOOTSTRAP = 200  # the descriptive bootstraps only; the verdict does not resample


@dataclass(frozen=True)
class Cell:
    """Independent trainings. noise: "normal" (case differences N(0, case_sd)) or "ties" (0 with probability
    tie_share, else a Laplace(case_sd) difference rounded to whole millimetres, as HD95 on a 1 mm grid)."""
    folds: int
    cases: int
    true_difference: float
    margin: float
    fold_sd: float = 0.02
    case_sd: float = 0.05
    metric: str = "dice"
    noise: str = "normal"
    tie_share: float = 0.6

    def pairs(self, rng: np.random.Generator) -> pd.DataFrame:
        fold_effect = rng.normal(0, self.fold_sd, self.folds)
        if self.noise == "normal":
            noise = rng.normal(0, self.case_sd, (self.folds, self.cases))
        else:
            noise = np.round(rng.laplace(0, self.case_sd, (self.folds, self.cases)))
            noise[rng.random((self.folds, self.cases)) < self.tie_share] = 0.0
        difference = self.true_difference + fold_effect[:, None] + noise
        folds, cases = np.meshgrid(np.arange(self.folds), np.arange(self.cases), indexing="ij")
        return _pairs_table(self.metric, folds.ravel(), (folds * self.cases + cases).ravel(), difference.ravel())


FAILED_TRAINING_SHIFT = (0.15, 0.45)  # how far a failed training moves its fold's differences
FAILED_TRAINING_DROP = sum(FAILED_TRAINING_SHIFT) / 2


@dataclass(frozen=True)
class CrossValidation:
    """R repeats of k-fold cross-validation on N cases. A training's effect is fold_sd (sqrt(w) z_T + sqrt(1 - w)
    e): z_T the normalised sum of per-case "how much this case, trained on, favours B" over its training set, so two
    trainings correlate by w times the share of training cases they have in common; w is set so that two folds of
    one cross-validation correlate by fold_correlation. A case's difference adds a persistent part (persistent_sd,
    the same in every repeat), fresh noise (case_sd; "skewed": a centred gamma(2), else normal) and, with
    probability failure_rate, a catastrophic failure of one trainer (±U(0.4, 0.9), either sign). unequal: fold sizes
    0.6x to 1.4x the mean instead of nnU-Net's near-equal split. coupling: a case that favours B when trained on is
    one B validates better on (its persistent part correlates with its training influence by coupling).
    fold_failure_rate: the chance that a fold's training of one trainer fails as a whole (diverges, loses a class):
    every validation case of that fold moves by U(0.15, 0.45) against it; fold_failure_side "either" (equal chance,
    the truth unchanged) or "b" (B's trainings only: the other folds sit 0.30 x the rate higher, so that the expected
    difference, the truth, is still true_difference)."""
    cases: int
    folds: int
    true_difference: float
    margin: float
    repeats: int = 1
    fold_sd: float = 0.02
    fold_correlation: float = 0.2
    case_sd: float = 0.05
    persistent_sd: float = 0.02
    failure_rate: float = 0.0
    skewed: bool = True
    unequal: bool = False
    metric: str = "dice"
    repeat_column: bool = True
    coupling: float = 0.0  # correlation of a case's persistent difference with how much it favours B when trained on
    fold_failure_rate: float = 0.0
    fold_failure_side: str = "either"

    def pairs(self, rng: np.random.Generator, dataset: str = "Simulated") -> pd.DataFrame:
        n, k = self.cases, self.folds
        weight = min(1.0, self.fold_correlation * (k - 1) / (k - 2)) if k > 2 else 0.0
        favour = rng.normal(0, 1, n)
        persistent = self.persistent_sd * (self.coupling * favour
                                           + np.sqrt(1 - self.coupling ** 2) * rng.normal(0, 1, n))
        fold_ids, case_ids, differences, repeats = [], [], [], []
        for repeat in range(self.repeats):
            assignment = self._split(rng)
            for fold in range(k):
                validation = np.flatnonzero(assignment == fold)
                training = np.flatnonzero(assignment != fold)
                effect = self.fold_sd * (np.sqrt(weight) * favour[training].sum() / np.sqrt(training.size)
                                         + np.sqrt(1 - weight) * rng.normal())
                noise = self._noise(rng, validation.size)
                failed = rng.random(validation.size) < self.failure_rate
                noise[failed] += rng.choice([-1.0, 1.0], failed.sum()) * rng.uniform(0.4, 0.9, failed.sum())
                if self.fold_failure_side == "b":
                    noise += FAILED_TRAINING_DROP * self.fold_failure_rate
                if rng.random() < self.fold_failure_rate:
                    against = -1.0 if self.fold_failure_side == "b" else rng.choice([-1.0, 1.0])
                    noise += against * rng.uniform(*FAILED_TRAINING_SHIFT)
                differences.append(self.true_difference + effect + persistent[validation] + noise)
                fold_ids.append(np.full(validation.size, repeat * k + fold))
                case_ids.append(validation)
                repeats.append(np.full(validation.size, repeat))
        table = _pairs_table(self.metric, np.concatenate(fold_ids), np.concatenate(case_ids),
                             np.concatenate(differences), dataset)
        return table.assign(repeat=np.concatenate(repeats)) if self.repeat_column else table

    def _split(self, rng: np.random.Generator) -> np.ndarray:
        order = rng.permutation(self.cases)
        if self.unequal:
            share = 1 + 0.4 * np.linspace(-1, 1, self.folds)
            bounds = np.round(np.cumsum(share) / share.sum() * self.cases).astype(int)[:-1]
            parts = np.split(order, bounds)
        else:
            parts = np.array_split(order, self.folds)
        assignment = np.empty(self.cases, dtype=int)
        for fold, part in enumerate(rng.permutation(len(parts))):
            assignment[parts[part]] = fold
        return assignment

    def _noise(self, rng: np.random.Generator, size: int) -> np.ndarray:
        if self.skewed:
            return self.case_sd * (rng.gamma(2.0, 1.0, size) - 2.0) / np.sqrt(2.0)
        return rng.normal(0, self.case_sd, size)


@dataclass(frozen=True)
class Datasets:
    """datasets tasks, each a CrossValidation like task (cases varying from 0.6x to 1.4x its size), whose true
    differences scatter as N(true_difference, between_sd): across_datasets' answer is judged against
    true_difference, the mean over tasks."""
    datasets: int
    task: CrossValidation
    between_sd: float = 0.01
    effects: str = "normal"  # "skewed": the tasks' true differences scatter as a centred, scaled gamma(2)
    size_spread: float = 0.4  # task sizes from (1 - spread) to (1 + spread) times task.cases: unequal precision

    @property
    def true_difference(self) -> float:
        return self.task.true_difference

    @property
    def margin(self) -> float:
        return self.task.margin

    def pairs(self, rng: np.random.Generator) -> pd.DataFrame:
        sizes = np.round(self.task.cases * np.linspace(1 - self.size_spread, 1 + self.size_spread,
                                                       self.datasets)).astype(int)
        tables = []
        for d, size in enumerate(sizes):
            scatter = ((rng.gamma(2.0) - 2.0) / np.sqrt(2.0) if self.effects == "skewed" else rng.normal())
            truth = self.task.true_difference + self.between_sd * scatter
            task = CrossValidation(**{**asdict(self.task), "cases": int(size), "true_difference": truth})
            tables.append(task.pairs(rng, dataset=f"Simulated{d:02d}"))
        return pd.concat(tables, ignore_index=True)


def _pairs_table(metric: str, folds: np.ndarray, cases: np.ndarray, difference: np.ndarray,
                 dataset: str = "Simulated") -> pd.DataFrame:
    """One study's pairs table, in the layout compare.analysis.pairs makes from nnU-Net's files."""
    a = np.full(difference.shape, 0.8 if metric != "hd95" else 5.0)
    return pd.DataFrame({"dataset": dataset, "configuration": "3d_fullres", "class": FOREGROUND, "metric": metric,
                         "fold": folds, "case": [f"case_{c:04d}" for c in cases], "a": a, "b": a + difference,
                         "difference": difference, "reference_mm3": 1000.0})


AnyCell = Union[Cell, CrossValidation, Datasets]


def run_cell(cell: AnyCell, studies: int, seed: int = 0, old_bootstrap: bool = False) -> Dict[str, float]:
    """studies simulated studies of one cell through analyse_pairs (and across_datasets for Datasets): the share of
    each outcome, how often the 95% CI covers the true difference, its mean width, and the mean fold correlation the
    analysis reports (repeated designs); with old_bootstrap (Cell only), the same for the percentile two-level
    bootstrap the verdict used before (its CI, and how often it excluded 0)."""
    rng = np.random.default_rng(seed)
    outcomes: List[str] = []
    covered, widths, old_covered, old_excludes, correlations = [], [], [], [], []
    metric = cell.task.metric if isinstance(cell, Datasets) else cell.metric
    for study in range(studies):
        paired = cell.pairs(rng)
        rows = analyse_pairs(paired, seed=study, margins=Margins({metric: cell.margin}),
                             bootstrap_samples=SIMULATION_BOOTSTRAP)
        if isinstance(cell, Datasets):
            row = across_datasets(rows, Margins({metric: cell.margin}))[metric]
            low, high = row.ci95
        else:
            row = rows[("Simulated", "3d_fullres", FOREGROUND, metric)]
            low, high = row.hierarchical_ci95
            if row.fold_correlation is not None:
                correlations.append(row.fold_correlation)
        outcomes.append(row.outcome)
        covered.append(low <= cell.true_difference <= high)
        widths.append(high - low)
        if old_bootstrap and isinstance(cell, Cell):
            by_fold = [g["difference"].to_numpy() for _, g in paired.groupby("fold")]
            old_low, old_high = np.percentile(two_level_bootstrap(by_fold, rng, 2000), [2.5, 97.5])
            old_covered.append(old_low <= cell.true_difference <= old_high)
            old_excludes.append(not old_low <= 0 <= old_high)
    result = {"model": type(cell).__name__, **_flat(cell), "studies": studies, "coverage": float(np.mean(covered)),
              "mean_ci_width": float(np.mean(widths)),
              "mean_fold_correlation_reported": float(np.mean(correlations)) if correlations else None,
              **{outcome: outcomes.count(outcome) / studies for outcome in ("better", "worse", "equivalent",
                                                                            "inconclusive")}}
    if old_covered:
        result.update(old_coverage=float(np.mean(old_covered)), old_excludes_zero=float(np.mean(old_excludes)))
    return result


def run_sequential(cell: CrossValidation, studies: int, seed: int = 0) -> Dict[str, object]:
    """studies simulated repeated cross-validations of cell (cell.repeats = the most rounds), judged as grid
    --until-decided judges them: after each whole round through analyse_pairs with look = (round, cell.repeats),
    stopping at the first outcome that is not inconclusive; against the fixed design on the same data (every round,
    then the 95% verdict). Returns per design the outcome shares with their Monte Carlo standard errors, the share of
    wrong answers (better when B - A <= 0, worse when >= 0, equivalent outside the margin), the mean estimate's bias
    (at stopping for the sequential design); the paired discordance counts (sequential -> fixed outcome, where they
    differ); the sequential design's mean rounds and the share of studies stopped at each look."""
    rng = np.random.default_rng(seed)
    looks, key = cell.repeats, ("Simulated", "3d_fullres", FOREGROUND, cell.metric)
    margins = Margins({cell.metric: cell.margin})
    records = []
    for study in range(studies):
        paired = cell.pairs(rng)
        for look in range(1, looks + 1):
            row = analyse_pairs(paired[paired["repeat"] < look], seed=study, margins=margins,
                                bootstrap_samples=SIMULATION_BOOTSTRAP, look=(look, looks))[key]
            if row.outcome != "inconclusive" or look == looks:
                break
        fixed = analyse_pairs(paired, seed=study, margins=margins, bootstrap_samples=SIMULATION_BOOTSTRAP)[key]
        records.append({"sequential": row.outcome, "sequential_estimate": row.estimate, "look": look,
                        "fixed": fixed.outcome, "fixed_estimate": fixed.estimate})
    result = {"model": "Sequential", **_flat(cell), "studies": studies}
    for design in ("sequential", "fixed"):
        outcomes = [r[design] for r in records]
        for outcome in ("better", "worse", "equivalent", "inconclusive"):
            share = outcomes.count(outcome) / studies
            result[f"{design}_{outcome}"] = share
            result[f"{design}_{outcome}_se"] = float(np.sqrt(share * (1 - share) / studies))
        wrong = np.mean([_wrong(o, cell.true_difference, cell.margin) for o in outcomes])
        result[f"{design}_wrong"], result[f"{design}_wrong_se"] = float(wrong), float(np.sqrt(wrong * (1 - wrong)
                                                                                                 / studies))
        estimates = np.array([r[f"{design}_estimate"] for r in records], dtype=float)
        result[f"{design}_bias"] = float(estimates.mean() - cell.true_difference)
        result[f"{design}_bias_se"] = float(estimates.std(ddof=1) / np.sqrt(studies))
    rounds = np.array([r["look"] for r in records], dtype=float)
    pairs = [f"{r['sequential']}->{r['fixed']}" for r in records if r["sequential"] != r["fixed"]]
    return {**result, "mean_rounds": float(rounds.mean()), "mean_rounds_se": float(rounds.std(ddof=1) /
                                                                                   np.sqrt(studies)),
            "stopped_at": {str(k): float(np.mean(rounds == k)) for k in range(1, looks + 1)},
            "discordant": {pair: pairs.count(pair) for pair in sorted(set(pairs))}}


def _wrong(outcome: str, truth: float, margin: float) -> bool:
    """A wrong answer: better when B is not better, worse when B is not worse, equivalent outside the margin."""
    return (outcome == "better" and truth <= 0) or (outcome == "worse" and truth >= 0) or (
        outcome == "equivalent" and abs(truth) > margin)


def sequential_cells(rounds: int = 3) -> List[CrossValidation]:
    """The sequential design's calibration, 100 cases, 5 folds, skewed case noise, up to `rounds` rounds: no
    difference (at a margin equivalence can reach and at one it cannot), a clear gain, a gain at twice the margin,
    a negligible difference inside a wide margin, each at the fold correlation the boundaries assume (0.2) and at the
    one measured on real nnU-Net trainings (about 0.1, docs/real_calibration.md); no difference with 2% catastrophic
    failures of one trainer."""
    cells = []
    for correlation in (0.2, 0.1):
        base = dict(cases=100, folds=5, repeats=rounds, fold_correlation=correlation, fold_sd=0.01)
        cells += [CrossValidation(true_difference=0.0, margin=0.02, **base),
                  CrossValidation(true_difference=0.0, margin=0.01, **base),
                  CrossValidation(true_difference=0.03, margin=0.01, **base),
                  CrossValidation(true_difference=0.02, margin=0.01, **base),
                  CrossValidation(true_difference=0.003, margin=0.02, **base)]
    cells.append(CrossValidation(cases=100, folds=5, repeats=rounds, true_difference=0.0, margin=0.02, fold_sd=0.01,
                                 failure_rate=0.02))
    return cells


def coupling_cells() -> List[CrossValidation]:
    """A case's training influence coupled to its own validation difference (0, 0.5, 0.9), 1 and 3 repeats of
    5-fold on 40 cases, fold correlation 0.2, no true difference at ±0.02, a persistent part as large as the
    training effect (so that the coupling matters)."""
    return [CrossValidation(40, 5, 0.0, 0.02, repeats=repeats, fold_correlation=0.2, persistent_sd=0.02,
                            coupling=coupling)
            for coupling in (0.0, 0.5, 0.9) for repeats in (1, 3)]


def failure_cells() -> List[CrossValidation]:
    """Whole trainings that fail (2%, 5%, 10% of a fold's trainings, either trainer or B's only), 1 and 3 repeats of
    5-fold on 40 cases, fold correlation 0.2, no true difference at ±0.02; the real trainings showed 2 failed gated
    trainings of 55 (docs/real_calibration.md)."""
    return [CrossValidation(40, 5, 0.0, 0.02, repeats=repeats, fold_correlation=0.2, fold_failure_rate=rate,
                            fold_failure_side=side)
            for side in ("either", "b") for rate in (0.02, 0.05, 0.10) for repeats in (1, 3)]


def dataset_cells() -> List[Datasets]:
    """across_datasets where its assumptions bend: 2, 4 and 10 tasks of very unequal precision (10 to 70 cases), true
    effects normal or skewed around no shared difference (±0.01), with 2% catastrophic failures."""
    task = CrossValidation(40, 5, 0.0, 0.01, fold_correlation=0.2, failure_rate=0.02)
    return [Datasets(n, task, between_sd=0.01, effects=effects, size_spread=0.75)
            for n in (2, 4, 10) for effects in ("normal", "skewed")]


def _flat(cell: AnyCell) -> dict:
    if isinstance(cell, Datasets):
        return {**asdict(cell.task), "datasets": cell.datasets, "between_sd": cell.between_sd,
                "effects": cell.effects, "size_spread": cell.size_spread}
    return asdict(cell)


def standard_cells() -> Iterable[AnyCell]:
    """The cells of the shipped study.

    Independent trainings (the interval's assumptions; folds 2, 3, 5, 10 x cases 4, 20, 100; no true difference and
    the true difference at the margin; tie-heavy HD95-like noise too). Cross-validation itself: 5-fold on 40 cases
    (and 20 cases), fold correlation 0, 0.1, 0.2, 0.3, 1-3 repeats, skewed noise with 2% catastrophic failures,
    unequal folds; a negligible true difference (+0.004 at ±0.01) measured precisely; clear gains and clear
    equivalence. Across datasets: 2, 4, 10 datasets with scattered true effects, no shared effect and a shared gain.
    """
    for folds in (2, 3, 5, 10):
        for cases in (4, 20, 100):
            yield Cell(folds, cases, 0.0, 0.05)
            yield Cell(folds, cases, 0.05, 0.05)
            yield Cell(folds, cases, 0.0, 2.0, fold_sd=0.5, case_sd=3.0, metric="hd95", noise="ties")
    yield Cell(5, 20, 0.0, 0.05, fold_sd=0.004)
    yield Cell(5, 20, 0.05, 0.01, fold_sd=0.004)
    for correlation in (0.0, 0.1, 0.2, 0.3):
        for repeats in (1, 2, 3):
            yield CrossValidation(40, 5, 0.0, 0.02, repeats=repeats, fold_correlation=correlation,
                                  failure_rate=0.02)
    for correlation in (0.0, 0.2, 0.3):
        for repeats in (1, 2, 3):
            yield CrossValidation(40, 5, 0.0, 0.02, repeats=repeats, fold_correlation=correlation, fold_sd=0.03,
                                  case_sd=0.01, persistent_sd=0.005)
    for repeats in (1, 2):
        yield CrossValidation(20, 5, 0.0, 0.05, repeats=repeats, fold_correlation=0.2, failure_rate=0.02,
                              unequal=True)
        yield CrossValidation(40, 5, 0.0, 0.02, repeats=repeats, fold_correlation=0.2, failure_rate=0.02,
                              skewed=False, persistent_sd=0.05, case_sd=0.02)
    yield CrossValidation(200, 5, 0.004, 0.01, repeats=2, fold_sd=0.001, case_sd=0.005, persistent_sd=0.002)
    yield CrossValidation(40, 5, 0.05, 0.01, fold_sd=0.005, case_sd=0.02, persistent_sd=0.01)
    yield CrossValidation(40, 5, 0.0, 0.02, repeats=2, fold_sd=0.003, case_sd=0.01, persistent_sd=0.005)
    for datasets in (2, 4, 10):
        for truth in (0.0, 0.03):
            yield Datasets(datasets, CrossValidation(40, 5, truth, 0.01, fold_correlation=0.2, failure_rate=0.02),
                           between_sd=0.01)
    for truth in (0.0, 0.03):
        yield Datasets(4, CrossValidation(40, 5, truth, 0.01, fold_correlation=0.2, fold_sd=0.01, case_sd=0.02,
                                          persistent_sd=0.01, failure_rate=0.02), between_sd=0.005)


def _span(values: List[float]) -> str:
    low, high = min(values), max(values)
    return f"{low:.1%}" if f"{low:.1%}" == f"{high:.1%}" else f"{low:.1%}–{high:.1%}"


def summary_text(rows: List[dict]) -> str:
    """The calibration's figures that docs quote, from the cells' results (docs/compare.md carries this text; a test
    compares it with docs/compare_calibration.json)."""
    def cells(model, **where):
        return [r for r in rows if r["model"] == model and all(
            (r[k] in v) if isinstance(v, tuple) else r[k] == v for k, v in where.items())]

    def wrong(group):
        return [r["better"] + r["worse"] for r in group]

    lines = []
    independent = cells("Cell", true_difference=0.0)
    if independent:
        coverage = _span([r["coverage"] for r in independent])
        lines.append(f"- **Independent trainings, no true difference** (the interval's own assumptions, "
                     f"{len(independent)} cells): the 95% CI covered the truth in {coverage}, \"better\"/\"worse\" in "
                     f"{_span(wrong(independent))} (the correction makes it conservative here).")
    for label, correlations in (("0–0.2", (0.0, 0.1, 0.2)), ("0.3", (0.3,))):
        group = cells("CrossValidation", true_difference=0.0, fold_correlation=correlations)
        dominated = [r for r in group if r["failure_rate"] == 0
                     and r["fold_sd"] > 3 * r["case_sd"] / np.sqrt(r["cases"] / r["folds"])]
        if group:
            lines.append(f"- **Cross-validation, fold correlation {label}, no true difference** ({len(group)} cells: "
                         f"1–3 repeats, skewed noise, 2% failures or none, unequal folds): coverage "
                         f"{_span([r['coverage'] for r in group])}, \"better\"/\"worse\" {_span(wrong(group))}"
                         + (f"; where training effects dominate the spread between folds ({len(dominated)} cells, no "
                            f"failures) "
                            f"coverage {_span([r['coverage'] for r in dominated])}, \"better\"/\"worse\" "
                            f"{_span(wrong(dominated))}" if dominated else "") + ".")
    negligible = [r for r in cells("CrossValidation") if 0 < r["true_difference"] < r["margin"]]
    if negligible:
        lines.append(f"- **A negligible true difference** (+{negligible[0]['true_difference']:g} at "
                     f"±{negligible[0]['margin']:g}, measured precisely): \"equivalent\" in "
                     f"{_span([r['equivalent'] for r in negligible])}, \"better\" in "
                     f"{_span([r['better'] for r in negligible])}.")
    gains = [r for r in cells("CrossValidation") if r["true_difference"] >= 2 * r["margin"]]
    if gains:
        lines.append(f"- **A clear gain** (+{gains[0]['true_difference']:g} at ±{gains[0]['margin']:g}): \"better\" "
                     f"in {_span([r['better'] for r in gains])}.")
    clear = cells("CrossValidation", true_difference=0.0, fold_sd=0.003)
    if clear:
        lines.append(f"- **Clear equivalence** (trainings and cases that vary little): \"equivalent\" in "
                     f"{_span([r['equivalent'] for r in clear])}.")
    def tasks(r):
        return f"{r['datasets']} datasets, training sd {r['fold_sd']:g}, case sd {r['case_sd']:g}"

    null_across = cells("Datasets", true_difference=0.0)
    if null_across:
        lines.append(f"- **Across datasets** (true effects scattered around 0; "
                     f"{'; '.join(tasks(r) for r in null_across)}): coverage "
                     f"{_span([r['coverage'] for r in null_across])}, \"better\"/\"worse\" "
                     f"{_span(wrong(null_across))}.")
    gain_across = [r for r in cells("Datasets") if r["true_difference"] > 0]
    if gain_across:
        lines.append(f"- **A shared gain across datasets** (+{gain_across[0]['true_difference']:g} at "
                     f"±{gain_across[0]['margin']:g}): \"better\" in "
                     + ", ".join(f"{r['better']:.1%} ({tasks(r)})" for r in gain_across) + ".")
    return "\n".join(lines)


def _run_one(job):
    run, index, cell, studies, seed = job
    return run(cell, studies, seed + index)


def run_cells(run: Callable, cells: Sequence, studies: int, seed: int, processes: int,
              kept: Optional[str] = None) -> List[dict]:
    """run(cell, studies, seed) for every cell (cell i with seed + i) in processes worker processes, in order, with
    a progress line on stderr. With kept (a JSON-lines file), each finished cell is appended there as it ends and a
    cell already there under the same run, index, cell, studies and seed is not run again: a study of hours resumes."""
    keys = [json.dumps([run.__name__, i, repr(cell), studies, seed]) for i, cell in enumerate(cells)]
    done = {}
    if kept and os.path.isfile(kept):
        with open(kept) as f:
            done = {entry["key"]: entry["row"] for entry in map(json.loads, f) if entry["key"] in keys}
    with ProcessPoolExecutor(processes) as pool:
        futures = {pool.submit(_run_one, (run, i, cell, studies, seed)): keys[i]
                   for i, cell in enumerate(cells) if keys[i] not in done}
        for future in as_completed(futures):
            done[futures[future]] = future.result()
            if kept:
                with open(kept, "a") as f:
                    f.write(json.dumps({"key": futures[future], "row": done[futures[future]]}) + "\n")
            print(f"\r{len(done)}/{len(cells)} cells", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return [done[key] for key in keys]


def provenance(script: str) -> Tuple[str, str]:
    """The command that ran a calibration script (as typed from the project root) and the machine, for its docs."""
    return (" ".join(["python", f"scripts/{script}", *sys.argv[1:]]),
            f"{platform.machine()}, {os.cpu_count()} cores")
