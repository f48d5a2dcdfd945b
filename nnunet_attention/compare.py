"""Side-by-side report of two trainers from what nnU-Net already wrote in nnUNet_results.

Reads each fold's ``validation/summary.json`` (per-case Dice as nnU-Net computed it), the checkpoints (parameter
count, epoch times from nnU-Net's own logging) and ``inference_information.json`` plus the ensembles' summaries when
``nnUNetv2_find_best_configuration`` has run. Differences are always second trainer minus first.
"""
import csv
import json
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np

from nnunet_attention.checkpoint import load_checkpoint
from nnunet_attention.errors import NnUNetAttentionError
from nnunet_attention.nnunet_api import model_identifier

TIE_TOLERANCE = 1e-3  # |Dice difference| at or below this counts as a tie
BOOTSTRAP_SAMPLES = 10000


class IncompleteResults(NnUNetAttentionError):
    """Nothing at all to compare."""


@dataclass
class TrainerResults:
    trainer: str
    configuration: str
    folder: str
    folds: Dict[int, dict] = field(default_factory=dict)  # fold -> summary.json
    parameters: Optional[int] = None
    epoch_seconds: Optional[float] = None
    epochs: Optional[int] = None


def _case_id(metric_entry: dict) -> str:
    name = os.path.basename(metric_entry["prediction_file"])
    for ending in (".nii.gz", ".nrrd", ".mha", ".nii", ".png", ".tif", ".tiff"):
        if name.endswith(ending):
            return name[: -len(ending)]
    return os.path.splitext(name)[0]


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


def _read_trainer(results_dir: str, trainer: str, plans: str, configuration: str, folds: Sequence[int],
                  missing: List[str], warnings: List[str]) -> TrainerResults:
    folder = os.path.join(results_dir, model_identifier(trainer, plans, configuration))
    found = TrainerResults(trainer, configuration, folder)
    if not os.path.isdir(folder):
        missing.append(folder)
        return found
    epoch_times = []
    for fold in folds:
        summary = os.path.join(folder, f"fold_{fold}", "validation", "summary.json")
        if not os.path.isfile(summary):
            missing.append(summary)
            continue
        found.folds[fold] = read_summary(summary)
        checkpoint_file = os.path.join(folder, f"fold_{fold}", "checkpoint_final.pth")
        if os.path.isfile(checkpoint_file):
            try:  # only the logging is read from every fold
                checkpoint = load_checkpoint(checkpoint_file, mmap=True)
                logging = checkpoint["logging"]
                times = [e - s for s, e in zip(logging["epoch_start_timestamps"], logging["epoch_end_timestamps"])]
            except (NnUNetAttentionError, KeyError, TypeError) as e:
                warnings.append(f"{checkpoint_file}: no parameter count or epoch times from it "
                                f"({str(e) if isinstance(e, NnUNetAttentionError) else 'no training logging'})")
                continue
            if found.parameters is None:
                # the decoder keeps a reference to the encoder: count shared tensors once
                found.parameters = int(sum({t.data_ptr(): t.numel() for t in checkpoint["network_weights"].values()
                                            if t.is_floating_point() and t.dim() > 0}.values()))
            epoch_times += times
            found.epochs = len(logging["epoch_end_timestamps"])
    found.epoch_seconds = float(np.mean(epoch_times)) if epoch_times else None
    return found


def _per_case_rows(results: TrainerResults, labels: List[str]) -> List[dict]:
    rows = []
    for fold, summary in sorted(results.folds.items()):
        for entry in summary["metric_per_case"]:
            row = {"configuration": results.configuration, "trainer": results.trainer, "fold": fold,
                   "case": _case_id(entry)}
            for label in labels:
                row[f"dice_{label}"] = entry["metrics"].get(label, {}).get("Dice", float("nan"))
            rows.append(row)
    return rows


def _mean_std(values) -> dict:
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    return {"mean": float(values.mean()) if values.size else None,
            "std": float(values.std()) if values.size else None, "n": int(values.size)}


def _paired_statistics(differences: np.ndarray, rng: np.random.Generator) -> dict:
    from scipy.stats import wilcoxon

    n = differences.size
    stats = {"n_pairs": int(n), "mean_difference": float(differences.mean()) if n else None,
             "median_difference": float(np.median(differences)) if n else None,
             "wins": int((differences > TIE_TOLERANCE).sum()),
             "ties": int((np.abs(differences) <= TIE_TOLERANCE).sum()),
             "losses": int((differences < -TIE_TOLERANCE).sum()), "wilcoxon_p": None, "bootstrap_ci95": None}
    if n >= 2:
        resampled = differences[rng.integers(0, n, size=(BOOTSTRAP_SAMPLES, n))].mean(axis=1)
        stats["bootstrap_ci95"] = [float(np.percentile(resampled, 2.5)), float(np.percentile(resampled, 97.5))]
    if n >= 1 and np.any(differences != 0):
        stats["wilcoxon_p"] = float(wilcoxon(differences).pvalue)
    return stats


def _labels(results: List[TrainerResults]) -> List[str]:
    for r in results:
        for summary in r.folds.values():
            return sorted(summary["mean"].keys(), key=lambda k: (len(k), k))
    return []


def _trainers_in_identifier(identifier: str) -> List[str]:
    """Trainer names in find_best_configuration's keys: TRAINER__PLANS__CONFIG or ensemble___M1___M2___FOLDS."""
    models = identifier.split("___")[1:3] if identifier.startswith("ensemble___") else [identifier]
    return [m.split("__")[0] for m in models]


def _ensembles(dataset_results_dir: str, trainers: Sequence[str]) -> Optional[dict]:
    info_file = os.path.join(dataset_results_dir, "inference_information.json")
    if not os.path.isfile(info_file):
        return None
    with open(info_file) as f:
        info = json.load(f)
    relevant = {k: v for k, v in info["all_results"].items() if set(_trainers_in_identifier(k)) <= set(trainers)}
    per_class = {}
    for key in relevant:
        summary = os.path.join(dataset_results_dir, "ensembles", key, "summary.json")
        if key.startswith("ensemble___") and os.path.isfile(summary):
            with open(summary) as f:
                per_class[key] = {label: v["Dice"] for label, v in json.load(f)["mean"].items()}
    best = info["best_model_or_ensemble"]
    return {"source": info_file, "foreground_dice": relevant, "ensemble_dice_per_class": per_class,
            "best": {"models": best["selected_model_or_models"],
                     "foreground_dice": best["result_on_crossval_pre_pp"],
                     "foreground_dice_postprocessed": best["result_on_crossval_post_pp"]}}


def compare(results_dir: str, configurations: Sequence[str], trainers: Sequence[str], plans: str,
            folds: Sequence[int], output_dir: str, seed: int = 0) -> dict:
    """Writes report.md, report.json, per_case.csv and plots to output_dir; returns the report dict.

    results_dir is the dataset's folder in nnUNet_results."""
    if len(trainers) != 2:
        raise NnUNetAttentionError(f"compare needs exactly two trainers (-tr A B), got {len(trainers)}")
    if trainers[0] == trainers[1]:
        raise NnUNetAttentionError(f"-tr names {trainers[0]} twice; compare two different trainers")
    missing: List[str] = []
    warnings: List[str] = []
    read = {c: [_read_trainer(results_dir, t, plans, c, folds, missing, warnings) for t in trainers]
            for c in configurations}
    if not any(r.folds for pair in read.values() for r in pair):
        raise IncompleteResults("no validation/summary.json found; missing: " + "; ".join(missing))
    rng = np.random.default_rng(seed)
    os.makedirs(output_dir, exist_ok=True)
    report = {"trainers": list(trainers), "plans": plans, "folds": list(folds),
              "difference": f"{trainers[1]} minus {trainers[0]}", "tie_tolerance": TIE_TOLERANCE,
              "complete": not missing, "missing": missing, "warnings": warnings, "configurations": {}}
    all_rows = []
    for configuration, pair in read.items():
        labels = _labels(pair)
        rows = {r.trainer: _per_case_rows(r, labels) for r in pair}
        all_rows += [row for r in pair for row in rows[r.trainer]]
        entry = {"labels": labels, "trainers": {}, "paired": {}}
        for r in pair:
            entry["trainers"][r.trainer] = {
                "folder": r.folder, "folds_found": sorted(r.folds), "parameters": r.parameters,
                "mean_epoch_seconds": r.epoch_seconds, "epochs": r.epochs,
                "per_fold": {str(fold): {label: {"mean": s["mean"][label]["Dice"],
                                                 "std": _mean_std([m["metrics"][label]["Dice"]
                                                                   for m in s["metric_per_case"]])["std"]}
                                         for label in labels}
                             for fold, s in sorted(r.folds.items())},
                "pooled": {label: _mean_std([row[f"dice_{label}"] for row in rows[r.trainer]]) for label in labels},
            }
        by_case = [{row["case"]: row for row in rows[r.trainer]} for r in pair]
        common = sorted(set(by_case[0]) & set(by_case[1]))
        for label in labels + ["foreground_mean"]:
            def dice(row):
                if label == "foreground_mean":
                    return np.nanmean([row[f"dice_{lb}"] for lb in labels]) if labels else np.nan
                return row[f"dice_{label}"]
            pairs = np.array([(dice(by_case[0][c]), dice(by_case[1][c])) for c in common], dtype=float).reshape(-1, 2)
            pairs = pairs[~np.isnan(pairs).any(axis=1)]
            entry["paired"][label] = _paired_statistics(pairs[:, 1] - pairs[:, 0], rng)
        entry["paired_cases"] = common
        report["configurations"][configuration] = entry
        _plot(configuration, labels, rows, by_case, common, trainers, output_dir)
    report["ensembles"] = _ensembles(results_dir, trainers)
    _write_csv(all_rows, os.path.join(output_dir, "per_case.csv"))
    with open(os.path.join(output_dir, "report.json"), "w") as f:
        json.dump(report, f, indent=2)
    with open(os.path.join(output_dir, "report.md"), "w") as f:
        f.write(render_markdown(report))
    return report


def _write_csv(rows: List[dict], path: str):
    fields = list(dict.fromkeys(k for row in rows for k in row))
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def _plot(configuration, labels, rows, by_case, common, trainers, output_dir):
    from matplotlib.figure import Figure  # the object API: no pyplot, no backend switch

    if not labels:
        return
    fig = Figure(figsize=(3.2 * len(labels), 3.6), layout="tight")
    axes = fig.subplots(1, len(labels), squeeze=False)
    jitter = np.random.default_rng(0)
    for ax, label in zip(axes[0], labels):
        data = [[row[f"dice_{label}"] for row in rows[t] if not np.isnan(row[f"dice_{label}"])] for t in trainers]
        ax.boxplot(data, showfliers=False)
        for i, values in enumerate(data, start=1):
            ax.scatter(i + jitter.uniform(-0.12, 0.12, len(values)), values, s=10, alpha=0.6)
        ax.set_xticks([1, 2], [t.replace("nnUNetTrainer", "nnUNetTrainer\n") for t in trainers], fontsize=6)
        ax.set_title(f"label {label}")
        ax.set_ylim(-0.02, 1.02)
    axes[0][0].set_ylabel("Dice (validation cases)")
    fig.suptitle(configuration)
    fig.savefig(os.path.join(output_dir, f"dice_{configuration}.png"), dpi=120)

    fig = Figure(figsize=(1.6 + 1.4 * len(labels), 3.6), layout="tight")
    ax = fig.subplots()
    for i, label in enumerate(labels, start=1):
        diffs = np.array([by_case[1][c][f"dice_{label}"] - by_case[0][c][f"dice_{label}"] for c in common])
        diffs = diffs[~np.isnan(diffs)]
        ax.scatter(i + jitter.uniform(-0.15, 0.15, len(diffs)), diffs, s=12, alpha=0.7)
        if diffs.size:
            ax.hlines(diffs.mean(), i - 0.3, i + 0.3, color="k")
    ax.axhline(0, color="grey", lw=0.8, ls="--")
    ax.set_xticks(range(1, len(labels) + 1), [f"label {lb}" for lb in labels])
    ax.set_ylabel(f"Dice difference per case\n({trainers[1]} - {trainers[0]})", fontsize=7)
    ax.set_title(configuration)
    fig.savefig(os.path.join(output_dir, f"paired_differences_{configuration}.png"), dpi=120)


def _fmt(value, digits=4):
    return "n/a" if value is None else f"{value:.{digits}f}"


def render_markdown(report: dict) -> str:
    a, b = report["trainers"]
    lines = [f"# {b} vs {a}", "",
             f"Plans `{report['plans']}`, folds {report['folds']}. Differences are **{b} minus {a}**, per validation "
             f"case, paired by case; ties are |difference| <= {report['tie_tolerance']}.", ""]
    if not report["complete"]:
        lines += ["**Incomplete**: these results are missing, the report covers what exists:", ""]
        lines += [f"- `{m}`" for m in report["missing"]] + [""]
    for configuration, entry in report["configurations"].items():
        lines += [f"## {configuration}", "", "### Dice per class (mean ± std over validation cases)", ""]
        folds = sorted({f for t in entry["trainers"].values() for f in t["per_fold"]}, key=int)
        lines += ["| trainer | label | " + " | ".join(f"fold {f}" for f in folds) + " | pooled |",
                  "|---|---|" + "---|" * (len(folds) + 1)]
        for trainer, t in entry["trainers"].items():
            for label in entry["labels"]:
                cells = [f"{_fmt(t['per_fold'][f][label]['mean'])} ± {_fmt(t['per_fold'][f][label]['std'])}"
                         if f in t["per_fold"] else "missing" for f in folds]
                pooled = t["pooled"][label]
                lines.append(f"| {trainer} | {label} | " + " | ".join(cells) +
                             f" | {_fmt(pooled['mean'])} ± {_fmt(pooled['std'])} (n={pooled['n']}) |")
        lines += ["", "### Paired per-case differences", "",
                  "| label | pairs | mean diff | 95% bootstrap CI | median diff | wins / ties / losses | Wilcoxon p |",
                  "|---|---|---|---|---|---|---|"]
        for label, s in entry["paired"].items():
            ci = s["bootstrap_ci95"]
            ci_text = f"[{_fmt(ci[0])}, {_fmt(ci[1])}]" if ci else "n/a"
            lines.append(f"| {label} | {s['n_pairs']} | {_fmt(s['mean_difference'])} | {ci_text} | "
                         f"{_fmt(s['median_difference'])} | {s['wins']} / {s['ties']} / {s['losses']} | "
                         f"{_fmt(s['wilcoxon_p'], 3)} |")
        lines += ["", "### Cost", "", "| trainer | parameters | epochs | mean epoch time (s) |", "|---|---|---|---|"]
        for trainer, t in entry["trainers"].items():
            lines.append(f"| {trainer} | {t['parameters'] if t['parameters'] is not None else 'n/a'} | "
                         f"{t['epochs'] if t['epochs'] is not None else 'n/a'} | {_fmt(t['mean_epoch_seconds'], 1)} |")
        lines += ["", f"![Dice per class](dice_{configuration}.png) "
                      f"![paired differences](paired_differences_{configuration}.png)", ""]
    ensembles = report["ensembles"]
    lines += ["## nnUNetv2_find_best_configuration", ""]
    if ensembles is None:
        lines += ["Not run yet (no `inference_information.json`); run `nnUNetv2_find_best_configuration` with "
                  f"`-tr {a} {b}` to add the ensemble.", ""]
    else:
        lines += ["| model or ensemble | foreground Dice |", "|---|---|"]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in ensembles["foreground_dice"].items()]
        best = ensembles["best"]
        chosen = " + ".join(f"{m['trainer']} ({m['configuration']})" for m in best["models"])
        lines += ["", f"Chosen: **{chosen}**, foreground Dice {_fmt(best['foreground_dice'])} "
                      f"({_fmt(best['foreground_dice_postprocessed'])} after postprocessing).", ""]
    return "\n".join(lines)
