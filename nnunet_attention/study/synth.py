"""A synthetic 3D task in the Medical Segmentation Decathlon layout, made for what attention gates are for.

Each case is an anisotropic MR-like volume (zero outside an elliptic "body", so nnU-Net crops it) with smooth
clutter, a few large bright "organs" (distractors, not labelled), small bright ellipsoids (label 1, "nodule") that
look like the distractors but are smaller and brighter, and small cysts with a brighter rim and a dim core (label 2).
Telling targets from distractors takes size and context, which is what a gate computed from the coarser decoder
level supplies.
Spacing varies a little per case so that nnU-Net resamples. Deterministic for a seed.
"""
import json
import os
import shutil
from typing import Tuple

import numpy as np
import SimpleITK as sitk

from nnunet_attention.errors import NnUNetAttentionError

LABELS = {"0": "background", "1": "nodule", "2": "cyst"}
DEFAULT_TASK_ID = 990
TASK_NAME = "AttentionSynth"
# Chosen with the study in docs/init_study.md so that the demo's short trainings learn every class every time:
# nodules of 4.5-6.5 mm radius, brighter (+2.0) than the large distractors (+0.8) they resemble in shape; cysts of
# 4.5-6.5 mm.
NODULE_RADIUS_MM, NODULE_CONTRAST, DISTRACTOR_CONTRAST, CYST_RADIUS_MM = (4.5, 6.5), 2.0, 0.8, (4.5, 6.5)


def task_folder_name(task_id: int) -> str:
    return f"Task{task_id:03d}_{TASK_NAME}"


def _ellipsoid(grid, center, radii_mm):
    return sum(((g - c) / r) ** 2 for g, c, r in zip(grid, center, radii_mm))


def _place(rng, body_mm, radius_mm, taken, z_extent_mm):
    """A centre inside the body, clear of what is already placed (best effort)."""
    for _ in range(50):
        center = np.array([rng.uniform(radius_mm / 2, z_extent_mm - radius_mm / 2),
                           *(rng.uniform(c - 0.6 * r, c + 0.6 * r) for c, r in zip(body_mm[0], body_mm[1]))])
        if all(np.linalg.norm((center - c)[1:]) > radius_mm + r + 2 for c, r in taken):
            break
    taken.append((center, radius_mm))
    return center


def synth_case(rng: np.random.Generator, shape: Tuple[int, int, int] = (24, 64, 64)):
    """(image, label, spacing) with arrays in (z, y, x) order and spacing in (z, y, x) mm."""
    spacing = np.array([rng.uniform(2.6, 3.4), *([rng.uniform(0.9, 1.1)] * 2)])
    grid = np.meshgrid(*(np.arange(n) * s for n, s in zip(shape, spacing)), indexing="ij")
    extent = np.array(shape) * spacing
    body_center, body_radii = extent[1:] / 2, extent[1:] * np.array([0.44, 0.46])
    body = ((grid[1] - body_center[0]) / body_radii[0]) ** 2 + ((grid[2] - body_center[1]) / body_radii[1]) ** 2 < 1

    image = rng.normal(0.0, 0.15, shape)
    for _ in range(6):
        center = [rng.uniform(0, e) for e in extent]
        image += rng.uniform(-0.3, 0.3) * np.exp(-_ellipsoid(grid, center, [rng.uniform(10, 25)] * 3))
    label = np.zeros(shape, dtype=np.uint8)
    taken = []
    for _ in range(rng.integers(2, 4)):
        r = rng.uniform(8, 12)
        center = _place(rng, (body_center, body_radii), r, taken, extent[0])
        image[_ellipsoid(grid, center, (r * 1.2, r, r * rng.uniform(0.8, 1.3))) < 1] += DISTRACTOR_CONTRAST
    for _ in range(rng.integers(1, 4)):
        r = rng.uniform(*NODULE_RADIUS_MM)
        center = _place(rng, (body_center, body_radii), r, taken, extent[0])
        inside = _ellipsoid(grid, center, (max(r, 3.2), r, r * rng.uniform(0.8, 1.25))) < 1
        image[inside] += NODULE_CONTRAST
        label[inside] = 1
    for _ in range(rng.integers(1, 3)):
        r = rng.uniform(*CYST_RADIUS_MM)
        center = _place(rng, (body_center, body_radii), r, taken, extent[0])
        d = _ellipsoid(grid, center, (max(r, 3.5), r, r))
        image[(d < 1) & (d > 0.35)] += 1.6
        image[d <= 0.35] += 0.4
        label[d < 1] = 2
    image = np.where(body, image + 1.0, 0.0).astype(np.float32)
    label[~body] = 0
    return image, label, spacing


def _write(array: np.ndarray, spacing, path: str):
    image = sitk.GetImageFromArray(array)
    image.SetSpacing([float(s) for s in spacing[::-1]])
    image.SetOrigin((-12.5, 30.0, 7.25))
    sitk.WriteImage(image, path, useCompression=True)


def synth_record(cases: int, test_cases: int, seed: int, shape) -> dict:
    """What drew a generated task, kept in its dataset.json: a study finding a task written with other settings
    knows that its trainings would not be the ones it describes."""
    return {"cases": int(cases), "test_cases": int(test_cases), "seed": int(seed), "shape": [int(x) for x in shape]}


def write_msd_task(output_dir: str, task_id: int = DEFAULT_TASK_ID, cases: int = 24, test_cases: int = 4,
                   seed: int = 0, shape: Tuple[int, int, int] = (24, 64, 64), progress=None,
                   overwrite: bool = False) -> str:
    """Writes TaskNNN_AttentionSynth/{imagesTr,labelsTr,imagesTs,dataset.json}; returns the task folder.

    The task is written into a staging folder beside it and moved into place when complete, so an interrupted run
    leaves no half task; an existing task folder is replaced only with overwrite (then nothing of it is left)."""
    if not 1 <= task_id <= 999:
        raise NnUNetAttentionError(f"--task-id must be between 1 and 999 (nnU-Net dataset ids), got {task_id}")
    if cases < 2:
        raise NnUNetAttentionError(f"--cases must be at least 2 (nnU-Net needs two training cases), got {cases}")
    if test_cases < 0:
        raise NnUNetAttentionError(f"--test-cases must be 0 or more, got {test_cases}")
    if len(shape) != 3 or min(shape) < 8:
        raise NnUNetAttentionError(f"--shape takes three sizes of at least 8 voxels (Z Y X), got {list(shape)}")
    final_task = os.path.join(output_dir, task_folder_name(task_id))
    if os.path.exists(final_task) and not overwrite:
        raise NnUNetAttentionError(f"{final_task} exists; pass --overwrite to replace it, or choose another -o / "
                                   f"--task-id")
    os.makedirs(output_dir, exist_ok=True)
    task = os.path.join(output_dir, f".{task_folder_name(task_id)}.partial")
    shutil.rmtree(task, ignore_errors=True)  # what an interrupted run left
    for sub in ("imagesTr", "labelsTr", "imagesTs"):
        os.makedirs(os.path.join(task, sub), exist_ok=True)
    rng = np.random.default_rng(seed)
    training, test = [], []
    for i in range(cases + test_cases):
        image, label, spacing = synth_case(rng, shape)
        name = f"synth_{i:03d}.nii.gz"
        if i < cases:
            _write(image, spacing, os.path.join(task, "imagesTr", name))
            _write(label, spacing, os.path.join(task, "labelsTr", name))
            training.append({"image": f"./imagesTr/{name}", "label": f"./labelsTr/{name}"})
        else:
            _write(image, spacing, os.path.join(task, "imagesTs", name))
            test.append(f"./imagesTs/{name}")
        if progress is not None:
            progress(i + 1, cases + test_cases)
    dataset = {
        "name": TASK_NAME,
        "description": "Synthetic small targets among large look-alike distractors (nnunet-attention synth)",
        "reference": "nnunet-attention",
        "licence": "CC0",
        "release": "1.0",
        "tensorImageSize": "3D",
        "modality": {"0": "MRI"},
        "labels": LABELS,
        "numTraining": cases,
        "numTest": test_cases,
        "synth": synth_record(cases, test_cases, seed, shape),
        "training": training,
        "test": test,
    }
    with open(os.path.join(task, "dataset.json"), "w") as f:
        json.dump(dataset, f, indent=2)
    if os.path.exists(final_task):
        shutil.rmtree(final_task)
    os.replace(task, final_task)
    return final_task
