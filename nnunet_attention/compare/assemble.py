"""The one builder of the Report (report.py's dataclasses): from what read.py read and analysis.py computed, with the
figures' names (plots.row_figures; pipeline.write_report draws them) and per_case.csv's rows."""
from typing import Dict, List

import numpy as np
import pandas as pd

from nnunet_attention.compare import boundary, plots
from nnunet_attention.compare.analysis import Analysis
from nnunet_attention.compare.metrics import FROM_SUMMARY, METRICS, PRIMARY, Margins
from nnunet_attention.compare.read import Results, TrainerResults
from nnunet_attention.compare.report import (FOREGROUND, BoundaryMetrics, ConfigurationEntry, DatasetSection,
                                             MetricStatistics, Pairing, Report, SummaryRow, TrainerEntry)
from nnunet_attention.compare.statistics import verdict_rule


def build_report(results: Results, analysed: Analysis, trainers, plans: str, folds, missing_datasets, note,
                 margins: Margins) -> Report:
    """The Report of one compare run: per dataset its compared configurations (analysed.rows) with their entries,
    the summary rows, the verdicts and the across-datasets results analysis.py computed."""
    report = report_header(trainers, plans, folds, results, missing_datasets, note, margins)
    for name, labels in results.datasets.items():
        section = DatasetSection(configurations={}, ensembles=results.ensembles[name])
        report.curves[name] = {}
        for configuration in [c for d, c in analysed.rows if d == name]:
            found = [results.trainers[(name, configuration, t)] for t in trainers]
            report.warnings += outside_splits(name, configuration, found, results.designs.get(name, {}))
            curves = {f.trainer: {str(fold): c for fold, c in sorted(f.curves.items(), key=lambda kv: str(kv[0]))}
                      for f in found}
            report.curves[name][configuration] = curves
            table, paired = analysed.rows[(name, configuration)]
            section.configurations[configuration] = configuration_entry(
                results, name, configuration, list(trainers), analysed.statistics,
                plots.row_figures(f"{name}_{configuration}"), table,
                paired[["fold", "case"]].drop_duplicates().to_dict("records"), results.pairings[(name, configuration)])
            report.summary += [summary_row(name, configuration, c, analysed.statistics)
                               for c in labels.class_names + [FOREGROUND]]
        report.datasets[name] = section
    report.verdict, report.across_datasets = analysed.verdicts, analysed.across_datasets
    report.figures = [plots.FOREST_FILE]
    return report


def outside_splits(dataset: str, configuration: str, found, design: Dict[str, dict]) -> list:
    """A warning for folds that splits_final.json does not define: nnU-Net trains such a fold on a random 80:20 split
    of its own (nnUNetTrainer.do_split), not as a cross-validation fold, so the verdict's design does not describe
    it."""
    folds = {str(f) for trainer in found for f in trainer.folds if str(f) != "all"}
    outside = sorted(folds - set(design), key=lambda f: int(f)) if design else []
    if not outside:
        return []
    return [f"{dataset} {configuration}: fold(s) {', '.join(outside)} not in splits_final.json: nnU-Net trained them "
            f"on a random 80:20 split of its own, not as cross-validation folds (extend the splits first: "
            f"nnunet-attention splits -d {dataset} --repeats R); the verdict counts them as folds of the first repeat"]


def column_name(name: str) -> str:
    """A label name as a machine-friendly CSV column suffix."""
    import re

    return re.sub(r"[^0-9a-zA-Z]+", "_", str(name)).strip("_").lower() or "label"


def per_case_rows(table: pd.DataFrame) -> List[dict]:
    """One row per trainer, fold and case: <metric>_<class> and empty_<class> columns (per_case.csv's layout)."""
    rows = {}
    for r in table.to_dict("records"):
        row = rows.setdefault((r["dataset"], r["configuration"], r["trainer"], r["fold"], r["case"]), {
            k: r[k] for k in ("dataset", "configuration", "trainer", "fold", "case")})
        row[f"{r['metric']}_{column_name(r['class'])}"] = float(r["value"])
        row[f"empty_{column_name(r['class'])}"] = r["empty"]
    return list(rows.values())


def _mean_std(values) -> dict:
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    return {"mean": float(values.mean()) if values.size else None,
            "std": float(values.std()) if values.size else None, "n": int(values.size)}


def trainer_entry(found: TrainerResults, table: pd.DataFrame, classes: List[str]) -> TrainerEntry:
    per_fold = {}
    for fold in found.folds:
        rows = table[table["fold"] == fold]
        per_fold[str(fold)] = {name: {
            m: {"mean": found.nnunet_fold_means[fold][name][m],  # nnU-Net's own mean
                "std": _mean_std(rows[(rows["class"] == name) & (rows["metric"] == m)]["value"])["std"]}
            if m in FROM_SUMMARY else _mean_std(rows[(rows["class"] == name) & (rows["metric"] == m)]["value"])
            for m in METRICS} for name in classes}
    dice = table[table["metric"] == PRIMARY]
    return TrainerEntry(
        folder=found.folder, folds_found=list(found.folds), parameters=found.parameters,
        mean_epoch_seconds=found.epoch_seconds, epochs=found.epochs, per_fold=per_fold,
        pooled={name: {m: _mean_std(table[(table["class"] == name) & (table["metric"] == m)]["value"])
                       for m in METRICS} for name in classes},
        empty_cases={name: {kind: int((dice[dice["class"] == name]["empty"] == kind).sum())
                            for kind in ("both", "reference", "prediction")} for name in classes})


def configuration_entry(results: Results, dataset: str, configuration: str, trainers: List[str],
                        statistics: Dict[tuple, MetricStatistics], figures: List[str], table: pd.DataFrame,
                        paired_rows: List[dict], pairing: Pairing) -> ConfigurationEntry:
    """table: this dataset and configuration's slice of the long table (analysis.row_slice); paired_rows: its pairs
    (analysis.pairs), as records."""
    labels = results.datasets[dataset]
    classes = labels.class_names
    return ConfigurationEntry(
        labels=classes, label_keys=dict(zip(classes, labels.keys)),
        nsd_tolerance_mm={labels.names[k]: v for k, v in labels.tolerances.items()},
        trainers={t: trainer_entry(results.trainers[(dataset, configuration, t)], table[table["trainer"] == t],
                                   classes) for t in trainers},
        paired={name: {m: statistics[(dataset, configuration, name, m)] for m in METRICS
                       if (dataset, configuration, name, m) in statistics} for name in classes + [FOREGROUND]},
        figures=figures, per_case={t: per_case_rows(table[table["trainer"] == t]) for t in trainers},
        paired_cases=[f"fold_{f}/{c}" for f, c in sorted({(r["fold"], r["case"]) for r in paired_rows}, key=str)],
        pairing=pairing)


def report_header(trainers, plans, folds, results: Results, missing_datasets, note, margins: Margins) -> Report:
    from_summary = " and ".join(m.title for m in FROM_SUMMARY.values())
    empty = (f"{boundary.EMPTY_CONVENTION}; {from_summary}: both empty = 1 (nnU-Net's summary.json says NaN), so that "
             f"every metric scores the same classes; voxels under nnU-Net's ignore label count for no metric")
    return Report(trainers=list(trainers), plans=plans, folds=list(folds),
                  boundary_metrics=BoundaryMetrics(implementation=boundary.implementation(), empty_convention=empty),
                  missing=list(missing_datasets) + list(results.missing), missing_datasets=list(missing_datasets),
                  warnings=list(results.warnings), note=note, margins=margins, verdict_rule=verdict_rule(margins))


def summary_row(dataset: str, configuration: str, name: str, statistics: Dict[tuple, MetricStatistics]) -> SummaryRow:
    return SummaryRow(dataset, configuration, name, {m: statistics[(dataset, configuration, name, m)] for m in METRICS
                                                     if (dataset, configuration, name, m) in statistics})
