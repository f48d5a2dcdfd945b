"""The calibration of grid --until-decided's sequential design: simulated repeated cross-validations with a known
answer, judged after each whole round through compare's own analysis (analyse_pairs with look = (round, rounds):
alpha spending and repeated intervals), against the fixed design that trains every round and then judges at 95%.

    python scripts/calibrate_sequential.py --docs docs      # the committed table (2 cores: about 10 minutes)
    python scripts/calibrate_sequential.py --studies 50     # a quick look, printed only

Writes DOCS/sequential_calibration.json and DOCS/sequential.md.
"""
import argparse
import json
import os
import platform
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from nnunet_attention.compare.calibration import run_sequential, sequential_cells
from nnunet_attention.compare.statistics import spending_levels


def table(rows: list) -> str:
    lines = ["| true B − A | margin | design | better | worse | equivalent | inconclusive | mean rounds (trainings "
             "per trainer) | stopped after round 1 / 2 / 3 |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        for design in ("sequential", "fixed"):
            rounds = r["mean_rounds"] if design == "sequential" else r["repeats"]
            stops = " / ".join(f"{v:.0%}" for v in r["stopped_at"].values()) if design == "sequential" else ""
            lines.append(f"| {r['true_difference']:g} | ±{r['margin']:g} | {design} | "
                         + " | ".join(f"{r[f'{design}_{o}']:.1%}" for o in ("better", "worse", "equivalent",
                                                                             "inconclusive"))
                         + f" | {rounds:.2f} ({rounds * r['folds']:.1f}) | {stops} |")
    return "\n".join(lines)


def _run(job):
    index, cell, studies, seed = job
    return run_sequential(cell, studies, seed=seed + index)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--studies", type=int, default=400, help="simulated studies per cell (default 400)")
    parser.add_argument("--rounds", type=int, default=3, help="the most rounds (repeats of 5-fold; default 3)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-np", type=int, default=os.cpu_count() or 1, help="processes (default: the CPU count)")
    parser.add_argument("--docs", help="docs folder: write sequential_calibration.json and sequential.md")
    args = parser.parse_args()
    cells = sequential_cells(args.rounds)
    rows = []
    with ProcessPoolExecutor(args.np) as pool:
        for row in pool.map(_run, [(i, c, args.studies, args.seed) for i, c in enumerate(cells)]):
            rows.append(row)
            print(f"\r{len(rows)}/{len(cells)} cells", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    levels = ", ".join(f"{level:.5f}" for level in spending_levels(args.rounds))
    text = table(rows)
    print(text)
    if args.docs:
        docs = Path(args.docs)
        command = " ".join(["python", "scripts/calibrate_sequential.py", *sys.argv[1:]])
        machine = f"{platform.machine()}, {os.cpu_count()} cores"
        (docs / "sequential_calibration.json").write_text(json.dumps(
            {"command": command, "machine": machine, "studies": args.studies, "levels": spending_levels(args.rounds),
             "cells": rows}, indent=1))
        (docs / "sequential.md").write_text(
            f"# Stopping when the answer is known: the sequential design's calibration\n\n"
            f"Command: `{command}` ({args.studies} simulated studies per row; machine: {machine}). Model: "
            f"compare.calibration.CrossValidation (100 cases, 5 folds, fold correlation 0.2, skewed case noise, a "
            f"persistent case part across repeats), up to {args.rounds} rounds (repeats of the 5-fold "
            f"cross-validation, each trained by both trainers). **sequential**: judged after every round at the "
            f"look's spending level ({levels}: O'Brien-Fleming-type, Lan-DeMets, union-bounded) and stopped at the "
            f"first answer; **fixed**: every round trained, then compare's 95% verdict. Rates are shares of "
            f"studies; trainings per trainer = rounds × 5.\n\n{text}\n")


if __name__ == "__main__":
    main()
