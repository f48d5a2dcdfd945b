"""grid --until-decided: a repeated cross-validation in nnU-Net's own folds that stops as soon as it knows.

Round r trains repeat r of the k-fold cross-validation (study.splits extends splits_final.json; round 1 is nnU-Net's
own folds 0..k-1) with every trainer; after each whole round compare judges every open dataset x configuration at
the level that look spends (compare.statistics.look_level over --max-repeats looks: O'Brien-Fleming-type alpha
spending on the share of planned trainings, boundaries from the looks' joint normal with the corrected variance's
information fractions, repeated
intervals for equivalence, alpha shared by Bonferroni over the study's rows, so that the chance of any false answer
over all rows and looks stays 5% under the model), and a row whose Dice verdict is no longer inconclusive stops: it is
not trained further, and a re-run neither retrains nor judges it again. The last look's verdict stands whatever it
is. find_best_configuration keeps using folds 0..k-1, as nnU-Net's ensembles expect. The decisions are kept in
nnUNet_results/nnunet_attention_grid/until_decided.json; each row's report is nnUNet_results/DATASET/
nnunet_attention_compare_CONFIGURATION.
"""
import json
import os
from dataclasses import replace
from typing import Callable, List, Mapping, Optional

from nnunet_attention.compare.metrics import PRIMARY, Margins
from nnunet_attention.errors import NnUNetAttentionError
from nnunet_attention.files import write_text
from nnunet_attention.study.grid import GRID_FOLDER, ExecutorOptions, Grid, log_tail
from nnunet_attention.study.splits import extend_splits_file
from nnunet_attention.study.steps import (NNUNET_FOLDS, Folders, StudySpec, check_nothing_replaced, find_best_step,
                                          study_steps, train_steps)

FOLDS_PER_REPEAT = NNUNET_FOLDS  # nnU-Net's k
STATE_FILE = "until_decided.json"


def run_until_decided(spec: StudySpec, options: ExecutorOptions, compare_processes: int, max_repeats: int,
                      poll_seconds: float = 10.0, log: Callable[[str], None] = print,
                      margins: Optional[Mapping[str, float]] = None) -> bool:
    """Rounds until every dataset x configuration is decided or max_repeats rounds are judged; returns whether
    every row has its final answer (a re-run continues where the study stands)."""
    from nnunet_attention.compare.pipeline import compare_datasets

    if len(spec.trainers) != 2:
        raise NnUNetAttentionError(f"--until-decided compares two trainers (-tr A B), got {len(spec.trainers)}")
    if [str(f) for f in spec.folds] != [str(f) for f in range(FOLDS_PER_REPEAT)]:
        raise NnUNetAttentionError("--until-decided trains whole rounds of nnU-Net's 5 folds (then repeats): leave "
                                   "out -f")
    if max_repeats < 1:
        raise NnUNetAttentionError(f"--max-repeats must be at least 1, got {max_repeats}")
    margins = Margins.of(margins)
    grid = Grid(spec, options, log=log, poll_seconds=poll_seconds)
    grid.backend.check_runnable(spec.device)
    folders = Folders.from_environment()
    state_file = os.path.join(folders.results, GRID_FOLDER, STATE_FILE)
    rows = len(spec.datasets) * len(spec.configurations)
    state = _read_state(state_file, max_repeats, rows)
    for look in range(1, max_repeats + 1):
        open_rows = [(d, c) for d in spec.datasets for c in spec.configurations if f"{d}/{c}" not in state["rows"]]
        if not open_rows:
            break
        log(f"\nround {look} of at most {max_repeats}: {', '.join(f'{d} {c}' for d, c in open_rows)}")
        if not _train_round(grid, spec, folders, open_rows, look, log):
            return False
        folds = list(range(look * FOLDS_PER_REPEAT))
        for dataset, configuration in open_rows:
            output = os.path.join(folders.results, dataset, f"nnunet_attention_compare_{configuration}")
            report = compare_datasets([dataset], [configuration], spec.trainers, spec.plans, folds, output,
                                      processes=compare_processes, margins=margins, look=(look, max_repeats, rows))
            (row,) = report.verdict
            outcome = row.metrics[PRIMARY].outcome
            if outcome != "inconclusive" or look == max_repeats:
                state["rows"][f"{dataset}/{configuration}"] = {
                    "look": look, "looks": max_repeats, "outcome": outcome,
                    "level": row.metrics[PRIMARY].sequential.level, "trainings_per_trainer": len(folds),
                    "report": output}
                write_text(state_file, json.dumps(state, indent=1))
                log(f"{dataset} {configuration}: {outcome} at look {look} of {max_repeats} "
                    f"({len(folds)} trainings per trainer); report {output}")
    first_round = replace(spec, folds=list(range(FOLDS_PER_REPEAT)))
    bests = [find_best_step(first_round, d, folders, train_steps(first_round, d, folders)) for d in spec.datasets]
    failed = grid.run_steps(bests)
    for step in failed:
        log(f"\nFAILED {step.key}: {log_tail(grid.state['jobs'].get(step.key, {}).get('log'))}")
    return not failed


def _train_round(grid: Grid, spec: StudySpec, folders: Folders, rows: List[tuple], look: int, log) -> bool:
    """Plans (round 1), then every training of rounds 1..look of the open rows (those already trained are done)."""
    if look == 1:
        to_run = [s for s in study_steps(spec, folders) if s.kind != "find_best"]
    else:
        for dataset in {d for d, _ in rows}:
            extend_splits_file(os.path.join(folders.preprocessed, dataset), look)
        folds = list(range(look * FOLDS_PER_REPEAT))
        to_run = [s for d, c in rows for s in train_steps(replace(spec, configurations=[c], folds=folds), d, folders)]
    check_nothing_replaced(spec, to_run)
    failed = grid.run_steps(to_run)
    missing = [s.key for s in to_run if not s.refreshed().done]
    if failed or missing:
        log(f"\nround {look} is incomplete ({len(missing)} step(s) not done: {', '.join(missing[:5])}); run the "
            f"same command again to continue where it stands")
        return False
    return True


def _read_state(path: str, max_repeats: int, rows: int) -> dict:
    if not os.path.isfile(path):
        return {"max_repeats": max_repeats, "family": rows, "rows": {}}
    with open(path) as f:
        state = json.load(f)
    if state.get("family", rows) != rows:
        raise NnUNetAttentionError(f"{path} is a study of {state['family']} dataset x configuration rows, whose "
                                   f"levels share alpha over that many; run it with the same -d and -c, or move the "
                                   f"file away to start a new sequential study")
    if state["max_repeats"] != max_repeats:
        raise NnUNetAttentionError(f"{path} is a study with --max-repeats {state['max_repeats']}: its looks were "
                                   f"judged at that plan's levels; run it with --max-repeats {state['max_repeats']}, "
                                   f"or move the file away to start a new sequential study")
    return state
