"""A small cross-validation as nnU-Net leaves it, without training: ground truth in nnUNet_preprocessed, each trainer's
validation predictions (the reference blobs moved and eroded by chance) and the summary.json nnU-Net's own evaluation
writes from them. Imports nothing of this package, so the same inputs can be written for another checkout's compare
(the report-keys fixture of test_compare_report.py was written by the code before the change it guards)."""
import json
from pathlib import Path

import numpy as np
import SimpleITK as sitk

DATASET = "Dataset993_ReportKeys"
TRAINERS = ("nnUNetTrainer", "nnUNetTrainerAttention")
FOLDS = (0, 1, 2)
LABELS = {"background": 0, "nodule": 1, "cyst": 2}


def _case(rng: np.random.Generator, shape=(8, 24, 24)) -> np.ndarray:
    seg = np.zeros(shape, np.uint8)
    for label in (1, 2):
        z, y, x = (int(rng.integers(1, s - 4)) for s in shape)
        seg[z:z + 3, y:y + int(rng.integers(3, 6)), x:x + int(rng.integers(3, 6))] = label
    return seg


def _prediction(rng: np.random.Generator, reference: np.ndarray) -> np.ndarray:
    shifted = np.roll(reference, int(rng.integers(-1, 2)), axis=int(rng.integers(1, 3)))
    shifted[rng.random(reference.shape) < 0.03] = 0
    return shifted


def write_results(root: Path, seed: int = 0) -> dict:
    """Writes nnUNet_preprocessed and nnUNet_results under root; returns the nnU-Net variables naming them."""
    from nnunetv2.evaluation.evaluate_predictions import compute_metrics_on_folder
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO

    rng = np.random.default_rng(seed)
    preprocessed = root / "nnUNet_preprocessed" / DATASET
    (preprocessed / "gt_segmentations").mkdir(parents=True)
    (preprocessed / "dataset.json").write_text(json.dumps({"labels": LABELS, "channel_names": {"0": "CT"},
                                                           "file_ending": ".nii.gz", "numTraining": 9}))
    cases = {fold: [f"case_{fold}{i}" for i in range(3)] for fold in FOLDS}
    splits = [{"train": [c for f, cs in cases.items() if f != fold for c in cs], "val": cases[fold]} for fold in FOLDS]
    (preprocessed / "splits_final.json").write_text(json.dumps(splits))
    references = {}
    for case in (c for cs in cases.values() for c in cs):
        references[case] = _case(rng)
        image = sitk.GetImageFromArray(references[case])
        image.SetSpacing((1.0, 1.0, 3.0))
        sitk.WriteImage(image, str(preprocessed / "gt_segmentations" / f"{case}.nii.gz"))
    for trainer in TRAINERS:
        for fold in FOLDS:
            validation = root / "nnUNet_results" / DATASET / f"{trainer}__nnUNetPlans__3d_fullres" / f"fold_{fold}" \
                / "validation"
            validation.mkdir(parents=True)
            for case in cases[fold]:
                image = sitk.GetImageFromArray(_prediction(rng, references[case]))
                image.SetSpacing((1.0, 1.0, 3.0))
                sitk.WriteImage(image, str(validation / f"{case}.nii.gz"))
            compute_metrics_on_folder(str(preprocessed / "gt_segmentations"), str(validation),
                                      str(validation / "summary.json"), SimpleITKIO(), ".nii.gz", [1, 2],
                                      num_processes=1)
    return {"nnUNet_preprocessed": str(root / "nnUNet_preprocessed"), "nnUNet_results": str(root / "nnUNet_results"),
            "nnUNet_raw": str(root / "nnUNet_raw")}


def key_paths(value, prefix: str = "") -> set:
    """Every key path of a JSON document, list positions as []: what a reader of report.json may look up."""
    if isinstance(value, dict):
        return {prefix} | {p for k, v in value.items() for p in key_paths(v, f"{prefix}/{k}")}
    if isinstance(value, list):
        return {prefix} | {p for v in value for p in key_paths(v, f"{prefix}[]")}
    return {prefix}
