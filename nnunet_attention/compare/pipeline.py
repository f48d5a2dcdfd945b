"""Side-by-side report of two trainers on one or several datasets, from what nnU-Net already wrote.

The pipeline: read.py (nnU-Net's files -> one long-form table) -> analysis.py (statistics on that table) ->
plots.py -> render.py (report.json, report.md, per_case.csv). Differences are always the second trainer minus the
first, paired by case; the verdict per dataset x configuration follows statistics.verdict_rule.
"""
import csv
import json
import os
import sys
from typing import Callable, Dict, Optional, Sequence, Tuple

from nnunet_attention.compare import analysis, plots, render
from nnunet_attention.compare.read import DatasetSource, read_results
from nnunet_attention.errors import NnUNetAttentionError
from nnunet_attention.files import atomic_path, check_output_folder, write_text
from nnunet_attention.model.pairing_record import study_seed_of
from nnunet_attention.compare.metrics import Margins
from nnunet_attention.compare.report import FOREGROUND, DatasetSection, Pairing, Report, to_json

DEFAULT_NSD_TOLERANCE_MM = 1.0


def compare(datasets: Sequence[DatasetSource], configurations: Sequence[str], trainers: Sequence[str], plans: str,
            folds: Sequence, output_dir: str, nsd_tolerance: Sequence[float] = (DEFAULT_NSD_TOLERANCE_MM,),
            num_processes: int = 1, missing_datasets: Sequence[str] = (), seed: int = 0,
            log: Optional[Callable[[str, bool], None]] = None, note: Optional[str] = None,
            margins: Optional[Margins] = None, look: Optional[Tuple[int, int]] = None,
            overwrite: bool = False) -> Report:
    """Writes report.md, report.json, per_case.csv and the figures to output_dir; returns the report.

    Args:
        datasets: where each dataset's results and preprocessed data are.
        nsd_tolerance: NSD tolerance in mm, one value or one per class (in dataset.json's label order).
        num_processes: processes for the boundary metrics (nnU-Net's default_num_processes on the CLI).
        missing_datasets: datasets asked for but not found, named in the report and left out of everything.
        seed: the bootstrap's seed; each row draws from its own generator seeded by (seed, its key).
        log: called with (message, final) for progress.
        note: one line shown under the report's verdict (the demo says there what its runs can show).
        margins: equivalence margins (metrics.Margins; a plain mapping is checked, None: the defaults).
        look: (k, K), the k-th of K sequential looks (grid --until-decided; analysis.analyse_pairs).
        overwrite: replace a report in output_dir made for other trainers, plans, folds or margins (check_replacing).
    """
    margins = Margins.of(margins)
    check_trainers(trainers)
    check_replacing(output_dir, trainers, plans, folds, margins, overwrite)
    results = read_results(datasets, configurations, trainers, plans, folds, nsd_tolerance, num_processes, log)
    if results.table.empty:
        raise NnUNetAttentionError("no validation/summary.json found; missing: " + "; ".join(results.missing))
    lost_by_both = analysis.shared_losses(results.table, trainers)
    paired = analysis.with_design(analysis.pairs(analysis.with_foreground_mean(results.table, lost_by_both),
                                                 trainers), results.designs)  # once, for statistics and plots
    statistics = analysis.analyse_pairs(paired, seed, margins, look=look)
    os.makedirs(output_dir, exist_ok=True)
    report = render.report_header(trainers, plans, folds, results, missing_datasets, note, margins)
    folds_found, pairings = {}, {}
    for name, labels in results.datasets.items():
        section = DatasetSection(configurations={}, ensembles=results.ensembles[name])
        report.curves[name] = {}
        for configuration in configurations:
            found = [results.trainers[(name, configuration, t)] for t in trainers]
            if not all(f.folds for f in found):
                continue
            folds_found[(name, configuration)] = [f.folds for f in found]
            report.warnings += outside_splits(name, configuration, found, results.designs.get(name, {}))
            pairings[(name, configuration)] = pairing_of(found)
            curves = {f.trainer: {str(fold): c for fold, c in sorted(f.curves.items(), key=lambda kv: str(kv[0]))}
                      for f in found}
            report.curves[name][configuration] = curves
            table = analysis.row_slice(results.table, name, configuration)
            these = analysis.row_slice(paired, name, configuration)
            figures = _plot(f"{name}_{configuration}", table, these, labels.class_names, statistics, name,
                            configuration, trainers, curves, output_dir)
            section.configurations[configuration] = render.configuration_entry(
                results, name, configuration, list(trainers), statistics, figures, table,
                these[["fold", "case"]].drop_duplicates().to_dict("records"), pairings[(name, configuration)])
            report.summary += [render.summary_row(name, configuration, c, statistics)
                               for c in labels.class_names + [FOREGROUND]]
        report.datasets[name] = section
    report.verdict = analysis.verdicts(statistics, folds_found, pairings)
    report.across_datasets = analysis.across_datasets(statistics, margins)
    report.figures = [plots.plot_forest(report.summary, trainers, output_dir, report.across_datasets)]
    _write_csv([row for t in trainers for section in report.datasets.values()
                for entry in section.configurations.values() for row in entry.per_case[t]],
               os.path.join(output_dir, PER_CASE_CSV))
    write_text(os.path.join(output_dir, REPORT_JSON), json.dumps(to_json(report), indent=2))
    write_text(os.path.join(output_dir, REPORT_MD), render.render_markdown(report))
    return report


REPORT_JSON, REPORT_MD, PER_CASE_CSV = "report.json", "report.md", "per_case.csv"
REPORT_FILES = (REPORT_JSON, REPORT_MD, PER_CASE_CSV, plots.FOREST_FILE)


def check_replacing(output_dir: str, trainers: Sequence[str], plans: str, folds: Sequence, margins: Margins,
                    overwrite: bool):
    """Refuses, unless overwrite, to replace a report written for other trainers, plans or margins, or for folds
    this one does not include (a report over more folds of the same study supersedes it: grid --until-decided's
    looks), and report files in a folder that holds no report.json."""
    if overwrite or not os.path.isdir(output_dir):
        return
    found = os.path.join(output_dir, REPORT_JSON)
    if not os.path.isfile(found):
        ours = [name for name in REPORT_FILES if os.path.exists(os.path.join(output_dir, name))]
        if ours:
            raise NnUNetAttentionError(f"-o {output_dir} holds {', '.join(ours)} but no report.json, so not a report "
                                       f"of compare's: give another -o, or --overwrite to replace them")
        return
    try:
        with open(found) as f:
            before = json.load(f)
        was = (list(before["trainers"]), before["plans"], [str(f) for f in before["folds"]], dict(before["margins"]))
    except (OSError, ValueError, KeyError, TypeError):
        raise NnUNetAttentionError(f"{found} is not a report.json compare can read; give another -o, or --overwrite "
                                   f"to replace it") from None
    old_trainers, old_plans, old_folds, old_margins = was
    changed = [k for k in margins if old_margins.get(k) != margins[k]]
    then = " ".join(f"{k}={old_margins[k]:g}" for k in changed if k in old_margins)
    changes = [f"trainers {' '.join(old_trainers)} there, {' '.join(trainers)} now" if old_trainers != list(trainers)
               else None,
               f"plans {old_plans} there, {plans} now" if old_plans != plans else None,
               f"folds {' '.join(old_folds)} there, {' '.join(map(str, folds))} now"
               if not set(old_folds) <= {str(f) for f in folds} else None,
               f"margins {then} there, {' '.join(f'{k}={margins[k]:g}' for k in changed)} now" if changed else None]
    if any(changes):
        advice = f"--margin {then} repeats it, " if changes[:3] == [None] * 3 and then else ""
        raise NnUNetAttentionError(f"-o {output_dir} holds a report made with other settings "
                                   f"({'; '.join(c for c in changes if c)}); {advice}give another -o, or --overwrite "
                                   f"to replace it")


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


def check_trainers(trainers: Sequence[str]):
    if len(trainers) != 2:
        raise NnUNetAttentionError(f"compare needs exactly two trainers (-tr A B), got {len(trainers)}")
    if trainers[0] == trainers[1]:
        raise NnUNetAttentionError(f"-tr names {trainers[0]} twice; compare two different trainers (e.g. "
                                   f"nnUNetTrainer nnUNetTrainerAttention)")


def _plot(prefix, table, paired, classes, statistics, dataset, configuration, trainers, curves, output_dir):
    """The figures of one dataset x configuration from its slices of the table and of the pairs."""
    terciles = {(c, m): statistics[(dataset, configuration, c, m)].size_terciles
                for (d, conf, c, m) in statistics if d == dataset and conf == configuration}
    return [plots.plot_metrics(prefix, table, classes, trainers, output_dir),
            plots.plot_paired_differences(prefix, paired, classes, trainers, output_dir),
            plots.plot_scatter(prefix, paired, classes, trainers, output_dir),
            plots.plot_size_terciles(prefix, terciles, classes, trainers, output_dir),
            plots.plot_curves(prefix, curves, trainers, output_dir)]


def _write_csv(rows, path: str):
    fields = list(dict.fromkeys(k for row in rows for k in row))
    with atomic_path(path) as partial, open(partial, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def compare_datasets(datasets: Sequence[str], configurations: Sequence[str], trainers: Sequence[str], plans: str,
                     folds: Sequence, output: Optional[str] = None,
                     nsd_tolerance: Sequence[float] = (DEFAULT_NSD_TOLERANCE_MM,), processes: int = 1,
                     log: Optional[Callable[[str, bool], None]] = None,
                     margins: Optional[Margins] = None, look: Optional[Tuple[int, int]] = None,
                     overwrite: bool = False) -> Report:
    """compare over the datasets (names or ids) found in nnUNet_results/nnUNet_preprocessed, the others named as
    missing; the default output is nnUNet_results/DATASET/nnunet_attention_compare (several datasets:
    nnUNet_results/nnunet_attention_compare). Prints its summary (print_summary)."""
    from nnunet_attention.nnunet_api import dataset_name, nnunet_folder, require_variables

    require_variables("nnUNet_results", "nnUNet_preprocessed")
    nnUNet_results, nnUNet_preprocessed = nnunet_folder("nnUNet_results"), nnunet_folder("nnUNet_preprocessed")
    check_trainers(trainers)
    margins = Margins.of(margins)
    if any(t <= 0 for t in nsd_tolerance):
        raise NnUNetAttentionError(f"--nsd-tolerance must be positive (mm), got {list(nsd_tolerance)}")
    if processes < 1:
        raise NnUNetAttentionError(f"-np must be at least 1, got {processes}")
    sources, missing = [], []
    for dataset in dict.fromkeys(map(str, datasets)):
        try:
            name = dataset_name(dataset)
        except NnUNetAttentionError as e:
            if len(datasets) == 1:
                raise
            missing.append(f"{dataset} ({e})")
            continue
        sources.append(DatasetSource(name, os.path.join(nnUNet_results, name), os.path.join(nnUNet_preprocessed, name)))
    if not sources:
        raise NnUNetAttentionError("none of the datasets was found: " + "; ".join(missing))
    output = output or (os.path.join(sources[0].results, "nnunet_attention_compare") if len(datasets) == 1 else
                        os.path.join(nnUNet_results, "nnunet_attention_compare"))
    check_output_folder(output, *[nnunet_folder(v) for v in ("nnUNet_raw", "nnUNet_preprocessed") if os.environ.get(v)])
    report = compare(sources, configurations, trainers, plans, folds, output, nsd_tolerance, processes, missing,
                     log=log, margins=margins, look=look, overwrite=overwrite)
    print_summary(report, output)
    return report


def print_summary(report: Report, output_dir: str):
    """What a command prints after compare, to be read at a glance: per dataset x configuration a header and one
    row per metric (render.glance_text), then warnings and what is missing (stderr), then the report's path."""
    from nnunet_attention.compare.render import across_datasets_lines, glance_text

    for line in across_datasets_lines(report.across_datasets):
        if line:
            print(line.replace("**", ""))
    for v in report.verdict:
        print("\n".join(glance_text(v, report.trainers)))
    for line in [f"warning: {w}" for w in report.warnings] + [f"missing: {m}" for m in report.missing]:
        print(line, file=sys.stderr)
    if report.missing:
        print("the report is incomplete: it covers the results that exist", file=sys.stderr)
    print(f"details, the rule{' and the note' if report.note else ''}: {os.path.join(output_dir, REPORT_MD)}",
          flush=True)
