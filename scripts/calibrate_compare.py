"""The calibration study of compare's verdict: simulated studies with a known answer through compare's own analysis
(scripts/simulation.py: independent trainings, cross-validation as it is, several datasets), counting
how often the verdict is wrong.

    python scripts/calibrate_compare.py --docs docs          # the committed table (2 cores: about 25 minutes)
    python scripts/calibrate_compare.py --studies 50         # a quick look, printed only

Writes DOCS/compare_calibration.json, and the table and its summary between the calibration markers of
DOCS/compare.md (the summary's figures are checked against the JSON by a test).
"""
import argparse
import json
import os
import sys
from pathlib import Path

from simulation import (coupling_cells, dataset_cells, failure_cells, provenance, run_cell, run_cells, standard_cells,
                        summary_text)

START, END = "<!-- calibration table: written by scripts/calibrate_compare.py -->", "<!-- end of calibration table -->"
DATASETS_MARKERS = ("<!-- datasets table: written by scripts/calibrate_compare.py --datasets -->",
                    "<!-- end of datasets table -->")
COUPLING_MARKERS = ("<!-- coupling table: written by scripts/calibrate_compare.py --coupling -->",
                    "<!-- end of coupling table -->")
FAILURES_MARKERS = ("<!-- failures table: written by scripts/calibrate_compare.py --failures -->",
                    "<!-- end of failures table -->")


def _design(r: dict) -> str:
    if r["model"] == "Cell":
        return f"{r['folds']} independent trainings × {r['cases']} cases"
    text = (f"{r['repeats']} × {r['folds']}-fold on {r['cases']} cases" + (", unequal folds" if r["unequal"] else "")
            + f", fold correlation {r['fold_correlation']:g}")
    return f"{r['datasets']} datasets, each {text}, between-dataset sd {r['between_sd']:g}" if r["model"] == \
        "Datasets" else text


def _noise(r: dict) -> str:
    if r["model"] == "Cell":
        return f"{r['noise']}, training sd {r['fold_sd']:g}, case sd {r['case_sd']:g}"
    return (f"{'skewed' if r['skewed'] else 'normal'}, training sd {r['fold_sd']:g}, case sd {r['case_sd']:g}, "
            f"persistent sd {r['persistent_sd']:g}, failures {r['failure_rate']:.0%}")


def table(rows: list) -> str:
    lines = ["| metric | design | noise | true B − A | margin | CI covers the truth | better / worse | equivalent | "
             "inconclusive | mean CI width | old bootstrap: covers / excludes 0 |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        old = (f"{r['old_coverage']:.0%} / {r['old_excludes_zero']:.0%}" if "old_coverage" in r else "")
        lines.append(f"| {r['metric']} | {_design(r)} | {_noise(r)} | {r['true_difference']:g} | ±{r['margin']:g} | "
                     f"{r['coverage']:.1%} | {r['better']:.1%} / {r['worse']:.1%} | {r['equivalent']:.1%} | "
                     f"{r['inconclusive']:.1%} | {r['mean_ci_width']:.3g} | {old} |")
    return "\n".join(lines)


def _with_old_bootstrap(cell, studies: int, seed: int) -> dict:
    return run_cell(cell, studies, seed=seed, old_bootstrap=True)


def varied_table(title: str, shown):
    """The table of a side study whose cells vary what shown(row) names, in a first column called title."""
    def table_of(rows: list) -> str:
        lines = [f"| {title} | design | CI covers the truth (± Monte Carlo half-width) | better / worse | equivalent | "
                 "mean CI width |", "|---|---|---|---|---|---|"]
        for r in rows:
            half = 1.96 * (r["coverage"] * (1 - r["coverage"]) / r["studies"]) ** 0.5
            lines.append(f"| {shown(r)} | {r['repeats']} × {r['folds']}-fold on {r['cases']} cases, fold "
                         f"correlation {r['fold_correlation']:g} | {r['coverage']:.1%} ± {half:.1%} | "
                         f"{r['better']:.1%} / {r['worse']:.1%} | {r['equivalent']:.1%} | {r['mean_ci_width']:.3g} |")
        return "\n".join(lines)
    return table_of


coupling_table = varied_table("coupling", lambda r: f"{r['coupling']:g}")
failures_table = varied_table("failed trainings", lambda r: f"{r['fold_failure_rate']:.0%} of " + (
    "either trainer's" if r["fold_failure_side"] == "either" else "B's"))


def datasets_table(rows: list) -> str:
    lines = ["| design | true effects | CI covers the mean effect (± Monte Carlo half-width) | better / worse | "
             "equivalent | mean CI width |", "|---|---|---|---|---|---|"]
    for r in rows:
        half = 1.96 * (r["coverage"] * (1 - r["coverage"]) / r["studies"]) ** 0.5
        low, high = round(r["cases"] * (1 - r["size_spread"])), round(r["cases"] * (1 + r["size_spread"]))
        lines.append(f"| {r['datasets']} datasets of {low}-{high} cases, 5-fold, failures {r['failure_rate']:.0%} | "
                     f"{r['effects']}, sd {r['between_sd']:g} | {r['coverage']:.1%} ± {half:.1%} | "
                     f"{r['better']:.1%} / {r['worse']:.1%} | {r['equivalent']:.1%} | {r['mean_ci_width']:.3g} |")
    return "\n".join(lines)


def _write_section(page_file: Path, markers: tuple, text: str):
    """Replaces what lies between the two markers of page_file with text."""
    start, end = markers
    page = page_file.read_text()
    if start not in page or end not in page:
        sys.exit(f"calibrate_compare: {page_file} has no such markers; add\n{start}\n{end}")
    before, rest = page.split(start, 1)
    page_file.write_text(f"{before}{start}\n\n{text}\n\n{end}{rest.split(end, 1)[1]}")


def _run_extra(args, cells: list, table_of, json_name: str, markers: tuple):
    """A study beside the main table: its cells, printed, and with --docs its JSON and its section of compare.md."""
    rows = run_cells(run_cell, cells, args.studies, args.seed, args.np, args.kept)
    print(table_of(rows))
    if args.docs:
        command, machine = provenance("calibrate_compare.py")
        (Path(args.docs) / json_name).write_text(json.dumps(
            {"command": command, "machine": machine, "studies": args.studies, "cells": rows}, indent=1))
        _write_section(Path(args.docs) / "compare.md", markers,
                       f"Command: `{command}` ({args.studies} studies per cell; machine: {machine}).\n\n"
                       f"{table_of(rows)}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--studies", type=int, default=400, help="simulated studies per cell (default 400)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the simulation (default 0)")
    parser.add_argument("-np", type=int, default=os.cpu_count() or 1, help="processes (default: the CPU count)")
    parser.add_argument("--docs", help="docs folder: write compare_calibration.json and the table in compare.md")
    parser.add_argument("--kept", help="a JSON-lines file that keeps each finished cell: a re-run with the same "
                                       "arguments runs only the cells it lacks")
    parser.add_argument("--coupling", action="store_true",
                        help="only the coupling cells (simulation.coupling_cells): compare_coupling.json and its "
                             "section of compare.md")
    parser.add_argument("--datasets", action="store_true",
                        help="only the across-datasets cells of unequal precision and skewed effects "
                             "(simulation.dataset_cells): compare_datasets.json and its section of compare.md")
    parser.add_argument("--failures", action="store_true",
                        help="only the cells with whole trainings failing (simulation.failure_cells): "
                             "compare_failures.json and its section of compare.md")
    args = parser.parse_args()
    if args.failures:
        return _run_extra(args, failure_cells(), failures_table, "compare_failures.json", FAILURES_MARKERS)
    if args.datasets:
        return _run_extra(args, dataset_cells(), datasets_table, "compare_datasets.json", DATASETS_MARKERS)
    if args.coupling:
        return _run_extra(args, coupling_cells(), coupling_table, "compare_coupling.json", COUPLING_MARKERS)
    rows = run_cells(_with_old_bootstrap, list(standard_cells()), args.studies, args.seed, args.np, args.kept)
    text = table(rows)
    print(text)
    print(summary_text(rows))
    if args.docs:
        docs = Path(args.docs)
        command, machine = provenance("calibrate_compare.py")
        (docs / "compare_calibration.json").write_text(json.dumps({"command": command, "machine": machine,
                                                                   "studies": args.studies, "cells": rows},
                                                                  indent=1))
        _write_section(docs / "compare.md", (START, END), f"Command: `{command}` ({args.studies} studies per "
                       f"cell; machine: {machine}).\n\n{summary_text(rows)}\n\n{text}")

if __name__ == "__main__":
    main()
