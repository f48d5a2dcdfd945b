"""Repeated cross-validation in nnU-Net's own folds: splits_final.json extended by new k-fold partitions of the same
cases, so that nnUNetv2_train D C 5 ... trains repeat 1, fold 0 with nothing but nnU-Net.

Entries 0..k-1 stay exactly nnU-Net's (trainings already made stay valid); repeat r's k entries follow, a KFold
partition with its own split seed (nnU-Net's own seed 12345 + r, through nnU-Net's generate_crossval_split). The file
before the first extension is kept beside it. compare reads the repeats back from the file (compare.read)."""
import json
import os
import shutil
from typing import List, Tuple

from nnunet_attention.compare.read import cross_validation_design
from nnunet_attention.errors import NnUNetAttentionError

NNUNET_SPLIT_SEED = 12345  # nnUNetTrainer.do_split's seed for repeat 0
BACKUP = "splits_final.before_repeats.json"


def repeated_splits(splits: List[dict], repeats: int) -> Tuple[List[dict], int]:
    """splits (nnU-Net's k folds, or an earlier extension) with whole repeats up to `repeats`, and k: nothing is
    removed or reordered; repeat r (r >= 1) is generate_crossval_split of repeat 0's cases with seed 12345 + r."""
    from nnunetv2.utilities.crossval_split import generate_crossval_split

    design = cross_validation_design(splits)
    first = [int(f) for f, d in design.items() if d["repeat"] == 0]
    cases = sorted({c for f in first for c in splits[f]["val"]})
    complete = {d["repeat"] for d in design.values()}
    if len(splits) != len(first) * len(complete) or any(
            sorted(c for f, d in design.items() if d["repeat"] == r for c in splits[int(f)]["val"]) != cases
            for r in complete):
        raise NnUNetAttentionError("splits_final.json is not whole k-fold repeats of the same cases (a custom "
                                   "split?); extend it by hand or start from nnU-Net's own")
    extended = list(splits)
    for repeat in range(len(complete), repeats):
        extended += generate_crossval_split(cases, seed=NNUNET_SPLIT_SEED + repeat, n_splits=len(first))
    return extended, len(first)


def extend_splits_file(preprocessed_dataset: str, repeats: int) -> dict:
    """Writes the repeats into preprocessed_dataset/splits_final.json (the first version kept as BACKUP); returns
    {"file", "folds_per_repeat", "repeats_before", "repeats", "new_folds", "backup"}."""
    from batchgenerators.utilities.file_and_folder_operations import save_json

    if repeats < 1:
        raise NnUNetAttentionError(f"--repeats must be at least 1 (1 = nnU-Net's own folds), got {repeats}")
    path = os.path.join(preprocessed_dataset, "splits_final.json")
    if not os.path.isfile(path):
        raise NnUNetAttentionError(f"{path} does not exist yet: nnU-Net writes it when it first trains a fold "
                                   f"(nnUNetv2_train D C 0 ...); extend it after that")
    with open(path) as f:
        splits = json.load(f)
    extended, k = repeated_splits(splits, repeats)
    backup = os.path.join(preprocessed_dataset, BACKUP)
    if len(extended) > len(splits):
        if not os.path.isfile(backup):
            shutil.copyfile(path, backup)
        save_json(extended, path + ".partial")  # nnU-Net's own writer and format
        os.replace(path + ".partial", path)
    return {"file": path, "folds_per_repeat": k, "repeats_before": len(splits) // k,
            "repeats": len(extended) // k, "new_folds": list(range(len(splits), len(extended))),
            "backup": backup if os.path.isfile(backup) else None}
