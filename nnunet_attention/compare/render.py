"""The report as JSON (report.json, per_case.csv's rows) and as markdown (report.md), from what read.py read and
analysis.py computed. Keys of earlier reports are kept; new ones are added beside them."""
from typing import Dict, List, Optional

import numpy as np
import pandas as pd

from nnunet_attention import boundary
from nnunet_attention.compare.analysis import FOREGROUND
from nnunet_attention.compare.read import METRICS, Results, TrainerResults
from nnunet_attention.statistics import verdict_rule

SUMMARY_KEYS = ("n_pairs", "mean_a", "mean_b", "mean_difference", "bootstrap_ci95", "hierarchical_ci95",
                "p_b_better", "wilcoxon_p", "p_holm", "n_folds", "outcome", "margin", "hierarchical_se",
                "minimal_detectable_difference", "folds_needed")


def column_name(name: str) -> str:
    """A label name as a machine-friendly CSV column suffix."""
    import re

    return re.sub(r"[^0-9a-zA-Z]+", "_", str(name)).strip("_").lower() or "label"


def per_case_rows(table: pd.DataFrame) -> List[dict]:
    """One row per trainer, fold and case: dice_/nsd_/hd95_/empty_<class> columns (per_case.csv's layout)."""
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


def trainer_entry(found: TrainerResults, table: pd.DataFrame, classes: List[str]) -> dict:
    per_fold = {}
    for fold in found.folds:
        rows = table[table["fold"] == fold]
        per_fold[str(fold)] = {name: {
            "dice": {"mean": found.nnunet_fold_dice[fold][name],  # nnU-Net's own mean
                     "std": _mean_std(rows[(rows["class"] == name) & (rows["metric"] == "dice")]["value"])["std"]},
            **{m: _mean_std(rows[(rows["class"] == name) & (rows["metric"] == m)]["value"]) for m in ("nsd", "hd95")}}
            for name in classes}
    dice = table[table["metric"] == "dice"]
    return {"folder": found.folder, "folds_found": list(found.folds), "parameters": found.parameters,
            "mean_epoch_seconds": found.epoch_seconds, "epochs": found.epochs, "per_fold": per_fold,
            "pooled": {name: {m: _mean_std(table[(table["class"] == name) & (table["metric"] == m)]["value"])
                              for m in METRICS} for name in classes},
            "empty_cases": {name: {kind: int((dice[dice["class"] == name]["empty"] == kind).sum())
                                   for kind in ("both", "reference", "prediction")} for name in classes}}


def configuration_entry(results: Results, dataset: str, configuration: str, trainers: List[str],
                        statistics: Dict[tuple, dict], figures: List[str], paired_rows: List[dict]) -> dict:
    """paired_rows: the pairs (analysis.pairs) of this dataset and configuration, as records."""
    labels = results.datasets[dataset]
    classes = labels.class_names
    table = results.table[(results.table["dataset"] == dataset) & (results.table["configuration"] == configuration)]
    entry = {"labels": classes, "label_keys": dict(zip(classes, labels.keys)),
             "nsd_tolerance_mm": {labels.names[k]: v for k, v in labels.tolerances.items()},
             "trainers": {t: trainer_entry(results.trainers[(dataset, configuration, t)],
                                           table[table["trainer"] == t], classes) for t in trainers},
             "paired": {}, "size_terciles": {}, "figures": figures,
             "per_case": {t: per_case_rows(table[table["trainer"] == t]) for t in trainers}}
    for name in classes + [FOREGROUND]:
        entry["paired"][name] = {m: {k: v for k, v in statistics[(dataset, configuration, name, m)].items()
                                     if k not in ("size_terciles", "worst_cases")}
                                 for m in METRICS if (dataset, configuration, name, m) in statistics}
        entry["size_terciles"][name] = {m: statistics[(dataset, configuration, name, m)]["size_terciles"]
                                        for m in METRICS if (dataset, configuration, name, m) in statistics}
    dice = statistics.get((dataset, configuration, FOREGROUND, "dice"), {})
    entry["worst_cases"] = dice.get("worst_cases", [])
    entry["per_fold_difference"] = {name: {m: s["per_fold_difference"] for m, s in by_metric.items()}
                                    for name, by_metric in entry["paired"].items()}
    entry["paired_cases"] = [f"fold_{f}/{c}" for f, c in sorted({(r["fold"], r["case"]) for r in paired_rows},
                                                                 key=str)]
    return entry


def _fmt(value, digits=4):
    return "n/a" if value is None else f"{value:.{digits}f}"


def _ci(ci):
    return f"[{_fmt(ci[0])}, {_fmt(ci[1])}]" if ci else "n/a"


def render_markdown(report: dict) -> str:
    a, b = report["trainers"]
    bm = report["boundary_metrics"]
    lines = [f"# {b} vs {a}", ""]
    lines += _verdict_markdown(report)
    lines += [f"Plans `{report['plans']}`, folds {report['folds']}. Differences are **{b} minus {a}** (B - A), per "
              f"validation case, paired by case. Boundary metrics: {bm['implementation']}. Empty masks: "
              f"{bm['empty_convention']}.",
              "Wins count the cases where B is better (higher Dice/NSD, lower HD95); ties are |difference| <= "
              + ", ".join(f"{m['title']} {m['tie_tolerance']}" for m in report["metrics"].values()) + ".", ""]
    if report["missing_datasets"]:
        lines += ["**Datasets not found** (left out of the table and the correction): "
                  + ", ".join(f"`{d}`" for d in report["missing_datasets"]), ""]
    if not report["complete"]:
        lines += ["**Incomplete**: these results are missing, the report covers what exists:", ""]
        lines += [f"- `{m}`" for m in report["missing"] if m not in report["missing_datasets"]] + [""]
    lines += _summary_markdown(report)
    for name, section in report["datasets"].items():
        lines += [f"## {name}", ""]
        for configuration, entry in section["configurations"].items():
            lines += _configuration_markdown(configuration, entry, report)
        lines += _ensembles_markdown(section["ensembles"], a, b)
    return "\n".join(lines)


def _verdict_markdown(report: dict) -> List[str]:
    lines = ["## Verdict", ""]
    for v in report["verdict"]:
        lines.append(f"- **{v['dataset']} {v['configuration']}**, B against A on the foreground mean:")
        for metric, m in v["metrics"].items():
            lines.append(f"  - {report['metrics'][metric]['title']}: {verdict_sentence(m)}")
        lines += [f"  - warning: {w}" for w in v["warnings"]]
    if report.get("note"):
        lines += ["", f"> {report['note']}"]
    return lines + ["", f"Rule: {report['verdict_rule']}", ""]


def verdict_sentence(m: dict) -> str:
    """One metric's outcome with its margin, estimate, what the study could detect and, when it cannot tell, the
    folds that would settle it."""
    p = "n/a" if m["p_b_better"] is None else f"{m['p_b_better']:.2f}"
    text = (f"**{m['verdict']}** (margin +-{m['margin']:g}): B - A {_fmt(m['mean_difference'])}, two-level 95% CI "
            f"{_ci(m['hierarchical_ci95'])}, p Holm {_fmt(m['p_holm'], 3)}, P(B better) {p}; ")
    detectable = m["minimal_detectable_difference"]
    text += ("the study could detect " + (f"a difference of {detectable:.3g} or more (5% level, 80% power)"
                                          if detectable is not None else "nothing: fewer than 2 folds paired"))
    if m["verdict"] == "inconclusive":
        needed = m["folds_needed"]
        settle = [f"about {needed['equivalence']} folds to show equivalence" if needed["equivalence"] else
                  "equivalence cannot be shown at the observed difference",
                  f"about {needed['exclude_zero']} to exclude 0" if needed["exclude_zero"] else None]
        text += f"; {m['n_folds']} fold(s) paired, " + (
            "; ".join(t for t in settle if t) if m["hierarchical_se"] is not None else
            "train at least 2 folds per trainer (each more training narrows the CI)")
    return text + "."


def _summary_markdown(report: dict) -> List[str]:
    lines = ["## Summary: every dataset x configuration x class", "",
             "Mean over paired validation cases; 95% CIs of the mean difference from a case bootstrap (cases "
             "resampled) and a two-level bootstrap (folds resampled, then cases within each drawn fold: training "
             f"randomness included); Wilcoxon signed-rank p and Holm-adjusted p over the {len(report['summary'])} "
             "rows of this table (per metric); the outcome by the rule above, margins "
             + ", ".join(f"{report['metrics'][k]['title']} +-{v:g}" for k, v in report["margins"].items())
             + ". Forest plot: ![forest](forest.png)", ""]
    header = "| dataset | configuration | class | pairs | folds |"
    for m in report["metrics"].values():
        header += f" {m['title']} A | {m['title']} B | diff | case CI | two-level CI | p Holm | outcome |"
    lines += [header, "|" + "---|" * (5 + 7 * len(report["metrics"]))]
    for row in report["summary"]:
        dice = row["metrics"]["dice"]
        cells = [row["dataset"], row["configuration"], row["class"], str(dice["n_pairs"]), str(dice["n_folds"])]
        for metric in report["metrics"]:
            s = row["metrics"][metric]
            cells += [_fmt(s["mean_a"]), _fmt(s["mean_b"]), _fmt(s["mean_difference"]), _ci(s["bootstrap_ci95"]),
                      _ci(s["hierarchical_ci95"]), _fmt(s["p_holm"], 3), s["outcome"] or "n/a"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def _configuration_markdown(configuration: str, entry: dict, report: dict) -> List[str]:
    tolerances = ", ".join(f"{k} {v} mm" for k, v in entry["nsd_tolerance_mm"].items())
    lines = [f"### {configuration}", "", f"NSD tolerance: {tolerances}.", "",
             "Per class, mean ± std over validation cases (Dice per fold is nnU-Net's own mean from summary.json):",
             ""]
    folds = sorted({f for t in entry["trainers"].values() for f in t["per_fold"]}, key=str)
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
    lines += _paired_markdown(entry, report) + _per_fold_markdown(entry, report)
    lines += _terciles_markdown(entry, report) + _worst_markdown(entry)
    lines += ["", "| trainer | parameters | epochs | mean epoch time (s) |", "|---|---|---|---|"]
    for trainer, t in entry["trainers"].items():
        lines.append(f"| {trainer} | {t['parameters'] if t['parameters'] is not None else 'n/a'} | "
                     f"{t['epochs'] if t['epochs'] is not None else 'n/a'} | {_fmt(t['mean_epoch_seconds'], 1)} |")
    return lines + [""] + [f"![{f.split('_')[0]}]({f})" for f in entry["figures"]] + [""]


def _paired_markdown(entry: dict, report: dict) -> List[str]:
    lines = ["", "Paired per-case differences (B - A):", "",
             "| class | metric | pairs | mean diff | case 95% CI | two-level 95% CI | P(B better) | median diff | "
             "wins / ties / losses | Wilcoxon p |", "|---|---|---|---|---|---|---|---|---|---|"]
    for label, by_metric in entry["paired"].items():
        for metric, s in by_metric.items():
            p = "n/a" if s["p_b_better"] is None else f"{s['p_b_better']:.2f}"
            lines.append(f"| {label} | {report['metrics'][metric]['title']} | {s['n_pairs']} | "
                         f"{_fmt(s['mean_difference'])} | {_ci(s['bootstrap_ci95'])} | {_ci(s['hierarchical_ci95'])} | "
                         f"{p} | {_fmt(s['median_difference'])} | {s['wins']} / {s['ties']} / {s['losses']} | "
                         f"{_fmt(s['wilcoxon_p'], 3)} |")
    return lines


def _per_fold_markdown(entry: dict, report: dict) -> List[str]:
    folds = sorted({f for by_metric in entry["per_fold_difference"].values() for d in by_metric.values()
                    for f in d}, key=str)
    lines = ["", "Per fold (one training per trainer each), mean paired difference B - A:", "",
             "| class | metric | " + " | ".join(f"fold {f}" for f in folds) + " |", "|---|---|" + "---|" * len(folds)]
    for label, by_metric in entry["per_fold_difference"].items():
        for metric, d in by_metric.items():
            lines.append(f"| {label} | {report['metrics'][metric]['title']} | "
                         + " | ".join(_fmt(d.get(f)) for f in folds) + " |")
    return lines


def _terciles_markdown(entry: dict, report: dict) -> List[str]:
    lines = ["", "By size of the reference structure (terciles of its volume in mm³; cases with a reference):", "",
             "| class | metric | small | medium | large |", "|---|---|---|---|---|"]
    for label, by_metric in entry["size_terciles"].items():
        if label == FOREGROUND:
            continue
        for metric, groups in by_metric.items():
            cells = [f"{_fmt(g['mean_difference'])} (n={g['n']}, {g['volume_mm3'][0]:.0f}–{g['volume_mm3'][1]:.0f})"
                     for g in groups] + ["n/a"] * (3 - len(groups))
            lines.append(f"| {label} | {report['metrics'][metric]['title']} | " + " | ".join(cells) + " |")
    return lines


def _worst_markdown(entry: dict) -> List[str]:
    lines = ["", "Ten cases where B falls furthest behind A (foreground-mean Dice; look at them with "
                 "`nnunet-attention maps`):", "", "| fold | case | A | B | B - A |", "|---|---|---|---|---|"]
    return lines + [f"| {w['fold']} | {w['case']} | {_fmt(w['a'])} | {_fmt(w['b'])} | {_fmt(w['difference'])} |"
                    for w in entry["worst_cases"]]


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


def report_header(trainers, plans, folds, results: Results, missing_datasets, note, margins: dict) -> dict:
    return {"trainers": list(trainers), "plans": plans, "folds": list(folds),
            "difference": f"{trainers[1]} minus {trainers[0]}",
            "metrics": {m: {"title": t, "higher_is_better": h, "tie_tolerance": tie}
                        for m, (t, h, tie) in METRICS.items()},
            "boundary_metrics": {"implementation": boundary.implementation(),
                                 "empty_convention": boundary.EMPTY_CONVENTION + "; Dice: both empty = NaN, left "
                                                     "out of Dice statistics as nnU-Net does; voxels under nnU-Net's "
                                                     "ignore label count for no metric"},
            "complete": not (results.missing or missing_datasets),
            "missing": list(missing_datasets) + list(results.missing),
            "missing_datasets": list(missing_datasets), "warnings": list(results.warnings), "note": note,
            "margins": dict(margins), "verdict_rule": verdict_rule(margins), "verdict": [], "summary": [],
            "datasets": {}, "curves": {}, "figures": []}


def summary_row(dataset: str, configuration: str, name: str, statistics: Dict[tuple, dict]) -> dict:
    return {"dataset": dataset, "configuration": configuration, "class": name,
            "metrics": {m: {k: statistics[(dataset, configuration, name, m)].get(k) for k in SUMMARY_KEYS}
                        for m in METRICS}}
