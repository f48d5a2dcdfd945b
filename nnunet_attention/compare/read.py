"""Reading what nnU-Net wrote into one long-form table: dataset, configuration, trainer, fold, case, class, metric,
value (plus, per case and class, which masks were empty and the reference's volume).

Dice per case is nnU-Net's own (each fold's ``validation/summary.json``), except for a class empty in both reference
and prediction: nnU-Net gives NaN and leaves it out of its means, compare scores it as the registry says (metrics.py),
as it scores the boundary metrics, so that every metric's foreground mean averages the same classes; the boundary
metrics are computed from the same validation predictions against ``nnUNet_preprocessed/DatasetX/gt_segmentations``
(boundary.py, cached per fold). The
checkpoints' logging gives parameter counts, epoch times and learning curves; ``inference_information.json`` and
the ensembles of ``nnUNetv2_find_best_configuration`` are read when they exist.
"""
import json
import os
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import pandas as pd

from nnunet_attention.compare import boundary
from nnunet_attention.compare.metrics import BOUNDARY, FROM_SUMMARY, Metric
from nnunet_attention.compare.report import BestModel, Ensembles, Pairing
from nnunet_attention.model.checkpoint import load_checkpoint
from nnunet_attention.model.pairing_record import study_seed_of
from nnunet_attention.errors import NnUNetAttentionError
from nnunet_attention.nnunet_api import model_identifier

CURVE_SERIES = ("train_losses", "val_losses", "mean_fg_dice", "ema_fg_dice")
COLUMNS = ["dataset", "configuration", "trainer", "fold", "case", "class", "metric", "value", "empty",
           "reference_mm3"]


@dataclass
class DatasetSource:
    """Where one dataset's results and references are: nnUNet_results/DatasetX, nnUNet_preprocessed/DatasetX."""
    name: str
    results: str
    preprocessed: str


@dataclass
class TrainerResults:
    """What a trainer's folds say besides the per-case metrics."""
    trainer: str
    configuration: str
    folder: str
    folds: List = field(default_factory=list)
    # fold -> class name -> metric -> nnU-Net's own mean of it (the metrics read from summary.json)
    nnunet_fold_means: Dict = field(default_factory=dict)
    curves: Dict = field(default_factory=dict)  # fold -> series -> per-epoch values
    parameters: Optional[int] = None
    epoch_seconds: Optional[float] = None
    epochs: Optional[int] = None


@dataclass
class Results:
    table: pd.DataFrame
    datasets: Dict[str, "DatasetLabels"]
    trainers: Dict[tuple, TrainerResults]  # (dataset, configuration, trainer) -> what its folds say
    ensembles: Dict[str, Optional[Ensembles]]
    missing: List[str]
    warnings: List[str]
    designs: Dict[str, Dict[str, dict]] = field(default_factory=dict)  # dataset -> fold -> repeat, n_train
    # (dataset, configuration) -> how its trainings were paired, where every trainer has folds (pairing_of)
    pairings: Dict[tuple, Pairing] = field(default_factory=dict)


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
    per_class = [summary["mean"], *(c["metrics"] for c in cases)]
    bad = next((repr(v.get("Dice") if isinstance(v, dict) else v) for classes in per_class for v in classes.values()
                if not (isinstance(v, dict) and _is_number(v.get("Dice")))), None)
    if bad is not None or not all(isinstance(c["prediction_file"], str) for c in cases):
        raise NnUNetAttentionError(f"{path} holds a value nnU-Net does not write (a class's metrics must have a "
                                   f"numeric Dice, got {bad}); re-run that fold's validation "
                                   f"(nnUNetv2_train ... --val)")
    return summary


def _is_number(value) -> bool:
    """A Dice as nnU-Net writes it: a number, NaN (a class empty in both) or null."""
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))


def case_id(prediction_file: str, file_ending: str) -> str:
    name = os.path.basename(prediction_file)
    return name[: -len(file_ending)] if name.endswith(file_ending) else os.path.splitext(name)[0]


def _canonical(label_or_region) -> str:
    """A label (int) or region (ints) from dataset.json or nnU-Net's LabelManager, comparable across both."""
    values = [label_or_region] if isinstance(label_or_region, (int, np.integer)) else label_or_region
    values = sorted(int(v) for v in values)
    return str(values[0]) if len(values) == 1 else str(values)


class DatasetLabels:
    """A dataset's labels (names from dataset.json), NSD tolerances, ignore label and reader, as nnU-Net's
    evaluation sees them."""

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
        self.ignore_label = manager.ignore_label
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

    @property
    def class_names(self) -> List[str]:
        return [self.names[k] for k in self.keys]

    def boundary_metrics(self, prediction_folder: str, cases: List[str], workers: boundary.CaseWorkers,
                         progress: Optional[Callable]) -> Dict[str, dict]:
        if not cases:
            return {}
        if self._reader is None:
            from nnunetv2.imageio.reader_writer_registry import determine_reader_writer_from_dataset_json

            self._reader = determine_reader_writer_from_dataset_json(
                self.dataset_json, os.path.join(self.gt_folder, cases[0] + self.file_ending), verbose=False)
        return boundary.folder_metrics(prediction_folder, self.gt_folder, cases, self.file_ending, self._reader,
                                       self.labels, self.tolerances, workers, progress, self.ignore_label)

    def case_rows(self, summary: dict, measured: Dict[str, dict], prefix: dict) -> List[dict]:
        """Long-form rows of one validated folder: each metric from its source (nnU-Net's summary or the masks)."""
        rows = []
        for entry in summary["metric_per_case"]:
            case = case_id(entry["prediction_file"], self.file_ending)
            for key in self.keys:
                m = measured[case][key]
                values = {**{name: nnunet_value(entry["metrics"].get(key, {}), metric, m["empty"])
                             for name, metric in FROM_SUMMARY.items()}, **{b: m[b] for b in BOUNDARY}}
                rows += [{**prefix, "case": case, "class": self.names[key], "metric": metric, "value": value,
                          "empty": m["empty"] or "", "reference_mm3": m["reference_mm3"]}
                         for metric, value in values.items()]
        return rows


def nnunet_value(scores: dict, metric: Metric, empty: Optional[str]) -> float:
    """A metric nnU-Net's summary holds, for one case and class: NaN there when both masks are empty, which
    compare scores by the registry's rule (metric.both_empty); NaN when the summary has no value."""
    if empty == "both":
        return metric.both_empty
    value = scores.get(metric.summary_key)
    return float("nan") if value is None else float(value)


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


def _progress(log: Optional[Callable], what: str) -> Optional[Callable]:
    if log is None:
        return None
    return lambda done, total: log(f"boundary metrics {what}: {done}/{total} cases", done == total)


def _read_trainer(dataset: DatasetLabels, trainer: str, plans: str, configuration: str, folds: Sequence,
                  rows: List[dict], missing: List[str], warnings: List[str], workers: boundary.CaseWorkers,
                  log: Optional[Callable]) -> TrainerResults:
    folder = os.path.join(dataset.source.results, model_identifier(trainer, plans, configuration))
    found = TrainerResults(trainer, configuration, folder)
    if not os.path.isdir(folder):
        missing.append(folder)
        return found
    epoch_times = []
    for fold in folds:
        fold_folder = os.path.join(folder, f"fold_{fold}")
        summary_file = os.path.join(fold_folder, "validation", "summary.json")
        if not os.path.isfile(summary_file):
            missing.append(summary_file)
            continue
        summary = read_summary(summary_file)
        found.folds.append(fold)
        found.nnunet_fold_means[fold] = {
            dataset.names[k]: {name: summary["mean"].get(k, {}).get(metric.summary_key)
                               for name, metric in FROM_SUMMARY.items()} for k in dataset.keys}
        cases = [case_id(e["prediction_file"], dataset.file_ending) for e in summary["metric_per_case"]]
        measured = dataset.boundary_metrics(os.path.join(fold_folder, "validation"), cases, workers,
                                            _progress(log, f"{dataset.source.name} {configuration} {trainer} "
                                                           f"fold {fold}"))
        rows += dataset.case_rows(summary, measured, {"dataset": dataset.source.name, "configuration": configuration,
                                                      "trainer": trainer, "fold": fold})
        logged = _logging_of(fold_folder, warnings)
        if logged is None:
            continue
        if found.parameters is None:
            # the decoder keeps a reference to the encoder: count shared tensors once
            found.parameters = int(sum({t.data_ptr(): t.numel() for t in logged["weights"].values()
                                        if t.is_floating_point() and t.dim() > 0}.values()))
        epoch_times += logged["epoch_seconds"]
        found.epochs = len(logged["epoch_seconds"])
        found.curves[fold] = {k: [float(v) for v in logged["logging"].get(k, [])][:found.epochs]
                              for k in CURVE_SERIES}
    found.epoch_seconds = float(np.mean(epoch_times)) if epoch_times else None
    return found


def _trainers_in_identifier(identifier: str) -> List[str]:
    """Trainer names in find_best_configuration's keys: TRAINER__PLANS__CONFIG or ensemble___M1___M2___FOLDS."""
    from nnunetv2.utilities.file_path_utilities import (convert_ensemble_folder_to_model_identifiers_and_folds,
                                                        convert_identifier_to_trainer_plans_config)

    models = (convert_ensemble_folder_to_model_identifiers_and_folds(identifier)[0]
              if identifier.startswith("ensemble___") else [identifier])
    return [convert_identifier_to_trainer_plans_config(m)[0] for m in models]


def read_ensembles(dataset: DatasetLabels, trainers: Sequence[str], workers: boundary.CaseWorkers,
                   log) -> Optional[Ensembles]:
    """find_best_configuration's answer for these trainers, with every metric per class of its ensembles."""
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
            measured = dataset.boundary_metrics(folder, cases, workers,
                                                _progress(log, f"{dataset.source.name} ensemble"))
            per_class[key] = {dataset.names[k]: {
                **{name: summary["mean"].get(k, {}).get(metric.summary_key) for name, metric in FROM_SUMMARY.items()},
                **{b: float(np.mean([measured[c][k][b] for c in cases])) if cases else None for b in BOUNDARY}}
                for k in dataset.keys}
    best = info["best_model_or_ensemble"]
    return Ensembles(source=info_file, foreground_dice=relevant, ensemble_per_class=per_class,
                     best=BestModel(models=best["selected_model_or_models"],
                                    foreground_dice=best["result_on_crossval_pre_pp"],
                                    foreground_dice_postprocessed=best["result_on_crossval_post_pp"]))


def check_trainers_trained(sources: Sequence[DatasetSource], configurations: Sequence[str], trainers: Sequence[str],
                           plans: str):
    """A trainer with no model folder at all in the datasets' results is a misspelt name: a one-line error before
    anything is read (a configuration, fold or dataset it lacks is listed in the report, not fatal)."""
    trained = sorted({name.split("__")[0] for source in sources if os.path.isdir(source.results)
                      for name in os.listdir(source.results) if "__" in name})
    for trainer in trainers:
        if trainer not in trained:
            raise NnUNetAttentionError(f"-tr {trainer}: no {model_identifier(trainer, plans, configurations[0])} "
                                       f"(nor any other model folder of {trainer}) in "
                                       f"{', '.join(s.results for s in sources)}; trained there: "
                                       f"{', '.join(trained) or 'nothing'} (check -tr)")


def read_results(sources: Sequence[DatasetSource], configurations: Sequence[str], trainers: Sequence[str],
                 plans: str, folds: Sequence, nsd_tolerance: Sequence[float], num_processes: int,
                 log: Optional[Callable] = None) -> Results:
    """Everything compare reports on, read from nnU-Net's files; what is missing is listed, not fatal."""
    check_trainers_trained(sources, configurations, trainers, plans)
    rows, missing, warnings = [], [], []
    datasets, found, ensembles = {}, {}, {}
    with boundary.CaseWorkers(num_processes) as workers:
        for source in sources:
            dataset = datasets[source.name] = DatasetLabels(source, nsd_tolerance)
            for configuration in configurations:
                for trainer in trainers:
                    found[(source.name, configuration, trainer)] = _read_trainer(
                        dataset, trainer, plans, configuration, folds, rows, missing, warnings, workers, log)
            ensembles[source.name] = read_ensembles(dataset, trainers, workers, log)
    designs = {source.name: read_design(source.preprocessed) for source in sources}
    pairings = {(d, c): pairing_of([found[(d, c, t)] for t in trainers]) for d in datasets for c in configurations
                if all(found[(d, c, t)].folds for t in trainers)}
    return Results(pd.DataFrame(rows, columns=COLUMNS), datasets, found, ensembles, missing, warnings, designs,
                   pairings)


def pairing_of(found) -> Pairing:
    """Whether the two trainers' folds are pairs, from each fold's pairing.json (pairing_record): "paired (seed S)"
    when every fold of both was trained under the same study seed, "unpaired" when none was paired, "mixed"
    otherwise, with a warning naming each fold whose two trainings are not a pair."""
    seeds = {str(fold): [study_seed_of(os.path.join(t.folder, f"fold_{fold}")) for t in found]
             for fold in sorted({str(f) for t in found for f in t.folds}, key=str)}
    not_pairs = {fold: pair for fold, pair in seeds.items() if pair[0] is None or pair[0] != pair[1]}
    if not not_pairs:
        design = f"paired (seed {next(iter(seeds.values()))[0]})" if seeds else "unpaired"
    elif all(pair == [None, None] for pair in seeds.values()):
        design = "unpaired"
    else:
        design = "mixed"
    warnings = [] if design == "unpaired" else [
        f"fold {fold}: {found[0].trainer} trained {_trained(pair[0])}, {found[1].trainer} {_trained(pair[1])}: not a "
        f"pair (train both again with the same --seed, or both unpaired)" for fold, pair in not_pairs.items()]
    return Pairing(design, seeds, warnings)


def _trained(seed: Optional[int]) -> str:
    return "unpaired" if seed is None else f"with --seed {seed}"


def read_design(preprocessed: str) -> Dict[str, dict]:
    """fold -> {"repeat", "n_train"} from nnUNet_preprocessed/DatasetX/splits_final.json (cross_validation_design);
    empty when the file is missing or not a list of splits (compare then infers the sizes from the folds it reads)."""
    path = os.path.join(preprocessed, "splits_final.json")
    try:
        with open(path) as f:
            splits = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    if not (isinstance(splits, list) and all(isinstance(e, dict) and isinstance(e.get("train"), list)
                                             and isinstance(e.get("val"), list) for e in splits)):
        return {}
    return cross_validation_design(splits)


def cross_validation_design(splits: List[dict]) -> Dict[str, dict]:
    """Which repeat of a repeated k-fold cross-validation each fold of splits_final.json belongs to, and its training
    set's size: consecutive entries form one repeat until their validation sets cover every case (nnU-Net's own
    five folds are repeat 0; entries appended after them by a repeated cross-validation are repeats 1, 2, ...)."""
    cases = set(splits[0]["train"]) | set(splits[0]["val"]) if splits else set()
    design, repeat, covered = {}, 0, set()
    for fold, entry in enumerate(splits):
        design[str(fold)] = {"repeat": repeat, "n_train": len(entry["train"])}
        covered |= set(entry["val"])
        if covered >= cases:
            repeat, covered = repeat + 1, set()
    return design
