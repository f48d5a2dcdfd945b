"""Simulated two-level studies with a known answer, passed through compare's own analysis (analyse_pairs), to
measure how often its verdict is wrong: the evidence behind the stated 95% (scripts/calibrate_compare.py writes the
table in docs/compare.md; a fast test runs a small cell).

A study has k trainings (folds) per trainer and n validation cases per fold. The difference B - A of one case is
true_difference + u_fold + e_case: u_fold ~ N(0, fold_sd), the training's own luck, shared by the fold's cases;
e_case the case's noise, normal (Dice-like) or tie-heavy (HD95-like: most cases exactly equal, the rest a
heavy-tailed difference in whole voxels).
"""
from dataclasses import asdict, dataclass
from typing import Dict, Iterable, List

import numpy as np
import pandas as pd

from nnunet_attention.compare.analysis import FOREGROUND, analyse_pairs
from nnunet_attention.compare.statistics import two_level_bootstrap

SIMULATION_BOOTSTRAP = 200  # the descriptive bootstraps only; the verdict does not resample


@dataclass(frozen=True)
class Cell:
    """One kind of study. noise: "normal" (case differences N(0, case_sd)) or "ties" (0 with probability
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


def simulated_pairs(cell: Cell, rng: np.random.Generator) -> pd.DataFrame:
    """One study's pairs table, in the layout compare.analysis.pairs makes from nnU-Net's files."""
    fold_effect = rng.normal(0, cell.fold_sd, cell.folds)
    if cell.noise == "normal":
        noise = rng.normal(0, cell.case_sd, (cell.folds, cell.cases))
    else:
        noise = np.round(rng.laplace(0, cell.case_sd, (cell.folds, cell.cases)))
        noise[rng.random((cell.folds, cell.cases)) < cell.tie_share] = 0.0
    difference = cell.true_difference + fold_effect[:, None] + noise
    a = np.full_like(difference, 0.8 if cell.metric != "hd95" else 5.0)
    folds, cases = np.meshgrid(np.arange(cell.folds), np.arange(cell.cases), indexing="ij")
    return pd.DataFrame({"dataset": "Simulated", "configuration": "3d_fullres", "class": FOREGROUND,
                         "metric": cell.metric, "fold": folds.ravel(), "case": cases.ravel().astype(str),
                         "a": a.ravel(), "b": (a + difference).ravel(), "difference": difference.ravel(),
                         "reference_mm3": 1000.0})


def run_cell(cell: Cell, studies: int, seed: int = 0, old_bootstrap: bool = False) -> Dict[str, float]:
    """studies simulated studies of one cell through analyse_pairs: the share of each outcome, how often the 95% CI
    covers the true difference, and its mean width; with old_bootstrap, the same for the percentile two-level
    bootstrap the verdict used before (its CI, and how often it excluded 0)."""
    rng = np.random.default_rng(seed)
    outcomes: List[str] = []
    covered, widths, old_covered, old_excludes = [], [], [], []
    for study in range(studies):
        paired = simulated_pairs(cell, rng)
        rows = analyse_pairs(paired, seed=study, margins={cell.metric: cell.margin},
                             bootstrap_samples=SIMULATION_BOOTSTRAP)
        row = rows[("Simulated", "3d_fullres", FOREGROUND, cell.metric)]
        outcomes.append(row["outcome"])
        low, high = row["hierarchical_ci95"]
        covered.append(low <= cell.true_difference <= high)
        widths.append(high - low)
        if old_bootstrap:
            by_fold = [g["difference"].to_numpy() for _, g in paired.groupby("fold")]
            old_low, old_high = np.percentile(two_level_bootstrap(by_fold, rng, 2000), [2.5, 97.5])
            old_covered.append(old_low <= cell.true_difference <= old_high)
            old_excludes.append(not old_low <= 0 <= old_high)
    result = {**asdict(cell), "studies": studies, "coverage": float(np.mean(covered)),
              "mean_ci_width": float(np.mean(widths)),
              **{outcome: outcomes.count(outcome) / studies for outcome in ("better", "worse", "equivalent",
                                                                            "inconclusive")}}
    if old_bootstrap:
        result.update(old_coverage=float(np.mean(old_covered)), old_excludes_zero=float(np.mean(old_excludes)))
    return result


def standard_cells() -> Iterable[Cell]:
    """The cells of the shipped study: folds 2, 3, 5, 10 x cases per fold 4, 20, 100, with no true difference and
    with the true difference at the margin (Dice-like, margin 0.05); the same with tie-heavy HD95-like noise (margin
    2 mm); and the two clear cases (5 x 20, training sd 0.004) that must be decided."""
    for folds in (2, 3, 5, 10):
        for cases in (4, 20, 100):
            yield Cell(folds, cases, 0.0, 0.05)
            yield Cell(folds, cases, 0.05, 0.05)
            yield Cell(folds, cases, 0.0, 2.0, fold_sd=0.5, case_sd=3.0, metric="hd95", noise="ties")
    yield Cell(5, 20, 0.0, 0.05, fold_sd=0.004)
    yield Cell(5, 20, 0.05, 0.01, fold_sd=0.004)
