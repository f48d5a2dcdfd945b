"""What the files nnU-Net writes say about how far a study is: the one source of done-ness for demo and grid."""
import glob
import json
import os
import re
from typing import List, Optional, Sequence

from nnunet_attention.model.pairing_record import study_seed_of
from nnunet_attention.nnunet_api import model_identifier

TRAINED, VALIDATE, RESUME, NEW = "trained", "validate", "resume", "new"


def training_state(fold_folder: str, need_npz: bool = False, next_stage: Optional[str] = None,
                   seed: Optional[int] = None) -> str:
    """TRAINED (checkpoint_final.pth and validation/summary.json, with need_npz the validation's .npz softmax files
    that nnUNetv2_find_best_configuration ensembles, with next_stage the next stage's input for every validation
    case, as nnU-Net's validation of a lowres stage writes it), VALIDATE (final checkpoint, validation or one of
    those missing: run nnUNetv2_train --val [--npz]), RESUME (checkpoint_latest.pth of an interrupted run: --c) or
    NEW. For a paired study (seed), a fold trained unpaired or under another seed (pairing.json) is NEW: it is not
    half of this study's pair, and training it again under the seed replaces it."""
    if seed is not None and replaced_training(fold_folder, need_npz, next_stage, seed):
        return NEW
    return _files_state(fold_folder, need_npz, next_stage)


def replaced_training(fold_folder: str, need_npz: bool = False, next_stage: Optional[str] = None,
                      seed: Optional[int] = None) -> str:
    """What training this paired study's (seed) training of the fold would replace, in words ("" when nothing):
    a finished or interrupted training that was unpaired or under another study seed."""
    if seed is None:
        return ""
    state = _files_state(fold_folder, need_npz, next_stage)
    trained_with = study_seed_of(fold_folder)
    if state == NEW or trained_with == seed:
        return ""
    how = "unpaired (nnUNetv2_train)" if trained_with is None else f"under --seed {trained_with}"
    return f"{'an interrupted' if state == RESUME else 'a finished'} training {how}"


def _files_state(fold_folder: str, need_npz: bool, next_stage: Optional[str]) -> str:
    final = os.path.isfile(os.path.join(fold_folder, "checkpoint_final.pth"))
    validation = os.path.join(fold_folder, "validation")
    if final and os.path.isfile(os.path.join(validation, "summary.json")) and \
            (not need_npz or glob.glob(os.path.join(validation, "*.npz"))) and \
            (next_stage is None or _next_stage_written(fold_folder, next_stage)):
        return TRAINED
    if final:
        return VALIDATE
    if os.path.isfile(os.path.join(fold_folder, "checkpoint_latest.pth")):
        return RESUME
    return NEW


def _next_stage_written(fold_folder: str, next_stage: str) -> bool:
    """Whether predicted_next_stage/NEXT (beside the fold folders) holds a file for every validation case."""
    with open(os.path.join(fold_folder, "validation", "summary.json")) as f:
        cases = [os.path.basename(c["prediction_file"]).split(".")[0] for c in json.load(f)["metric_per_case"]]
    written = {os.path.basename(p).split(".")[0] for p in
               glob.glob(os.path.join(os.path.dirname(fold_folder), "predicted_next_stage", next_stage, "*"))}
    return all(case in written for case in cases)


def train_command(dataset: str, configuration: str, fold, trainer: str, state: str, plans: Optional[str] = None,
                  device: Optional[str] = None, npz: bool = False, seed: Optional[int] = None,
                  trust_checkpoint: bool = False) -> List[str]:
    """The command that takes a fold from state to TRAINED: nnUNetv2_train, or with a seed nnunet-attention train
    (the same arguments, paired randomness: pairing.py; --trust-checkpoint passed on); --c resumes an interrupted
    run, --val (re)validates a finished one (with --npz when the softmax files are needed)."""
    program = ["nnUNetv2_train"] if seed is None else ["nnunet-attention", "train"]
    return [*program, str(dataset), configuration, str(fold), "-tr", trainer,
            *(["-p", plans] if plans else []), *(["-device", device] if device else []), *(["--npz"] if npz else []),
            *{RESUME: ["--c"], VALIDATE: ["--val"]}.get(state, []),
            *(["--seed", str(seed)] if seed is not None else []),
            *(["--trust-checkpoint"] if trust_checkpoint and seed is not None and state in (RESUME, VALIDATE) else [])]


def epoch_reached(fold_folder: str) -> Optional[int]:
    """The last epoch nnU-Net's newest training log announced (None without a log)."""
    logs = sorted(glob.glob(os.path.join(fold_folder, "training_log_*.txt")), key=os.path.getmtime)
    if not logs:
        return None
    epochs = re.findall(r": Epoch (\d+)\s*$", open(logs[-1], errors="replace").read(), flags=re.MULTILINE)
    return int(epochs[-1]) if epochs else None


def newer_than(path: str, others: Sequence[str]) -> bool:
    return os.path.isfile(path) and all(os.path.getmtime(path) > os.path.getmtime(o) for o in others
                                        if os.path.isfile(o))


def found_best_for(results: str, trainers: Sequence[str], folds: Sequence, configurations: Sequence[str],
                   plans: str) -> bool:
    """Whether inference_information.json is nnUNetv2_find_best_configuration's answer for these trainers, folds and
    configurations, written after their trainings finished."""
    info_file = os.path.join(results, "inference_information.json")
    checkpoints = [os.path.join(results, model_identifier(t, plans, c), f"fold_{f}", "checkpoint_final.pth")
                   for t in trainers for c in configurations for f in folds]
    if not newer_than(info_file, checkpoints):
        return False
    with open(info_file) as f:
        info = json.load(f)
    considered = {(m["trainer"], m["configuration"]) for m in info["considered_models"]}
    return considered == {(t, c) for t in trainers for c in configurations} and \
        [str(f) for f in info["folds"]] == [str(f) for f in folds]
