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
from pathlib import Path

from simulation import provenance, run_cells, run_sequential, sequential_cells
from nnunet_attention.compare.statistics import information_fractions, spending_levels


def _share(row: dict, key: str) -> str:
    return f"{row[key]:.1%} ±{row[key + '_se']:.1%}"


def table(rows: list) -> str:
    lines = ["| fold ρ | failures | true B − A | margin | design | better | worse | equivalent | inconclusive | "
             "wrong | trainings per trainer | stopped after round 1 / 2 / 3 | bias of the estimate | discordant "
             "(sequential → fixed) |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        for design in ("sequential", "fixed"):
            if design == "sequential":
                trainings = f"{r['mean_rounds'] * r['folds']:.2f} ±{r['mean_rounds_se'] * r['folds']:.2f}"
                stops = " / ".join(f"{v:.0%}" for v in r["stopped_at"].values())
                discordant = ", ".join(f"{k} {v}" for k, v in r["discordant"].items()) or "none"
            else:
                trainings, stops, discordant = f"{r['repeats'] * r['folds']}", "", ""
            lines.append(f"| {r['fold_correlation']:g} | {r['failure_rate']:.0%} | {r['true_difference']:g} | "
                         f"±{r['margin']:g} | {design} | "
                         + " | ".join(_share(r, f"{design}_{o}") for o in ("better", "worse", "equivalent",
                                                                            "inconclusive", "wrong"))
                         + f" | {trainings} | {stops} | {r[f'{design}_bias']:+.4f} ±{r[f'{design}_bias_se']:.4f} | "
                         f"{discordant} |")
    return "\n".join(lines)


def findings(rows: list) -> str:
    """What the table shows, in the figures a reader checks first."""
    null = [r for r in rows if r["true_difference"] == 0]
    false = max(r["sequential_better"] + r["sequential_worse"] for r in null)
    gaps = [(r["sequential_equivalent"] - r["fixed_equivalent"]) * 100 for r in rows]
    saved = [1 - r["mean_rounds"] / r["repeats"] for r in rows]
    clear = [1 - r["mean_rounds"] / r["repeats"] for r in rows if r["true_difference"] >= 3 * r["margin"]]
    return (f"**What it shows.** With no true difference, \"better\" or \"worse\" in at most {false:.1%} of studies "
            f"in any row (the fixed design: at most "
            f"{max(r['fixed_better'] + r['fixed_worse'] for r in null):.1%}). \"Equivalent\", sequential minus fixed: "
            f"{min(gaps):+.1f} to {max(gaps):+.1f} points over the rows. Trainings per trainer: {min(saved):.0%} to "
            f"{max(saved):.0%} fewer than the fixed design's 15; at a clear difference "
            f"{', '.join(f'{v:.0%}' for v in clear)} fewer; with no difference hardly any (the looks rarely stop "
            f"before the last when the answer is \"equivalent\" or \"inconclusive\").")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--studies", type=int, default=1000, help="simulated studies per cell (default 1000)")
    parser.add_argument("--rounds", type=int, default=3, help="the most rounds (repeats of 5-fold; default 3)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-np", type=int, default=os.cpu_count() or 1, help="processes (default: the CPU count)")
    parser.add_argument("--docs", help="docs folder: write sequential_calibration.json and sequential.md")
    parser.add_argument("--render", action="store_true",
                        help="with --docs: rewrite sequential.md from the sequential_calibration.json there")
    args = parser.parse_args()
    if args.render:
        saved = json.loads((Path(args.docs) / "sequential_calibration.json").read_text())
        write_page(Path(args.docs), saved, saved["cells"][0]["repeats"])
        return
    rows = run_cells(run_sequential, sequential_cells(args.rounds), args.studies, args.seed, args.np)
    fractions = information_fractions(args.rounds, 5, 0.25)
    levels = spending_levels(fractions, spend_at=[k / args.rounds for k in range(1, args.rounds + 1)])
    print(table(rows))
    if args.docs:
        command, machine = provenance("calibrate_sequential.py")
        saved = {"command": command, "machine": machine, "studies": args.studies, "fractions": fractions,
                 "levels": levels, "cells": rows}
        (Path(args.docs) / "sequential_calibration.json").write_text(json.dumps(saved, indent=1))
        write_page(Path(args.docs), saved, args.rounds)


def write_page(docs: Path, saved: dict, rounds: int):
    (docs / "sequential.md").write_text(SEQUENTIAL_MD.format(
        command=saved["command"], studies=saved["studies"], machine=saved["machine"], rounds=rounds,
        fractions=", ".join(f"{t:.2f}" for t in saved["fractions"]),
        levels=", ".join(f"{v:.4f}" for v in saved["levels"]), findings=findings(saved["cells"]),
        table=table(saved["cells"])))


SEQUENTIAL_MD = """# Stopping when the answer is known: the sequential design's calibration

`nnunet-attention grid --until-decided` trains round after round of nnU-Net's 5 folds (round r = repeat r of the
cross-validation, both trainers) and judges each dataset x configuration after every round; a row stops at its
first answer that is not "inconclusive", and the last look's verdict stands whatever it is.

**The boundaries.** Lan & DeMets' O'Brien-Fleming-type spending function alpha(u) = 2 - 2 Phi(z_0.975 / sqrt(u)),
spent on the share u = k/K of the planned trainings, so that the first look spends almost nothing and the last keeps
nearly all of the 5% (equivalence is mostly found there). The boundaries are set on the joint normal of the looks' z
statistics, whose correlations come from the *information fractions* of compare's corrected variance
s^2 (1/J + n_val/n_train): with J = 5, 10, 15 trainings per trainer and n_val/n_train = 1/4 the looks hold
{fractions} of the last look's information (folds whose training sets share cases repeat each other, so the first
round already holds most of it), not 1/3, 2/3, 1; nested means of equicorrelated folds have independent increments,
and the boundaries come by numerical integration over the continuation region (checked against draws of that joint
normal in tests/test_sequential.py). Nominal levels: {levels} for {rounds} rounds of 5-fold cross-validation of a
dataset's own cases (compare.statistics.look_level; the levels a study uses come from its own n_val/n_train). An
earlier version spent on the information fractions themselves (levels 0.0195, 0.0325, 0.0352): its last look was so
strict that it found equivalence 6 points less often than the fixed design. The looks'
chance of any false "better"/"worse", and of any repeated interval (the verdict's t interval at the look's level,
Jennison & Turnbull 1993) missing the truth, is 5% in all, not at most 5% as the union bound before. With several
dataset x configuration rows, each row's looks spend 5% / rows (Bonferroni over the study's rows, fixed when the
study starts and kept in until_decided.json): the family is the whole study. **The estimate at stopping is the plain
mean over the rounds trained, not adjusted**: a study that stops early tends to stop on a large estimate; the bias
column measures it.

**The simulation.** Command: `{command}` ({studies} simulated studies per row; machine: {machine}). Each study is one
draw of scripts/simulation.py's CrossValidation (100 cases; 5 folds; training sets that overlap as nnU-Net's do, with a
fold correlation of 0.2 — the boundaries' assumption — or 0.1 — what real nnU-Net trainings showed,
docs/real_calibration.md; skewed case noise; a persistent part of each case's difference across repeats; in one row
2% catastrophic failures of one trainer), judged after each round through compare's own analysis (analyse_pairs with
look = (round, {rounds})) and stopped at the first answer: **sequential**. **fixed**: the same study's data, every
round trained, then compare's 95% verdict (the design with the same maximum of trainings). Shares are of studies,
with their Monte Carlo standard errors (±); *wrong*: better when B − A ≤ 0, worse when ≥ 0, equivalent when |B − A| >
margin; *discordant*: studies whose two designs answered differently, as sequential → fixed with their counts.

{findings}

{table}
"""


if __name__ == "__main__":
    main()
