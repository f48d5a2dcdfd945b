"""Side-by-side report of two trainers on one or several datasets, from what nnU-Net already wrote.

Per dataset and configuration: each fold's ``validation/summary.json`` (per-case Dice as nnU-Net computed it), NSD
and HD95 per case and class computed from the same validation predictions against
``nnUNet_preprocessed/DatasetX/gt_segmentations`` (boundary.py, cached per fold), the checkpoints' logging
(parameter count, epoch times, learning curves) and, when ``nnUNetv2_find_best_configuration`` has run,
``inference_information.json`` and the ensembles (whose boundary metrics are computed too). Differences are always
the second trainer minus the first, paired by case. One summary table covers every dataset x configuration x class,
with Holm-adjusted p-values across its rows (per metric).
"""
import csv
import json
import os
import re
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from nnunet_attention import boundary
from nnunet_attention.checkpoint import load_checkpoint
from nnunet_attention.errors import NnUNetAttentionError
from nnunet_attention.nnunet_api import model_identifier
from nnunet_attention.statistics import holm, paired_statistics

METRICS = {  # key: (title, higher is better, tie tolerance)
    "dice": ("Dice", True, 1e-3),
    "nsd": ("NSD", True, 1e-3),
    "hd95": ("HD95 (mm)", False, 1e-2),
}
CURVE_SERIES = ("train_losses", "val_losses", "mean_fg_dice", "ema_fg_dice")
DEFAULT_NSD_TOLERANCE_MM = 1.0


class IncompleteResults(NnUNetAttentionError):
    """Nothing at all to compare."""


@dataclass
class DatasetSource:
    """Where one dataset's results and references are: nnUNet_results/DatasetX, nnUNet_preprocessed/DatasetX."""
    name: str
    results: str
    preprocessed: str


@dataclass
class TrainerResults:
    trainer: str
    configuration: str
    folder: str
    folds: Dict[int, dict] = field(default_factory=dict)  # fold -> summary.json
    boundary: Dict[int, dict] = field(default_factory=dict)  # fold -> case -> key -> boundary metrics
    curves: Dict[int, dict] = field(default_factory=dict)  # fold -> series -> per-epoch values
    parameters: Optional[int] = None
    epoch_seconds: Optional[float] = None
    epochs: Optional[int] = None


def read_summary(path: str) -> dict:
    """An nnU-Net validation summary.json; a corrupt or foreign file is a one-line error naming it."""
    try:
        with open(path) as f:
            summary = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise NnUNetAttentionError(f"{path} is not readable JSON ({e}); re-run that fold's validation "
                                   f"(nnUNetv2_train ... --val --npz)") from None
    cases = summary.get("metric_per_case") if isinstance(summary, dict) else None
    if not (isinstance(summary.get("mean") if isinstance(summary, dict) else None, dict) and isinstance(cases, list)
            and all(isinstance(c, dict) and "prediction_file" in c and isinstance(c.get("metrics"), dict)
                    for c in cases)):
        raise NnUNetAttentionError(f"{path} is not an nnU-Net validation summary (needs 'mean' and "
                                   f"'metric_per_case'); re-run that fold's validation (nnUNetv2_train ... --val)")
    return summary


def case_id(prediction_file: str, file_ending: str) -> str:
    name = os.path.basename(prediction_file)
    return name[: -len(file_ending)] if name.endswith(file_ending) else os.path.splitext(name)[0]


def _logging_of(folder: str, warnings: List[str]) -> Optional[dict]:
    """The training logging of a fold: checkpoint_final.pth, else checkpoint_latest.pth (a run in progress)."""
    for name in ("checkpoint_final.pth", "checkpoint_latest.pth"):
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            continue
        try:
            checkpoint = load_checkpoint(path, mmap=True)
            logging = checkpoint["logging"]
            epoch_seconds = [float(e) - float(s) for s, e in zip(logging["epoch_start_timestamps"],
                                                                 logging["epoch_end_timestamps"])]
        except (NnUNetAttentionError, KeyError, TypeError, ValueError) as e:
            warnings.append(f"{path}: no parameter count, epoch times or learning curves from it "
                            f"({str(e) if isinstance(e, NnUNetAttentionError) else 'no training logging'})")
            return None
        return {"logging": logging, "epoch_seconds": epoch_seconds, "weights": checkpoint["network_weights"]}
    return None


def _canonical(label_or_region) -> str:
    """A label (int) or region (ints) from dataset.json or nnU-Net's LabelManager, comparable across both."""
    values = [label_or_region] if isinstance(label_or_region, (int, np.integer)) else label_or_region
    values = sorted(int(v) for v in values)
    return str(values[0]) if len(values) == 1 else str(values)


class _Dataset:
    """A dataset's labels (names from dataset.json), tolerances and reader, as nnU-Net's evaluation sees them."""

    def __init__(self, source: DatasetSource, nsd_tolerance: Sequence[float]):
        from nnunetv2.evaluation.evaluate_predictions import label_or_region_to_key
        from nnunetv2.utilities.label_handling.label_handling import LabelManager

        self.source = source
        self.gt_folder = os.path.join(source.preprocessed, "gt_segmentations")
        dataset_json_file = os.path.join(source.preprocessed, "dataset.json")
        if not os.path.isfile(dataset_json_file):
            raise NnUNetAttentionError(f"{dataset_json_file} not found: compare reads the labels and references "
                                       f"from nnUNet_preprocessed (run nnUNetv2_plan_and_preprocess)")
        with open(dataset_json_file) as f:
            self.dataset_json = json.load(f)
        self.file_ending = self.dataset_json["file_ending"]
        manager = LabelManager(self.dataset_json["labels"], self.dataset_json.get("regions_class_order"))
        self.labels = list(manager.foreground_regions if manager.has_regions else manager.foreground_labels)
        self.keys = [label_or_region_to_key(label) for label in self.labels]
        by_value = {_canonical(v): name for name, v in self.dataset_json["labels"].items()}
        self.names = {key: by_value.get(_canonical(label), key) for key, label in zip(self.keys, self.labels)}
        if len(nsd_tolerance) not in (1, len(self.keys)):
            raise NnUNetAttentionError(f"--nsd-tolerance takes one value or one per class; {source.name} has "
                                       f"{len(self.keys)} ({', '.join(self.names.values())}), got "
                                       f"{len(nsd_tolerance)}")
        values = list(nsd_tolerance) * (len(self.keys) if len(nsd_tolerance) == 1 else 1)
        self.tolerances = {key: float(v) for key, v in zip(self.keys, values)}
        self._reader = None

    def reader_class(self, example_file: str) -> type:
        if self._reader is None:
            from nnunetv2.imageio.reader_writer_registry import determine_reader_writer_from_dataset_json

            self._reader = determine_reader_writer_from_dataset_json(self.dataset_json, example_file,
                                                                     verbose=False)
        return self._reader

    def boundary_metrics(self, prediction_folder: str, cases: List[str], num_processes: int,
                         progress: Optional[Callable]) -> Dict[str, dict]:
        if not cases:
            return {}
        reader = self.reader_class(os.path.join(self.gt_folder, cases[0] + self.file_ending))
        return boundary.folder_metrics(prediction_folder, self.gt_folder, cases, self.file_ending, reader,
                                       self.labels, self.tolerances, num_processes, progress)


def _read_trainer(dataset: _Dataset, trainer: str, plans: str, configuration: str, folds: Sequence[int],
                  missing: List[str], warnings: List[str], num_processes: int, log: Callable) -> TrainerResults:
    folder = os.path.join(dataset.source.results, model_identifier(trainer, plans, configuration))
    found = TrainerResults(trainer, configuration, folder)
    if not os.path.isdir(folder):
        missing.append(folder)
        return found
    epoch_times = []
    for fold in folds:
        fold_folder = os.path.join(folder, f"fold_{fold}")
        summary = os.path.join(fold_folder, "validation", "summary.json")
        if not os.path.isfile(summary):
            missing.append(summary)
            continue
        found.folds[fold] = read_summary(summary)
        cases = [case_id(e["prediction_file"], dataset.file_ending) for e in found.folds[fold]["metric_per_case"]]
        found.boundary[fold] = dataset.boundary_metrics(
            os.path.join(fold_folder, "validation"), cases, num_processes,
            _progress(log, f"{dataset.source.name} {configuration} {trainer} fold {fold}"))
        logged = _logging_of(fold_folder, warnings)
        if logged is None:
            continue
        logging = logged["logging"]
        if found.parameters is None:
            # the decoder keeps a reference to the encoder: count shared tensors once
            found.parameters = int(sum({t.data_ptr(): t.numel() for t in logged["weights"].values()
                                        if t.is_floating_point() and t.dim() > 0}.values()))
        epoch_times += logged["epoch_seconds"]
        found.epochs = len(logged["epoch_seconds"])
        found.curves[fold] = {k: [float(v) for v in logging.get(k, [])][:found.epochs] for k in CURVE_SERIES}
    found.epoch_seconds = float(np.mean(epoch_times)) if epoch_times else None
    return found


def _progress(log: Optional[Callable], what: str) -> Optional[Callable]:
    if log is None:
        return None
    return lambda done, total: log(f"boundary metrics {what}: {done}/{total} cases", done == total)


def _per_case_rows(dataset: _Dataset, results: TrainerResults) -> List[dict]:
    rows = []
    for fold, summary in sorted(results.folds.items()):
        for entry in summary["metric_per_case"]:
            case = case_id(entry["prediction_file"], dataset.file_ending)
            row = {"dataset": dataset.source.name, "configuration": results.configuration,
                   "trainer": results.trainer, "fold": fold, "case": case}
            for key in dataset.keys:
                column = column_name(dataset.names[key])
                dice = entry["metrics"].get(key, {}).get("Dice", float("nan"))
                row[f"dice_{column}"] = float("nan") if dice is None else float(dice)
                measured = results.boundary[fold][case][key]
                row[f"nsd_{column}"] = measured["nsd"]
                row[f"hd95_{column}"] = measured["hd95"]
                row[f"empty_{column}"] = measured["empty"] or ""
            rows.append(row)
    return rows


def column_name(name: str) -> str:
    """A label name as a machine-friendly CSV column suffix."""
    return re.sub(r"[^0-9a-zA-Z]+", "_", str(name)).strip("_").lower() or "label"


def _mean_std(values) -> dict:
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    return {"mean": float(values.mean()) if values.size else None,
            "std": float(values.std()) if values.size else None, "n": int(values.size)}


def _value(row: dict, metric: str, dataset: _Dataset, key: Optional[str]) -> float:
    """A row's metric for one class, or the mean over classes (key None), as nnU-Net's foreground mean."""
    if key is not None:
        return row[f"{metric}_{column_name(dataset.names[key])}"]
    values = [row[f"{metric}_{column_name(dataset.names[k])}"] for k in dataset.keys]
    values = [v for v in values if not np.isnan(v)]
    return float(np.mean(values)) if values else float("nan")


def _configuration_entry(dataset: _Dataset, pair: List[TrainerResults], rng) -> dict:
    rows = {r.trainer: _per_case_rows(dataset, r) for r in pair}
    names = [dataset.names[k] for k in dataset.keys]
    entry = {"labels": names, "label_keys": dict(zip(names, dataset.keys)),
             "nsd_tolerance_mm": {dataset.names[k]: v for k, v in dataset.tolerances.items()},
             "trainers": {}, "paired": {}, "per_case": rows}
    for r in pair:
        per_fold = {}
        for fold, summary in sorted(r.folds.items()):
            fold_rows = [row for row in rows[r.trainer] if row["fold"] == fold]
            per_fold[str(fold)] = {
                dataset.names[k]: {
                    "dice": {"mean": summary["mean"].get(k, {}).get("Dice"),  # nnU-Net's own mean
                             "std": _mean_std([_value(row, "dice", dataset, k) for row in fold_rows])["std"]},
                    **{m: _mean_std([_value(row, m, dataset, k) for row in fold_rows]) for m in ("nsd", "hd95")}}
                for k in dataset.keys}
        empty = {dataset.names[k]: {kind: sum(1 for row in rows[r.trainer]
                                              if row[f"empty_{column_name(dataset.names[k])}"] == kind)
                                    for kind in ("both", "reference", "prediction")} for k in dataset.keys}
        entry["trainers"][r.trainer] = {
            "folder": r.folder, "folds_found": sorted(r.folds), "parameters": r.parameters,
            "mean_epoch_seconds": r.epoch_seconds, "epochs": r.epochs, "per_fold": per_fold,
            "pooled": {dataset.names[k]: {m: _mean_std([_value(row, m, dataset, k) for row in rows[r.trainer]])
                                          for m in METRICS} for k in dataset.keys},
            "empty_cases": empty,
        }
    by_case = [{(row["fold"], row["case"]): row for row in rows[r.trainer]} for r in pair]
    common = sorted(set(by_case[0]) & set(by_case[1]))
    for key in dataset.keys + [None]:
        name = dataset.names[key] if key is not None else "foreground_mean"
        entry["paired"][name] = {}
        for metric, (_, higher_is_better, tie) in METRICS.items():
            values = np.array([(_value(by_case[0][c], metric, dataset, key), _value(by_case[1][c], metric, dataset,
                                                                                   key)) for c in common],
                              dtype=float).reshape(-1, 2)
            kept = values[~np.isnan(values).any(axis=1)]
            stats = paired_statistics(kept[:, 1] - kept[:, 0], rng, tie, higher_is_better)
            stats.update(mean_a=float(kept[:, 0].mean()) if len(kept) else None,
                         mean_b=float(kept[:, 1].mean()) if len(kept) else None,
                         excluded_nan_pairs=int(len(values) - len(kept)))
            entry["paired"][name][metric] = stats
    entry["paired_cases"] = [f"fold_{f}/{c}" for f, c in common]
    return entry


def _trainers_in_identifier(identifier: str) -> List[str]:
    """Trainer names in find_best_configuration's keys: TRAINER__PLANS__CONFIG or ensemble___M1___M2___FOLDS."""
    models = identifier.split("___")[1:3] if identifier.startswith("ensemble___") else [identifier]
    return [m.split("__")[0] for m in models]


def _ensembles(dataset: _Dataset, trainers: Sequence[str], num_processes: int, log) -> Optional[dict]:
    info_file = os.path.join(dataset.source.results, "inference_information.json")
    if not os.path.isfile(info_file):
        return None
    with open(info_file) as f:
        info = json.load(f)
    relevant = {k: v for k, v in info["all_results"].items() if set(_trainers_in_identifier(k)) <= set(trainers)}
    per_class = {}
    for key in relevant:
        folder = os.path.join(dataset.source.results, "ensembles", key)
        summary_file = os.path.join(folder, "summary.json")
        if key.startswith("ensemble___") and os.path.isfile(summary_file):
            summary = read_summary(summary_file)
            cases = [case_id(e["prediction_file"], dataset.file_ending) for e in summary["metric_per_case"]]
            measured = dataset.boundary_metrics(folder, cases, num_processes,
                                                _progress(log, f"{dataset.source.name} ensemble"))
            per_class[key] = {dataset.names[k]: {
                "dice": summary["mean"].get(k, {}).get("Dice"),
                "nsd": float(np.mean([measured[c][k]["nsd"] for c in cases])) if cases else None,
                "hd95": float(np.mean([measured[c][k]["hd95"] for c in cases])) if cases else None}
                for k in dataset.keys}
    best = info["best_model_or_ensemble"]
    return {"source": info_file, "foreground_dice": relevant, "ensemble_per_class": per_class,
            "best": {"models": best["selected_model_or_models"],
                     "foreground_dice": best["result_on_crossval_pre_pp"],
                     "foreground_dice_postprocessed": best["result_on_crossval_post_pp"]}}


def compare(datasets: Sequence[DatasetSource], configurations: Sequence[str], trainers: Sequence[str], plans: str,
            folds: Sequence[int], output_dir: str, nsd_tolerance: Sequence[float] = (DEFAULT_NSD_TOLERANCE_MM,),
            num_processes: int = 1, missing_datasets: Sequence[str] = (), seed: int = 0,
            log: Optional[Callable[[str, bool], None]] = None, note: Optional[str] = None) -> dict:
    """Writes report.md, report.json, per_case.csv and the plots to output_dir; returns the report dict.

    Args:
        datasets: where each dataset's results and preprocessed data are.
        nsd_tolerance: NSD tolerance in mm, one value or one per class (in dataset.json's label order).
        num_processes: processes for the boundary metrics (nnU-Net's default_num_processes on the CLI).
        missing_datasets: datasets asked for but not found, named in the report and left out of everything.
        log: called with (message, final) for progress.
        note: one line shown under the report's title (the demo says there what a short run can show).
    """
    if len(trainers) != 2:
        raise NnUNetAttentionError(f"compare needs exactly two trainers (-tr A B), got {len(trainers)}")
    if trainers[0] == trainers[1]:
        raise NnUNetAttentionError(f"-tr names {trainers[0]} twice; compare two different trainers")
    missing: List[str] = list(missing_datasets)
    warnings: List[str] = []
    read = {}
    for source in datasets:
        dataset = _Dataset(source, nsd_tolerance)
        read[source.name] = (dataset, {c: [_read_trainer(dataset, t, plans, c, folds, missing, warnings,
                                                          num_processes, log) for t in trainers]
                                       for c in configurations})
    if not any(r.folds for _, by_configuration in read.values() for pair in by_configuration.values()
               for r in pair):
        raise IncompleteResults("no validation/summary.json found; missing: " + "; ".join(missing))
    rng = np.random.default_rng(seed)
    os.makedirs(output_dir, exist_ok=True)
    report = {"trainers": list(trainers), "plans": plans, "folds": list(folds),
              "difference": f"{trainers[1]} minus {trainers[0]}",
              "metrics": {m: {"title": t, "higher_is_better": h, "tie_tolerance": tie}
                          for m, (t, h, tie) in METRICS.items()},
              "boundary_metrics": {"implementation": boundary.implementation(),
                                   "empty_convention": boundary.EMPTY_CONVENTION + "; Dice: both empty = NaN, left "
                                                       "out of Dice statistics as nnU-Net does"},
              "complete": not missing, "missing": missing, "missing_datasets": list(missing_datasets),
              "warnings": warnings, "note": note, "summary": [], "datasets": {}, "curves": {}}
    all_rows = []
    for name, (dataset, by_configuration) in read.items():
        section = {"configurations": {}, "ensembles": _ensembles(dataset, trainers, num_processes, log)}
        report["curves"][name] = {}
        for configuration, pair in by_configuration.items():
            if not all(r.folds for r in pair):
                continue
            entry = _configuration_entry(dataset, pair, rng)
            rows = entry["per_case"]
            all_rows += [row for r in pair for row in rows[r.trainer]]
            section["configurations"][configuration] = entry
            report["curves"][name][configuration] = {r.trainer: {str(f): c for f, c in sorted(r.curves.items())}
                                                     for r in pair}
            prefix = f"{name}_{configuration}"
            _plot_metrics(prefix, dataset, rows, entry, trainers, output_dir)
            _plot_curves(prefix, report["curves"][name][configuration], trainers, output_dir)
            for label in entry["labels"]:
                paired = entry["paired"][label]
                report["summary"].append({"dataset": name, "configuration": configuration, "class": label,
                                          "metrics": {m: {k: paired[m][k] for k in (
                                              "n_pairs", "mean_a", "mean_b", "mean_difference", "bootstrap_ci95",
                                              "wilcoxon_p")} for m in METRICS}})
        report["datasets"][name] = section
    for metric in METRICS:
        adjusted = holm([row["metrics"][metric]["wilcoxon_p"] for row in report["summary"]])
        for row, p in zip(report["summary"], adjusted):
            row["metrics"][metric]["p_holm"] = p
    _write_csv(all_rows, os.path.join(output_dir, "per_case.csv"))
    _write_text(os.path.join(output_dir, "report.json"), json.dumps(report, indent=2))
    _write_text(os.path.join(output_dir, "report.md"), render_markdown(report))
    return report


def _write_text(path: str, text: str):
    with open(path + ".partial", "w") as f:
        f.write(text)
    os.replace(path + ".partial", path)


def _write_csv(rows: List[dict], path: str):
    fields = list(dict.fromkeys(k for row in rows for k in row))
    with open(path + ".partial", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(path + ".partial", path)


def _short(trainer: str) -> str:
    return trainer.replace("nnUNetTrainer", "nnUNetTrainer\n")


def _plot_metrics(prefix: str, dataset: _Dataset, rows: Dict[str, List[dict]], entry: dict, trainers, output_dir):
    """Per metric (rows) and class (columns): box + strip of both trainers, and the paired per-case differences."""
    from matplotlib.figure import Figure  # the object API: no pyplot, no backend switch

    keys = dataset.keys
    jitter = np.random.default_rng(0)
    fig = Figure(figsize=(3.2 * len(keys), 3.0 * len(METRICS)), layout="tight")
    axes = fig.subplots(len(METRICS), len(keys), squeeze=False)
    for i, (metric, (title, _, _)) in enumerate(METRICS.items()):
        for ax, key in zip(axes[i], keys):
            data = [[v for v in (_value(row, metric, dataset, key) for row in rows[t]) if not np.isnan(v)]
                    for t in trainers]
            ax.boxplot(data, showfliers=False)
            for j, values in enumerate(data, start=1):
                ax.scatter(j + jitter.uniform(-0.12, 0.12, len(values)), values, s=10, alpha=0.6)
            ax.set_xticks([1, 2], [_short(t) for t in trainers], fontsize=6)
            ax.set_title(f"{dataset.names[key]}: {title}", fontsize=9)
    fig.suptitle(prefix)
    fig.savefig(os.path.join(output_dir, f"metrics_{prefix}.png"), dpi=110)

    fig = Figure(figsize=(1.6 + 1.4 * len(keys), 2.8 * len(METRICS)), layout="tight")
    axes = fig.subplots(len(METRICS), 1, squeeze=False)[:, 0]
    by_case = [{(row["fold"], row["case"]): row for row in rows[t]} for t in trainers]
    common = sorted(set(by_case[0]) & set(by_case[1]))
    for ax, (metric, (title, _, _)) in zip(axes, METRICS.items()):
        for i, key in enumerate(keys, start=1):
            diffs = np.array([_value(by_case[1][c], metric, dataset, key) - _value(by_case[0][c], metric, dataset,
                                                                                    key) for c in common])
            diffs = diffs[~np.isnan(diffs)]
            ax.scatter(i + jitter.uniform(-0.15, 0.15, len(diffs)), diffs, s=12, alpha=0.7)
            if diffs.size:
                ax.hlines(diffs.mean(), i - 0.3, i + 0.3, color="k")
        ax.axhline(0, color="grey", lw=0.8, ls="--")
        ax.set_xticks(range(1, len(keys) + 1), [dataset.names[k] for k in keys])
        ax.set_ylabel(f"{title} difference\n(B - A)", fontsize=7)
    axes[0].set_title(f"{prefix}: {trainers[1]} - {trainers[0]}, per case", fontsize=8)
    fig.savefig(os.path.join(output_dir, f"paired_differences_{prefix}.png"), dpi=110)


def _plot_curves(prefix: str, curves: Dict[str, Dict[str, dict]], trainers, output_dir):
    """Learning curves: thin lines per fold, a thick line for the mean over folds, both trainers overlaid."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 6.5), layout="tight")
    axes = fig.subplots(2, 2).ravel()
    colours = ("tab:blue", "tab:orange")
    for ax, series in zip(axes, CURVE_SERIES):
        for colour, trainer in zip(colours, trainers):
            runs = [fold_curves[series] for fold_curves in curves.get(trainer, {}).values() if fold_curves[series]]
            for run in runs:
                ax.plot(range(len(run)), run, color=colour, lw=0.6, alpha=0.4)
            if runs:
                length = min(len(run) for run in runs)
                ax.plot(range(length), np.mean([run[:length] for run in runs], axis=0), color=colour, lw=2,
                        label=f"{trainer} (mean of {len(runs)} fold{'s' if len(runs) > 1 else ''})")
        ax.set_title(series, fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"{prefix}: learning curves from nnU-Net's checkpoint logging")
    fig.savefig(os.path.join(output_dir, f"curves_{prefix}.png"), dpi=110)


def _fmt(value, digits=4):
    return "n/a" if value is None else f"{value:.{digits}f}"


def _ci(ci):
    return f"[{_fmt(ci[0])}, {_fmt(ci[1])}]" if ci else "n/a"


def render_markdown(report: dict) -> str:
    a, b = report["trainers"]
    bm = report["boundary_metrics"]
    lines = [f"# {b} vs {a}", "",
             f"Plans `{report['plans']}`, folds {report['folds']}. Differences are **{b} minus {a}**, per validation "
             f"case, paired by case. Boundary metrics: {bm['implementation']}. Empty masks: {bm['empty_convention']}.",
             "Wins count the cases where B is better (higher Dice/NSD, lower HD95); ties are |difference| <= "
             + ", ".join(f"{m['title']} {m['tie_tolerance']}" for m in report["metrics"].values()) + ".", ""]
    if report.get("note"):
        lines += [f"> {report['note']}", ""]
    if report["missing_datasets"]:
        lines += ["**Datasets not found** (left out of the table and the correction): "
                  + ", ".join(f"`{d}`" for d in report["missing_datasets"]), ""]
    if not report["complete"]:
        lines += ["**Incomplete**: these results are missing, the report covers what exists:", ""]
        lines += [f"- `{m}`" for m in report["missing"] if m not in report["missing_datasets"]] + [""]
    lines += ["## Summary: every dataset x configuration x class", "",
              "Mean over paired validation cases; 95% bootstrap CI of the mean difference; Wilcoxon signed-rank p and "
              f"Holm-adjusted p over the {len(report['summary'])} rows of this table (per metric).", ""]
    header = "| dataset | configuration | class | pairs |"
    for m in report["metrics"].values():
        header += f" {m['title']} A | {m['title']} B | diff [95% CI] | p | p Holm |"
    lines += [header, "|" + "---|" * (4 + 5 * len(report["metrics"]))]
    for row in report["summary"]:
        cells = [row["dataset"], row["configuration"], row["class"],
                 str(row["metrics"]["dice"]["n_pairs"])]
        for metric in report["metrics"]:
            s = row["metrics"][metric]
            cells += [_fmt(s["mean_a"]), _fmt(s["mean_b"]), f"{_fmt(s['mean_difference'])} {_ci(s['bootstrap_ci95'])}",
                      _fmt(s["wilcoxon_p"], 3), _fmt(s["p_holm"], 3)]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    for name, section in report["datasets"].items():
        lines += [f"## {name}", ""]
        for configuration, entry in section["configurations"].items():
            lines += _configuration_markdown(name, configuration, entry, report)
        lines += _ensembles_markdown(section["ensembles"], a, b)
    return "\n".join(lines)


def _configuration_markdown(name: str, configuration: str, entry: dict, report: dict) -> List[str]:
    tolerances = ", ".join(f"{k} {v} mm" for k, v in entry["nsd_tolerance_mm"].items())
    lines = [f"### {configuration}", "", f"NSD tolerance: {tolerances}.", "",
             "Per class, mean ± std over validation cases (Dice per fold is nnU-Net's own mean from summary.json):",
             ""]
    folds = sorted({f for t in entry["trainers"].values() for f in t["per_fold"]}, key=int)
    lines += ["| trainer | class | metric | " + " | ".join(f"fold {f}" for f in folds) + " | pooled | empty cases "
              "(both / ref only / pred only) |", "|---|---|---|" + "---|" * (len(folds) + 2)]
    for trainer, t in entry["trainers"].items():
        for label in entry["labels"]:
            empty = t["empty_cases"][label]
            for metric, m in report["metrics"].items():
                cells = [f"{_fmt(t['per_fold'][f][label][metric]['mean'])} ± "
                         f"{_fmt(t['per_fold'][f][label][metric]['std'])}" if f in t["per_fold"] else "missing"
                         for f in folds]
                pooled = t["pooled"][label][metric]
                lines.append(f"| {trainer} | {label} | {m['title']} | " + " | ".join(cells) +
                             f" | {_fmt(pooled['mean'])} ± {_fmt(pooled['std'])} (n={pooled['n']}) | "
                             f"{empty['both']} / {empty['reference']} / {empty['prediction']} |")
    lines += ["", "Paired per-case differences (B - A):", "",
              "| class | metric | pairs | mean diff | 95% bootstrap CI | median diff | wins / ties / losses | "
              "Wilcoxon p |", "|---|---|---|---|---|---|---|---|"]
    for label, by_metric in entry["paired"].items():
        for metric, s in by_metric.items():
            lines.append(f"| {label} | {report['metrics'][metric]['title']} | {s['n_pairs']} | "
                         f"{_fmt(s['mean_difference'])} | {_ci(s['bootstrap_ci95'])} | {_fmt(s['median_difference'])} "
                         f"| {s['wins']} / {s['ties']} / {s['losses']} | {_fmt(s['wilcoxon_p'], 3)} |")
    lines += ["", "| trainer | parameters | epochs | mean epoch time (s) |", "|---|---|---|---|"]
    for trainer, t in entry["trainers"].items():
        lines.append(f"| {trainer} | {t['parameters'] if t['parameters'] is not None else 'n/a'} | "
                     f"{t['epochs'] if t['epochs'] is not None else 'n/a'} | {_fmt(t['mean_epoch_seconds'], 1)} |")
    prefix = f"{name}_{configuration}"
    lines += ["", f"![metrics](metrics_{prefix}.png) ![paired differences](paired_differences_{prefix}.png)",
              f"![learning curves](curves_{prefix}.png)", ""]
    return lines


def _ensembles_markdown(ensembles: Optional[dict], a: str, b: str) -> List[str]:
    lines = ["### nnUNetv2_find_best_configuration", ""]
    if ensembles is None:
        return lines + ["Not run yet (no `inference_information.json`); run `nnUNetv2_find_best_configuration` with "
                        f"`-tr {a} {b}` to add the ensemble.", ""]
    lines += ["| model or ensemble | foreground Dice |", "|---|---|"]
    lines += [f"| {k} | {_fmt(v)} |" for k, v in ensembles["foreground_dice"].items()]
    for key, per_class in ensembles["ensemble_per_class"].items():
        lines += ["", f"`{key}` per class: " + "; ".join(
            f"{label} Dice {_fmt(v['dice'])}, NSD {_fmt(v['nsd'])}, HD95 {_fmt(v['hd95'], 2)} mm"
            for label, v in per_class.items())]
    best = ensembles["best"]
    chosen = " + ".join(f"{m['trainer']} ({m['configuration']})" for m in best["models"])
    return lines + ["", f"Chosen: **{chosen}**, foreground Dice {_fmt(best['foreground_dice'])} "
                        f"({_fmt(best['foreground_dice_postprocessed'])} after postprocessing).", ""]
