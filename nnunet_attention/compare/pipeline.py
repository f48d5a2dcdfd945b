"""Side-by-side report of two trainers on one or several datasets, from what nnU-Net already wrote.

The pipeline, each stage called once: read.py (nnU-Net's files -> one long-form table, the boundary metrics measured
or read from their cache) -> analysis.py (pairs, typed statistics, verdicts) -> assemble.py (the one builder of the
Report) -> write_report (figures by plots.py, per_case.csv, report.json, report.md by render.py: formatting only).
Differences are always the second trainer minus the first, paired by case; the verdict per dataset x configuration
follows statistics.verdict_rule.
"""
import csv
import json
import os
import sys
from typing import Callable, Optional, Sequence, Tuple

from nnunet_attention.compare import analysis, assemble, plots, render
from nnunet_attention.compare.read import DatasetSource, read_results
from nnunet_attention.errors import NnUNetAttentionError
from nnunet_attention.files import atomic_path, check_output_folder, write_text
from nnunet_attention.compare.metrics import Margins
from nnunet_attention.compare.report import Report, to_json

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
    analysed = analysis.analyse_results(results, trainers, configurations, seed, margins, look)
    report = assemble.build_report(results, analysed, trainers, plans, folds, missing_datasets, note, margins)
    write_report(report, analysed, output_dir)
    return report


def write_report(report: Report, analysed: analysis.Analysis, output_dir: str) -> None:
    """The report's files: each compared row's figures and the forest plot (plots.py), per_case.csv, report.json and
    report.md (render.py)."""
    os.makedirs(output_dir, exist_ok=True)
    for (name, configuration), (table, paired) in analysed.rows.items():
        entry = report.datasets[name].configurations[configuration]
        terciles = {(c, m): s.size_terciles for (d, conf, c, m), s in analysed.statistics.items()
                    if (d, conf) == (name, configuration)}
        plots.plot_row(f"{name}_{configuration}", table, paired, entry.labels, terciles, report.trainers,
                       report.curves[name][configuration], output_dir)
    plots.plot_forest(report.summary, report.trainers, output_dir, report.across_datasets)
    _write_csv([row for t in report.trainers for section in report.datasets.values()
                for entry in section.configurations.values() for row in entry.per_case[t]],
               os.path.join(output_dir, PER_CASE_CSV))
    write_text(os.path.join(output_dir, REPORT_JSON), json.dumps(to_json(report), indent=2))
    write_text(os.path.join(output_dir, REPORT_MD), render.render_markdown(report))


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


def check_trainers(trainers: Sequence[str]):
    if len(trainers) != 2:
        raise NnUNetAttentionError(f"compare needs exactly two trainers (-tr A B), got {len(trainers)}")
    if trainers[0] == trainers[1]:
        raise NnUNetAttentionError(f"-tr names {trainers[0]} twice; compare two different trainers (e.g. "
                                   f"nnUNetTrainer nnUNetTrainerAttention)")


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
